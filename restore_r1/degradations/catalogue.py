"""The degradation catalogue (:data:`DEGRADATIONS`), its entry and the sampler protocol.

Each entry names a sampler of :mod:`restore_r1.degradations.functions`; the catalogue lists
exactly ``DEGRADATION_TYPES``, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.catalog import Catalogue, Entry
from restore_r1.degradations.functions import (
    Params,
    sample_dark,
    sample_defocus_blur,
    sample_haze,
    sample_jpeg,
    sample_motion_blur,
    sample_noise,
    sample_rain,
)
from restore_r1.images import check_rgb


class Sampler(Protocol):
    """``sample(img, rng) -> (out, params)``: uint8 RGB H×W×3 in and out, the parameters drawn
    from ``rng`` returned JSON-ready; a sampler that uses depth also takes ``depth=`` (float
    H×W in [0, 1] or ``None``)."""

    def __call__(self, img: np.ndarray, rng: np.random.Generator, /, **kwargs: Any) -> tuple[np.ndarray, Params]: ...


@dataclass(frozen=True)
class Degradation(Entry):
    """One degradation type (a :class:`restore_r1.catalog.Entry`).

    Attributes:
        name: one of ``DEGRADATION_TYPES``.
        description: one line for listings.
        sample: ``sample(img, rng) -> (uint8 RGB, params)``; with ``uses_depth`` it also takes
            ``depth=`` (float H×W in [0, 1] or None).
        uses_depth: whether ``sample`` takes a depth map.
    """

    name: str
    description: str
    sample: Sampler
    uses_depth: bool = False

    kind: ClassVar[str] = "degradation"

    def create(self, **kwargs: Any) -> Sampler:
        """The sampler (degradations take no options; their parameters are drawn per call)."""
        if kwargs:
            raise TypeError(f"degradation {self.name!r} takes no options, got {sorted(kwargs)}")
        return self.sample


#: The degradation catalogue, in the order of ``DEGRADATION_TYPES``.
DEGRADATIONS: Catalogue[Degradation] = Catalogue("degradation")
for _entry in (
    Degradation("dark", "low light: shift, gamma or linear squeeze of V in HSV", sample_dark),
    Degradation("noise", "Gaussian (σ 20–50) or Poisson (scale 1–3) noise", sample_noise),
    Degradation("jpeg", "JPEG compression, quality 10–29 (OpenCV)", sample_jpeg),
    Degradation("haze", "atmospheric scattering haze, A 0.7–1.0, β 0.6–1.8", sample_haze, uses_depth=True),
    Degradation("motion_blur", "linear motion blur, radius 10/15, any angle", sample_motion_blur),
    Degradation("defocus_blur", "disk defocus blur, radius 3/4/6", sample_defocus_blur),
    Degradation("rain", "additive rain streaks, length 20–39, angle −30..29°", sample_rain),
):
    DEGRADATIONS.register(_entry.name, _entry)
del _entry
if tuple(DEGRADATIONS.names()) != DEGRADATION_TYPES:  # pragma: no cover - a programming error
    raise RuntimeError("DEGRADATIONS must list exactly DEGRADATION_TYPES, in order")


def apply_degradation(name: str, img: np.ndarray, rng: np.random.Generator, depth: np.ndarray | None = None) -> tuple[np.ndarray, Params]:
    """Applies the degradation ``name`` with parameters drawn from ``rng``.

    Args:
        name: one of ``DEGRADATION_TYPES``.
        img: uint8 RGB, H×W×3.
        rng: parameter and noise source.
        depth: float H×W in [0, 1] for haze; ignored by the others.

    Returns:
        (uint8 RGB H×W×3, the parameters drawn).

    Raises:
        KeyError: unknown name (with close-match suggestions).
    """
    entry = DEGRADATIONS.get(name)
    check_rgb(img)
    if entry.uses_depth:
        return entry.sample(img, rng, depth=depth)
    return entry.sample(img, rng)
