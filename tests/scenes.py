"""Synthetic test scenes shared by several test modules."""

from __future__ import annotations

import cv2
import numpy as np


def textured_scene(seed: int = 0, size: int = 96, checks: int = 6, grain_sigma: float = 1.5) -> np.ndarray:
    """A textured, colourful uint8 RGB scene with edges at several scales.

    Args:
        checks: checkerboard squares per side.
        grain_sigma: blur (pixels) of the seeded noise grain.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.5 + 0.3 * np.sin(9 * x), 0.4 + 0.3 * np.cos(7 * y), 0.3 + 0.2 * x * y], axis=2)
    img += (((np.floor(x * checks) + np.floor(y * checks)) % 2) * 0.25)[:, :, None]
    img += cv2.GaussianBlur(rng.normal(0, 0.08, (size, size, 3)).astype(np.float32), (0, 0), grain_sigma)
    return np.clip(img * 200, 0, 255).astype(np.uint8)
