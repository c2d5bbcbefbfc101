"""Running a torch image-to-image network on uint8 RGB images: device, padding, tiling, batching.

One implementation for every neural backend (the TorchScript exports of
:mod:`restore_r1.tools.torchscript` and the checkpoints of :mod:`restore_r1.tools.checkpoints`).
A *forward* is any callable ``float32 N×3×H×W in [0, 1] -> float32 N×3×H×W`` (the network's own
call, with whatever extra input it needs bound in).

* **Padding.** The input is padded at the bottom and right to a multiple of the network's
  stride (and up to its minimum side) by reflection, by replication where reflection cannot
  reach (an image smaller than the pad); the output is cropped back.
* **Tiling.** Large images run in overlapping tiles. Tile origins and sides are multiples of
  ``lcm(stride, 8)``, so every tile sees the same downsampling grid and the same JPEG 8×8 block
  phase as the whole image. In each overlap, the quarter next to a tile's inner edge (the pixels
  with the least context) gets weight 0 and the middle half a linear ramp: the weights add up to
  one across the overlap, so there are no seams, and a network whose receptive field fits in
  that quarter gives the untiled result up to float rounding. Networks with global operations
  (NAFNet's channel attention, Restormer's transposed attention) see less of the image per tile
  and differ somewhat from an untiled run by construction.
* **Batching.** Same-shaped images go through the network together.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np

#: Device override: "cpu", "cuda", "cuda:1", ...; default cuda when available, else cpu.
DEVICE_ENV = "RESTORE_R1_DEVICE"
#: Tile side used when an image has more pixels than ``TILE_ABOVE_PIXELS`` (0 disables tiling).
DEFAULT_TILE = 512
#: Overlap between neighbouring tiles in pixels (rounded up to the tile alignment).
DEFAULT_TILE_OVERLAP = 32
TILE_ABOVE_PIXELS = 1024 * 1024
#: JPEG's block side: tile origins keep the 8×8 grid phase (JPEG artefact networks depend on it).
JPEG_BLOCK = 8
#: Share of each overlap, at a tile's inner edge, that is discarded (weight 0); the middle of
#: the overlap (1 − 2 × this) is a linear ramp.
TILE_DISCARD_FRACTION = 0.25


def default_device() -> str:
    """``$RESTORE_R1_DEVICE`` when set, else ``"cuda"`` when available, else ``"cpu"``."""
    raw = os.environ.get(DEVICE_ENV)
    if raw:
        return raw
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pad_to(x, multiple: int = 1, minimum: int = 0):
    """``x`` (torch N×C×H×W) padded at the bottom and right to sides that are multiples of
    ``multiple`` and at least ``minimum``: by reflection, then by replication for what reflection
    cannot reach (it needs the pad to be smaller than the side)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    target_h = max(minimum, h + (-h) % multiple)
    target_w = max(minimum, w + (-w) % multiple)
    target_h += (-target_h) % multiple
    target_w += (-target_w) % multiple
    ph, pw = target_h - h, target_w - w
    if not (ph or pw):
        return x
    rh, rw = min(ph, h - 1), min(pw, w - 1)
    if rh or rw:
        x = F.pad(x, (0, rw, 0, rh), mode="reflect")
    if ph - rh or pw - rw:
        x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
    return x


def check_output(y, x) -> None:
    """Raises ``RuntimeError`` unless ``y`` is N×3×H×W of ``x``'s batch and size."""
    n, _, h, w = x.shape
    shape = tuple(getattr(y, "shape", ()))
    if len(shape) != 4 or shape != (n, 3, h, w):
        raise RuntimeError(f"the model returned {shape or type(y).__name__} for input {tuple(x.shape)}; expected N×3×H×W = {(n, 3, h, w)}")


