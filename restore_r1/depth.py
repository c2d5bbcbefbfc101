"""Depth maps for the haze degradation (docs/method.md §2): loading per-image maps, and a prior when none.

Haze needs a relative depth ``d`` in [0, 1] (1 = farthest) with the image's height and width.
AgenticIR reads MiO100's per-image depth (a ``.mat`` file holding the variable ``data_obj`` at a
quarter of the image resolution, resized with bicubic interpolation and divided by its maximum);
:func:`load_depth` does the same for ``.mat``, ``.npy`` and 16-bit ``.png`` maps. Without a map,
:func:`depth_prior` gives a documented, deterministic substitute.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from restore_r1.errors import ImageError
from restore_r1.images import check_rgb

#: Suffixes :func:`find_depth` looks for, in this order of preference.
DEPTH_SUFFIXES: tuple[str, ...] = (".npy", ".mat", ".png")
#: ``.mat`` variables taken as the depth, in order; MiO100/MiOIR store it as ``data_obj``.
MAT_DEPTH_KEYS: tuple[str, ...] = ("data_obj", "depth")

#: Depth prior: weight of the vertical "farther toward the top" gradient; the rest goes to the
#: dark-channel cue.
PRIOR_VERTICAL_WEIGHT = 0.7
#: Depth prior: side of the dark channel's minimum filter, as a fraction of the short side.
PRIOR_PATCH_FRACTION = 1 / 32
#: Depth prior: σ of the Gaussian smoothing of the dark channel, as a fraction of the short side.
PRIOR_SMOOTH_FRACTION = 1 / 16


def depth_prior(img: np.ndarray) -> np.ndarray:
    """A cheap relative-depth prior for images without a depth map.

    ``d = 0.7·g + 0.3·c``, normalised to max 1, where

    * ``g`` is a vertical gradient from 0 at the bottom row to 1 at the top row: in the outdoor
      photos haze is applied to, the ground near the camera fills the bottom of the frame and the
      horizon and sky the top ("ground-plane" prior);
    * ``c`` is the dark channel (per-pixel minimum over R, G, B, then a minimum filter of side
      1/32 of the short side, smoothed by a Gaussian of σ = 1/16 of the short side) divided by
      255. In clear daylight images the dark channel is near zero except in the sky and bright,
      low-saturation distant regions (He et al., "Single image haze removal using dark channel
      prior", 2009), so it pushes such regions farther.

    The gradient dominates so the map is smooth and monotone on average, and the dark-channel
    term bends it around the scene's sky and bright background. It is deterministic, needs no
    weights and costs a few OpenCV passes.

    Args:
        img: uint8 RGB, H×W×3.

    Returns:
        float32 H×W in [0, 1], maximum 1.
    """
    check_rgb(img)
    h, w = img.shape[:2]
    short = min(h, w)
    vertical = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None] * np.ones((1, w), dtype=np.float32)
    patch = max(3, int(round(short * PRIOR_PATCH_FRACTION)) | 1)
    dark = cv2.erode(img.min(axis=2), np.ones((patch, patch), dtype=np.uint8), borderType=cv2.BORDER_REPLICATE)
    sigma = max(1.0, short * PRIOR_SMOOTH_FRACTION)
    dark = cv2.GaussianBlur(dark.astype(np.float32) / 255.0, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
    d = PRIOR_VERTICAL_WEIGHT * vertical + (1.0 - PRIOR_VERTICAL_WEIGHT) * dark
    return (d / float(d.max())).astype(np.float32)


def _read_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(str(path))
    except (OSError, ValueError, NotImplementedError, TypeError) as exc:
        raise ImageError(f"{path}: not a readable .mat file ({exc})") from None
    for key in MAT_DEPTH_KEYS:
        if key in data:
            return np.asarray(data[key])
    arrays = {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "uif"}
    if len(arrays) != 1:
        raise ImageError(f"{path}: expected a variable {' or '.join(MAT_DEPTH_KEYS)} or exactly one 2-D numeric array, found {sorted(arrays) or 'none'}")
    return next(iter(arrays.values()))


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
                raise ImageError(f"{path}: a depth PNG must be single-channel (8/16-bit), got mode {im.mode}")
            return np.asarray(im)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable depth image ({exc})") from None


def load_depth(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a depth map and normalises it to maximum 1.

    Accepted files: ``.npy`` (a 2-D array), ``.png`` (8- or 16-bit single channel) and ``.mat``
    (MiO100's format: the variable ``data_obj``; else ``depth``; else the only 2-D numeric array).
    Non-finite values are set to the largest finite depth (treated as far) and negative values
    to 0. When ``shape`` is given the map is resized to it with bicubic interpolation (as
    AgenticIR does for MiO100's quarter-resolution maps) and normalised again.

    Args:
        path: the depth file.
        shape: (height, width) of the image the map belongs to, or None to keep its size.

    Returns:
        float32 H×W in [0, 1], maximum 1.

    Raises:
        ImageError: missing or unreadable file, not 2-D, or no positive depth.
        ValueError: unsupported suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such depth file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageError(f"{path}: not a readable .npy file ({exc})") from None
    elif suffix == ".mat":
        depth = _read_mat(path)
    elif suffix == ".png":
        depth = _read_png(path)
    else:
        raise ValueError(f"{path}: unsupported depth suffix {suffix!r}; use one of {list(DEPTH_SUFFIXES)}")
    depth = np.squeeze(np.asarray(depth))
    if depth.ndim != 2 or depth.dtype.kind not in "uif" or min(depth.shape) < 1:
        raise ImageError(f"{path}: expected a 2-D numeric depth map, got shape {depth.shape} dtype {depth.dtype}")
    depth = _normalise(depth.astype(np.float64), path)
    if shape is not None:
        h, w = int(shape[0]), int(shape[1])
        if depth.shape != (h, w):
            depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_CUBIC)
            depth = _normalise(depth, path)
    return depth.astype(np.float32)


def _normalise(depth: np.ndarray, path: Path) -> np.ndarray:
    finite = np.isfinite(depth)
    if not finite.any():
        raise ImageError(f"{path}: the depth map has no finite values")
    depth = np.where(finite, depth, depth[finite].max())
    depth = np.maximum(depth, 0.0)
    top = float(depth.max())
    if top <= 0:
        raise ImageError(f"{path}: the depth map has no positive values")
    return depth / top


def find_depth(depth_dir: str | os.PathLike, stem: str) -> Path | None:
    """The depth file for image ``stem`` in ``depth_dir`` (``stem`` + a ``DEPTH_SUFFIXES``), or None."""
    folder = Path(depth_dir)
    for suffix in DEPTH_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None
