"""Generic runner for user-supplied TorchScript exports of the authors' models.

Contract of an export (``torch.jit.save`` of a scripted or traced module): input float32 RGB
N×3×H×W in [0, 1]; output float32 RGB N×3×H×W in [0, 1] (a wrapper around the authors' model
does any range change and picks the final stage when the model returns several). Padding to the
network's stride, tiling of large images and batching are :mod:`restore_r1.tools.neural`'s.
This path is for the models no checkpoint loader knows (:mod:`restore_r1.tools.checkpoints`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restore_r1.tools import neural
from restore_r1.tools.neural import DEFAULT_TILE, DEFAULT_TILE_OVERLAP, DEVICE_ENV, TILE_ABOVE_PIXELS, default_device
from restore_r1.weights import WeightSpec, resolve_weights

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_TILE_OVERLAP",
    "DEVICE_ENV",
    "TILE_ABOVE_PIXELS",
    "TorchScriptRunner",
    "clear_cache",
    "default_device",
    "load_model",
    "run_model",
]

_CACHE: dict[tuple[str, float, str], object] = {}
_LOCK = threading.Lock()


def load_model(path: str | os.PathLike, device: str):
    """Loads (once per path, file mtime and device) a TorchScript module in eval mode."""
    import torch

    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime, device)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = torch.jit.load(str(path), map_location=device)
            model.eval()
            _CACHE[key] = model
    return model


def clear_cache() -> None:
    """Forgets every loaded model (frees their memory)."""
    with _LOCK:
        _CACHE.clear()


def run_model(
    model, imgs: Sequence[np.ndarray], device: str, pad_multiple: int = 8, tile: int | None = None, overlap: int = DEFAULT_TILE_OVERLAP
) -> list[np.ndarray]:
    """Runs a TorchScript ``model`` on same-sized uint8 RGB H×W×3 images (:func:`restore_r1.tools.neural.run_model`)."""
    return neural.run_model(model, imgs, device, pad_multiple, tile, overlap)


@dataclass(frozen=True)
class TorchScriptRunner:
    """Callable bound to one weights file: ``uint8 RGB H×W×3 -> uint8 RGB H×W×3``.

    Attributes:
        weights: the TorchScript export it loads (resolved on each call, loaded once).
        pad_multiple: the network's stride.
        tile: tile side for images above ``TILE_ABOVE_PIXELS``; 0 disables tiling.
    """

    weights: WeightSpec
    pad_multiple: int = 8
    tile: int = DEFAULT_TILE

    def _tile_for(self, img: np.ndarray) -> int | None:
        return neural.tile_for(img, self.pad_multiple, self.tile, TILE_ABOVE_PIXELS)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.run_batch([img])[0]

    def run_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-shaped images go through the network together; others one by one."""
        device = default_device()
        model = load_model(resolve_weights(self.weights), device)
        return neural.run_grouped(imgs, lambda group: run_model(model, group, device, self.pad_multiple, self._tile_for(group[0])))
