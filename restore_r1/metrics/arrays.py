"""The one PSNR and the one SSIM of the package for plain arrays: baselines, judge fitting,
the demo, the benchmarks. The ``psnr`` and ``ssim`` catalogue metrics are pyiqa's, which the
evaluation reports (pyiqa's SSIM is on the Y channel). (The ``relative`` judge's SSIM feature,
``restore_r1.judges.relative._ssim``, is part of a fitted model and stays its own.)"""

from __future__ import annotations

import math

import numpy as np

#: skimage's SSIM defaults, written out: 7×7 uniform window, K1 0.01, K2 0.03 (Wang et al. 2004
#: with skimage's choices), data range 255 for uint8.
SSIM_WIN_SIZE = 7


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape, over all channels (inf when identical)."""
    if img.shape != ref.shape:
        raise ValueError(f"psnr: shapes differ, {img.shape} vs {ref.shape}")
    mse = float(np.mean((img.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(img: np.ndarray, ref: np.ndarray) -> float:
    """SSIM of two uint8 RGB H×W×3 images of one shape, the mean over the three channels.

    scikit-image's ``structural_similarity(img, ref, channel_axis=2)`` with its defaults (7×7
    uniform window, data range 255); both sides must be at least 7 pixels.
    """
    from skimage.metrics import structural_similarity

    if img.shape != ref.shape:
        raise ValueError(f"ssim: shapes differ, {img.shape} vs {ref.shape}")
    if img.ndim != 3 or min(img.shape[:2]) < SSIM_WIN_SIZE:
        raise ValueError(f"ssim: expected H×W×C images with sides of at least {SSIM_WIN_SIZE}, got {img.shape}")
    return float(structural_similarity(img, ref, channel_axis=2, win_size=SSIM_WIN_SIZE))
