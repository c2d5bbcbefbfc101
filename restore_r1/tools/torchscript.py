"""Generic runner for user-supplied TorchScript exports of the authors' models.

Contract of an export (``torch.jit.save`` of a scripted or traced module): input float32 RGB
N×3×H×W in [0, 1]; output float32 RGB N×3×H×W in [0, 1] (a wrapper around the authors' model
does any range change and picks the final stage when the model returns several). The runner pads
by reflection to a multiple of the network's stride, crops back, and optionally runs in
overlapping tiles to bound memory on large images.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restore_r1.weights import WeightSpec, resolve_weights

#: Device override: "cpu", "cuda", "cuda:1", ...; default cuda when available, else cpu.
DEVICE_ENV = "RESTORE_R1_DEVICE"
#: Tile side used when an image has more pixels than ``TILE_ABOVE_PIXELS`` (0 disables tiling).
DEFAULT_TILE = 512
DEFAULT_TILE_OVERLAP = 32
TILE_ABOVE_PIXELS = 1024 * 1024

_CACHE: dict[tuple[str, float, str], object] = {}
_LOCK = threading.Lock()


def default_device() -> str:
    """``$RESTORE_R1_DEVICE`` when set, else ``"cuda"`` when available, else ``"cpu"``."""
    raw = os.environ.get(DEVICE_ENV)
    if raw:
        return raw
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


def _forward_padded(model, x, multiple: int):
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # Reflection needs pad < size; replicate covers tiny images.
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    y = model(x)
    if not hasattr(y, "shape") or y.ndim != 4 or y.shape[1] != 3:
        raise RuntimeError(f"TorchScript model returned {getattr(y, 'shape', type(y))}; expected N×3×H×W")
    return y[..., :h, :w]


def _forward_tiled(model, x, multiple: int, tile: int, overlap: int):
    import torch

    n, c, h, w = x.shape
    out = torch.zeros((n, 3, h, w), dtype=x.dtype, device=x.device)
    weight = torch.zeros((1, 1, h, w), dtype=x.dtype, device=x.device)
    stride = max(1, tile - overlap)
    ys = list(range(0, max(h - tile, 0) + 1, stride))
    xs = list(range(0, max(w - tile, 0) + 1, stride))
    if ys[-1] + tile < h:
        ys.append(h - tile)
    if xs[-1] + tile < w:
        xs.append(w - tile)
    for y0 in ys:
        for x0 in xs:
            patch = x[..., y0 : y0 + tile, x0 : x0 + tile]
            res = _forward_padded(model, patch, multiple)
            out[..., y0 : y0 + tile, x0 : x0 + tile] += res
            weight[..., y0 : y0 + tile, x0 : x0 + tile] += 1
    return out / weight


def run_model(
    model, imgs: Sequence[np.ndarray], device: str, pad_multiple: int = 8, tile: int | None = None, overlap: int = DEFAULT_TILE_OVERLAP
) -> list[np.ndarray]:
    """Runs ``model`` on same-sized uint8 RGB H×W×3 images; returns uint8 RGB of the same shape.

    Args:
        model: a TorchScript module following the module docstring's contract.
        imgs: images of one shape, uint8 RGB H×W×3.
        device: torch device string.
        pad_multiple: the network's stride; inputs are reflection-padded to a multiple of it.
        tile: tile side in pixels, or ``None`` for the whole image at once.
        overlap: overlap between tiles in pixels (averaged).
    """
    import torch

    batch = np.stack(imgs).astype(np.float32) / np.float32(255.0)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)
    with torch.inference_mode():
        if tile and max(x.shape[-2:]) > tile:
            y = _forward_tiled(model, x, pad_multiple, tile, overlap)
        else:
            y = _forward_padded(model, x, pad_multiple)
        y = (y.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    arr = y.permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


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
        if self.tile and img.shape[0] * img.shape[1] > TILE_ABOVE_PIXELS:
            # A multiple of the stride, so tiles need no padding.
            return max(self.pad_multiple, (self.tile // self.pad_multiple) * self.pad_multiple)
        return None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        device = default_device()
        model = load_model(resolve_weights(self.weights), device)
        return run_model(model, [img], device, self.pad_multiple, self._tile_for(img))[0]

    def run_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-shaped images go through the network together; others one by one."""
        device = default_device()
        model = load_model(resolve_weights(self.weights), device)
        outs: list[np.ndarray | None] = [None] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(imgs):
            groups.setdefault(img.shape, []).append(i)
        for idx in groups.values():
            tile = self._tile_for(imgs[idx[0]])
            for i, out in zip(idx, run_model(model, [imgs[i] for i in idx], device, self.pad_multiple, tile), strict=True):
                outs[i] = out
        return outs  # type: ignore[return-value]
