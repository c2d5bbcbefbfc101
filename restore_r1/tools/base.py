"""The tool contract and catalogue.

Every tool takes uint8 RGB H×W×3 and returns an array of the same shape and dtype. A tool is an
entry of one typed table (:data:`TOOLS`) with its metadata; the function or model that does the
work is separate and pure, so the same work runs in-process, in a KFP component or in a Triton
python model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.catalog import Catalogue, Entry
from restore_r1.errors import ImageError, UnavailableError
from restore_r1.images import check_rgb
from restore_r1.weights import WeightSpec, find_weights, missing_message

if TYPE_CHECKING:
    from restore_r1.tools.checkpoints import NeuralModel

#: How a tool runs. "function": in-process numpy/OpenCV/torch code shipped with the package or
#: a PyPI dependency; "spandrel": the authors' checkpoint as published, loaded by spandrel
#: (:mod:`restore_r1.tools.checkpoints`); "torchscript": an exported checkpoint the user supplies;
#: "triton": a model on a Triton server.
BACKENDS = ("function", "spandrel", "torchscript", "triton")


@dataclass(frozen=True)
class Tool(Entry):
    """One restoration tool: a catalogue entry that is itself the callable.

    Attributes:
        name: unique name, e.g. ``"clahe"`` or ``"restormer_derain"``.
        degradation: the degradation type it targets (one of ``DEGRADATION_TYPES``).
        backend: one of ``BACKENDS``.
        licence: licence of the code and weights it runs.
        paper: whether it is one of the 28 tools of the paper (docs/method.md §4).
        description: one line for listings.
        fn: the pure function ``uint8 RGB H×W×3 -> uint8 RGB H×W×3`` (function backend), or a
            factory result bound lazily by the backend module.
        weights: the weights file it needs, if any.
        requires: importable modules it needs beyond the core dependencies (optional extras).
        extra: the pip extra that brings ``requires`` (for the unavailability message).
        batch_fn: optional function over a list of images that is faster than a loop.
        model: the neural model entry it runs (the authors' file, loader and call), for
            ``restore-r1 weights``; ``None`` for the embedded tools.
    """

    name: str
    degradation: str
    backend: str
    licence: str
    paper: bool
    description: str
    fn: Callable[[np.ndarray], np.ndarray] | None = None
    weights: WeightSpec | None = None
    requires: tuple[str, ...] = field(default_factory=tuple)
    extra: str | None = None
    batch_fn: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None
    model: NeuralModel | None = None

    kind: ClassVar[str] = "tool"

    def __post_init__(self) -> None:
        if self.degradation not in DEGRADATION_TYPES:
            raise ValueError(f"tool {self.name!r}: degradation {self.degradation!r} not in {DEGRADATION_TYPES}")
        if self.backend not in BACKENDS:
            raise ValueError(f"tool {self.name!r}: backend {self.backend!r} not in {BACKENDS}")

    @property
    def neural(self) -> bool:
        """Whether it runs a network (a weights file, a checkpoint or a TorchScript export): the
        tools a GPU speeds up. Classical tools are OpenCV/numpy code that runs on the CPU."""
        return self.weights is not None or self.model is not None or self.backend in ("spandrel", "torchscript")

    def missing(self, **kwargs: Any) -> list[str]:
        """The weights file when it is absent, and a missing runner (see :meth:`Entry.availability`)."""
        reasons = []
        if self.weights is not None and find_weights(self.weights) is None:
            reasons.append(missing_message(self.weights))
        if self.fn is None:
            reasons.append(f"tool {self.name!r} has no runner for backend {self.backend!r}")
        return reasons

    def create(self, **kwargs: Any) -> Tool:
        """The tool itself: a tool is built when it is registered and takes no options."""
        if kwargs:
            raise TypeError(f"tool {self.name!r} takes no options, got {sorted(kwargs)}")
        return self

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """Runs the tool on one image (uint8 RGB H×W×3 in and out).

        Raises:
            UnavailableError: the tool cannot run here; the message says why.
            ImageError: the input breaks the contract.
        """
        ok, reason = self.availability()
        if not ok:
            raise UnavailableError(f"tool {self.name!r} is unavailable: {reason}")
        check_rgb(img, name=f"input of {self.name}")
        out = self.fn(img)
        return _check_output(self.name, img, out)

    def run_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Runs the tool on several images; uses ``batch_fn`` when the backend has one."""
        if self.batch_fn is None:
            return [self(img) for img in imgs]
        ok, reason = self.availability()
        if not ok:
            raise UnavailableError(f"tool {self.name!r} is unavailable: {reason}")
        for i, img in enumerate(imgs):
            check_rgb(img, name=f"input {i} of {self.name}")
        outs = self.batch_fn(imgs)
        return [_check_output(self.name, i, o) for i, o in zip(imgs, outs, strict=True)]


def _check_output(name: str, img: np.ndarray, out: np.ndarray) -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != img.shape:
        shape = getattr(out, "shape", None)
        dtype = getattr(out, "dtype", None)
        raise ImageError(f"tool {name!r} broke the contract: returned {dtype} {shape} for uint8 {img.shape}")
    return out


#: The one catalogue of tools. Entries are added by ``restore_r1.tools`` on import.
TOOLS: Catalogue[Tool] = Catalogue("tool")
