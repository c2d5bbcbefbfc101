"""The encoder protocol and what every encoder shares: batch checks, the torch device, and the
concatenation of several encoders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from restore_r1.errors import UnavailableError
from restore_r1.images import check_rgb


class Encoder(Protocol):
    """What every encoder satisfies: uint8 RGB H×W×3 images -> float32 ``[N, dim]``, rebuilt by
    ``create_encoder(**enc.config())``."""

    name: str
    dim: int

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray: ...

    def config(self) -> dict[str, Any]: ...


def check_batch(imgs: Sequence[np.ndarray], who: str) -> None:
    """Refuses one array in place of a list, and any image that is not uint8 RGB H×W×3."""
    if isinstance(imgs, np.ndarray):
        raise TypeError(f"{who}: expected a list of H×W×3 images, got one array of shape {imgs.shape}")
    for i, img in enumerate(imgs):
        check_rgb(img, name=f"image {i} given to {who}")


def torch_device(device: str) -> Any:
    """The ``torch.device`` for ``"cpu"`` or ``"cuda[:N]"``; CUDA only where it is available."""
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r} must be 'cpu', 'cuda' or 'cuda:N'")
    if device != "cpu" and not torch.cuda.is_available():
        raise UnavailableError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


class ConcatEncoder:
    """Concatenation of several encoders' features (e.g. ``stats+efficientnet_lite0``).

    Args:
        parts: the encoders, in order.
        name: the catalogue name to report.
    """

    def __init__(self, parts: Sequence[Any], name: str) -> None:
        if not parts:
            raise ValueError("ConcatEncoder needs at least one encoder")
        self.parts = list(parts)
        self.name = name
        self.dim = sum(p.dim for p in self.parts)

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([p.encode(imgs) for p in self.parts], axis=1).astype(np.float32)

    def config(self) -> dict[str, Any]:
        # Part options are stored by part name so create_encoder(**config) rebuilds the same parts.
        cfg: dict[str, Any] = {"name": self.name}
        for part in self.parts:
            opts = {k: v for k, v in part.config().items() if k != "name"}
            if opts:
                cfg[part.name] = opts
        return cfg