def forward_padded(forward: Callable, x, multiple: int = 1, minimum: int = 0):
    """``forward`` on ``x`` padded by :func:`pad_to`, cropped back to ``x``'s size."""
    h, w = x.shape[-2:]
    xp = pad_to(x, multiple, minimum)
    y = forward(xp)
    check_output(y, xp)
    return y[..., :h, :w]


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Origins of tiles of side ``tile`` every ``stride`` pixels covering ``[0, size)``; the last
    one ends at ``size``. Origins stay multiples of ``stride``'s alignment when ``size`` and
    ``tile`` are."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def edge_weights(length: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    """1-D blending weights (float32, ``length``) of a tile that has a neighbour on its left
    and/or right: 0 over the discarded part of the overlap, a linear ramp over its middle, 1
    elsewhere. For two neighbours overlapping by ``overlap`` the weights add up to one."""
    t = np.arange(length, dtype=np.float64) + 0.5
    discard = TILE_DISCARD_FRACTION * overlap
    span = max(overlap - 2 * discard, 1.0)
    w = np.ones(length)
    if left:
        w = np.minimum(w, np.clip((t - discard) / span, 0.0, 1.0))
    if right:
        w = np.minimum(w, np.clip((length - t - discard) / span, 0.0, 1.0))
    return w.astype(np.float32)


def tile_geometry(multiple: int, tile: int, overlap: int) -> tuple[int, int, int]:
    """``(alignment, tile, overlap)``: the alignment ``lcm(multiple, JPEG_BLOCK)``, the overlap
    rounded up to it and the tile side rounded down to it, at least two overlaps (so that at most
    two tiles overlap anywhere) and one alignment."""
    align = math.lcm(max(1, multiple), JPEG_BLOCK)
    overlap = -(-max(0, overlap) // align) * align
    tile = max((tile // align) * align, 2 * overlap, align)
    return align, tile, overlap


def forward_tiled(forward: Callable, x, multiple: int, tile: int, overlap: int = DEFAULT_TILE_OVERLAP, minimum: int = 0):
    """``forward`` on ``x`` (torch N×C×H×W) in overlapping tiles, blended (module docstring).

    The image is first padded (:func:`pad_to`) to a multiple of the alignment, so every tile has
    an aligned origin and needs no padding of its own; the result is cropped back.
    """
    import torch

    align, tile, overlap = tile_geometry(multiple, tile, overlap)
    h, w = x.shape[-2:]
    xp = pad_to(x, align, minimum)
    n, _, hp, wp = xp.shape
    th, tw = min(tile, hp), min(tile, wp)
    ys, xs = tile_starts(hp, th, th - overlap), tile_starts(wp, tw, tw - overlap)
    out = torch.zeros((n, 3, hp, wp), dtype=xp.dtype, device=xp.device)
    total = torch.zeros((1, 1, hp, wp), dtype=xp.dtype, device=xp.device)
    for y0 in ys:
        wy = edge_weights(th, overlap, y0 > 0, y0 + th < hp)
        for x0 in xs:
            wx = edge_weights(tw, overlap, x0 > 0, x0 + tw < wp)
            weight = torch.from_numpy(np.outer(wy, wx)).to(device=xp.device, dtype=xp.dtype)
            patch = xp[..., y0 : y0 + th, x0 : x0 + tw]
            res = forward(patch)
            check_output(res, patch)
            out[..., y0 : y0 + th, x0 : x0 + tw] += res * weight
            total[..., y0 : y0 + th, x0 : x0 + tw] += weight
    return (out / total)[..., :h, :w]


def to_tensor(imgs: Sequence[np.ndarray], device: str):
    """Same-shaped uint8 RGB H×W×3 images -> float32 torch N×3×H×W in [0, 1] on ``device``."""
    import torch

    batch = np.stack(imgs).astype(np.float32) / np.float32(255.0)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)


def to_images(y) -> list[np.ndarray]:
    """float torch N×3×H×W (any range) -> uint8 RGB H×W×3 images: clipped to [0, 1], rounded."""
    import torch

    y = (y.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return [np.ascontiguousarray(a) for a in y.permute(0, 2, 3, 1).cpu().numpy()]


def run_model(
    forward: Callable,
    imgs: Sequence[np.ndarray],
    device: str,
    pad_multiple: int = 8,
    tile: int | None = None,
    overlap: int = DEFAULT_TILE_OVERLAP,
    minimum: int = 0,
) -> list[np.ndarray]:
    """Runs ``forward`` on same-sized uint8 RGB H×W×3 images; returns uint8 RGB of the same shape.

    Args:
        forward: ``float32 N×3×H×W in [0, 1] -> float32 N×3×H×W``, on ``device``.
        imgs: images of one shape, uint8 RGB H×W×3.
        device: torch device string.
        pad_multiple: the network's stride; inputs are padded to a multiple of it.
        tile: tile side in pixels, or ``None`` for the whole image at once.
        overlap: overlap between tiles in pixels.
        minimum: the smallest side the network accepts (padded up to it).
    """
    import torch

    x = to_tensor(imgs, device)
    with torch.inference_mode():
        if tile and max(x.shape[-2:]) > tile:
            y = forward_tiled(forward, x, pad_multiple, tile, overlap, minimum)
        else:
            y = forward_padded(forward, x, pad_multiple, minimum)
        if not bool(torch.isfinite(y).all()):
            raise RuntimeError("the model returned NaN or infinite values")
    return to_images(y)


def tile_for(img: np.ndarray, pad_multiple: int, tile: int, above_pixels: int | None = None) -> int | None:
    """The tile side for ``img`` (uint8 H×W×3): ``tile`` rounded to the alignment when the image
    has more than ``above_pixels`` (default :data:`TILE_ABOVE_PIXELS`) pixels and tiling is on
    (``tile`` > 0), else ``None``."""
    above_pixels = TILE_ABOVE_PIXELS if above_pixels is None else above_pixels
    if tile and img.shape[0] * img.shape[1] > above_pixels:
        return tile_geometry(pad_multiple, tile, DEFAULT_TILE_OVERLAP)[1]
    return None


def run_grouped(imgs: Sequence[np.ndarray], run_same_shape: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[np.ndarray]:
    """``run_same_shape`` on each group of same-shaped images (one batch each), results in input order."""
    outs: list[np.ndarray | None] = [None] * len(imgs)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(imgs):
        groups.setdefault(img.shape, []).append(i)
    for idx in groups.values():
        for i, out in zip(idx, run_same_shape([imgs[i] for i in idx]), strict=True):
            outs[i] = out
    return outs  # type: ignore[return-value]
