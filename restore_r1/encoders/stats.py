"""``stats``: a training-free vector of degradation statistics (brightness, noise, blur,
blockiness, haze, rain, colour) computed with OpenCV in a few milliseconds; no weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from restore_r1.encoders.base import check_batch
from restore_r1.images import check_rgb

#: Longest side of the downscaled copy used for global statistics (brightness, haze, colour).
STATS_MAX_SIDE = 256
#: Side of the full-resolution central crop used for pixel-level statistics (noise, blur,
#: JPEG blockiness, rain streaks): downscaling would average noise away and erase the 8×8 grid.
STATS_CROP = 256
#: JPEG block size (the OpenCV encoder's 8×8 DCT grid, docs/method.md §2 "JPEG").
JPEG_BLOCK = 8
#: Dark-channel prior window on the downscaled copy (He et al. use 15 px at ~600 px).
DARK_CHANNEL_WINDOW = 7
#: Structuring element of the white top-hat that isolates thin bright structures (rain streaks
#: are 3 px wide, docs/method.md §2 "rain").
RAIN_TOPHAT_SIZE = 7
#: Immerkaer's (1996) noise-estimation mask: a difference of Laplacians that cancels smooth
#: image structure; sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M|.
IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
#: Donoho's MAD-to-sigma constant for Gaussian noise.
MAD_TO_SIGMA = 0.6745

#: The ``stats`` features in vector order, by group: ``(group, the degradation types it measures,
#: feature names)``. Intensities are on a 0–1 scale. Every type of ``DEGRADATION_TYPES`` is
#: measured by some group (``tests/test_kinds.py``).
STATS_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # V of HSV, downscaled copy
    ("brightness", ("dark",), ("v_mean", "v_p05", "v_p50", "v_p95", "v_clipped_low")),
    # full-resolution crop
    ("noise", ("noise",), ("noise_sigma_immerkaer", "noise_sigma_haar_mad", "log_noise_sigma")),
    # blur/sharpness (crop)
    (
        "blur",
        ("defocus_blur", "motion_blur"),
        (
            "log_laplacian_var",
            "grad_p50",
            "grad_p90",
            "grad_p99",
            "sharpness_ratio",
            "gradient_coherence",
            "gradient_orientation_cos2",
            "gradient_orientation_sin2",
        ),
    ),
    # JPEG blockiness (crop)
    ("blockiness", ("jpeg",), ("blockiness_h", "blockiness_v", "log_blockiness")),
    # downscaled copy
    ("haze", ("haze",), ("dark_channel_mean", "dark_channel_p90", "rms_contrast", "saturation_mean", "saturation_p90")),
    # rain streaks (crop)
    ("rain", ("rain",), ("tophat_mean", "tophat_p99", "tophat_coherence", "tophat_vertical_fraction")),
    # downscaled copy; no degradation of its own
    ("colour", (), ("r_mean", "g_mean", "b_mean", "colourfulness")),
)
#: Names of the ``stats`` features, in vector order.
STATS_FEATURES: tuple[str, ...] = tuple(name for _, _, names in STATS_GROUPS for name in names)
STATS_DIM = len(STATS_FEATURES)


def _downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _central_crop(img: np.ndarray, side: int, align: int) -> np.ndarray:
    """Central crop of at most ``side``×``side`` whose origin is a multiple of ``align``."""
    h, w = img.shape[:2]
    top = ((max(h - side, 0) // 2) // align) * align
    left = ((max(w - side, 0) // 2) // align) * align
    return img[top : top + side, left : left + side]


def _structure_tensor_stats(gx: np.ndarray, gy: np.ndarray) -> tuple[float, float, float]:
    """Global coherence (λ1−λ2)/(λ1+λ2) in [0, 1] and the dominant orientation as cos 2θ, sin 2θ."""
    jxx, jyy, jxy = float(np.mean(gx * gx)), float(np.mean(gy * gy)), float(np.mean(gx * gy))
    trace = jxx + jyy
    if trace <= 1e-12:
        return 0.0, 0.0, 0.0
    diff = math.hypot(jxx - jyy, 2.0 * jxy)
    return diff / trace, (jxx - jyy) / max(diff, 1e-12), 2.0 * jxy / max(diff, 1e-12)


def _blockiness(gray: np.ndarray, axis: int) -> float:
    """Mean |difference| across 8×8 block boundaries over the mean across interior positions.

    1.0 for an image without a grid; JPEG at quality 10–30 gives well above 1.
    """
    d = np.abs(np.diff(gray, axis=axis))
    profile = d.mean(axis=1 - axis)  # one value per column (axis=1) or row (axis=0)
    pos = np.arange(profile.size) % JPEG_BLOCK
    boundary = profile[pos == JPEG_BLOCK - 1]
    interior = profile[pos != JPEG_BLOCK - 1]
    if boundary.size == 0 or interior.size == 0:
        return 1.0
    # Medians: one strong natural edge on the grid must not look like blocking.
    return float((np.median(boundary) + 1e-4) / (np.median(interior) + 1e-4))


def degradation_stats(img: np.ndarray) -> np.ndarray:
    """The ``stats`` feature vector of one image (names in :data:`STATS_FEATURES`).

    Global cues are measured on a copy downscaled to at most ``STATS_MAX_SIDE`` px, pixel-level
    cues on a full-resolution central crop of at most ``STATS_CROP`` px aligned to the JPEG grid.
    Deterministic; a few milliseconds per image.

    Args:
        img: uint8 RGB, H×W×3.

    Returns:
        float32 vector of length ``STATS_DIM``; intensities on a 0–1 scale, logs natural.
    """
    check_rgb(img)
    small = _downscale(img, STATS_MAX_SIDE)
    crop = _central_crop(img, STATS_CROP, JPEG_BLOCK)
    feats: list[float] = []

    # -- brightness (dark) --
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    v = hsv[:, :, 2].astype(np.float32) / 255.0
    s = hsv[:, :, 1].astype(np.float32) / 255.0
    p05, p50, p95 = np.percentile(v, (5, 50, 95))
    feats += [float(v.mean()), float(p05), float(p50), float(p95), float(np.mean(v < 0.05))]

    # -- noise (on luma: independent per-channel noise of sigma s shows as about 0.67 s) --
    gray_c = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    h, w = gray_c.shape
    conv = cv2.filter2D(gray_c, cv2.CV_32F, IMMERKAER_MASK, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    sigma_imm = float(math.sqrt(math.pi / 2.0) * np.abs(conv).sum() / (6.0 * max(w - 2, 1) * max(h - 2, 1)))
    hh = gray_c[: h // 2 * 2, : w // 2 * 2]
    diag = (hh[0::2, 0::2] - hh[0::2, 1::2] - hh[1::2, 0::2] + hh[1::2, 1::2]) / 2.0
    sigma_mad = float(np.median(np.abs(diag)) / MAD_TO_SIGMA)
    feats += [sigma_imm, sigma_mad, math.log(sigma_imm + 1e-3)]

    # -- blur --
    lap = cv2.Laplacian(gray_c, cv2.CV_32F, ksize=3)
    gx = cv2.Sobel(gray_c, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray_c, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    g50, g90, g99 = np.percentile(mag, (50, 90, 99))
    # Energy kept by a 2× smoothing: near 1 for an already blurred image, lower for a sharp one.
    smooth = cv2.GaussianBlur(gray_c, (0, 0), 1.0)
    lap_s = cv2.Laplacian(smooth, cv2.CV_32F, ksize=3)
    sharp_ratio = float((lap_s.var() + 1e-8) / (lap.var() + 1e-8))
    coherence, cos2, sin2 = _structure_tensor_stats(gx, gy)
    feats += [math.log(float(lap.var()) + 1e-6), float(g50), float(g90), float(g99), sharp_ratio, coherence, cos2, sin2]

    # -- JPEG blockiness --
    b_h, b_v = _blockiness(gray_c, axis=1), _blockiness(gray_c, axis=0)
    feats += [b_h, b_v, math.log(max(b_h, b_v))]

    # -- haze --
    dark = cv2.erode(small.min(axis=2), np.ones((DARK_CHANNEL_WINDOW, DARK_CHANNEL_WINDOW), np.uint8)).astype(np.float32) / 255.0
    gray_s = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    feats += [float(dark.mean()), float(np.percentile(dark, 90)), float(gray_s.std()), float(s.mean()), float(np.percentile(s, 90))]

    # -- rain: thin bright oriented structures --
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (RAIN_TOPHAT_SIZE, RAIN_TOPHAT_SIZE))
    tophat = cv2.morphologyEx(gray_c, cv2.MORPH_TOPHAT, kernel)
    tx = cv2.Sobel(tophat, cv2.CV_32F, 1, 0, ksize=3)
    ty = cv2.Sobel(tophat, cv2.CV_32F, 0, 1, ksize=3)
    t_coh, _, _ = _structure_tensor_stats(tx, ty)
    # Near-vertical streaks have horizontal gradients: share of gradient energy along x.
    ex, ey = float(np.mean(tx * tx)), float(np.mean(ty * ty))
    vertical = ex / (ex + ey) if ex + ey > 1e-12 else 0.5
    feats += [float(tophat.mean()), float(np.percentile(tophat, 99)), t_coh, vertical]

    # -- colour --
    rgb = small.astype(np.float32) / 255.0
    rg = rgb[:, :, 0] - rgb[:, :, 1]
    yb = 0.5 * (rgb[:, :, 0] + rgb[:, :, 1]) - rgb[:, :, 2]
    colourfulness = math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(float(rg.mean()), float(yb.mean()))
    feats += [float(rgb[:, :, 0].mean()), float(rgb[:, :, 1].mean()), float(rgb[:, :, 2].mean()), colourfulness]

    out = np.asarray(feats, dtype=np.float32)
    if out.shape != (STATS_DIM,):  # a programming error, not user input
        raise RuntimeError(f"stats vector has {out.size} values, expected {STATS_DIM}")
    return out


class StatsEncoder:
    """``stats``: :func:`degradation_stats` for each image."""

    name = "stats"
    dim = STATS_DIM

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB H×W×3 images -> float32 ``[N, STATS_DIM]``."""
        check_batch(imgs, self.name)
        if len(imgs) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([degradation_stats(img) for img in imgs]).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}
