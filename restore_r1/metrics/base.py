"""The metric entry (:class:`MetricInfo`), the built :class:`Metric` and the protocols every metric
satisfies; the catalogue that lists the entries is :mod:`restore_r1.metrics.catalogue`."""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from restore_r1.catalog import Entry
from restore_r1.errors import ImageError, UnavailableError
from restore_r1.images import check_rgb
from restore_r1.weights import WEIGHT_LOCATIONS, WeightSpec, find_weights, missing_message, package_dir

#: pyiqa's checkpoint store (for messages).
PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights"


def WeightFile(filename: str, location: str, source: str = PYIQA_WEIGHTS_URL) -> WeightSpec:  # noqa: N802 - the former class's name
    """A metric's weights file: a :class:`restore_r1.weights.WeightSpec` in a cache folder of
    :data:`restore_r1.weights.WEIGHT_LOCATIONS` other than our own."""
    if location == "weights" or location not in WEIGHT_LOCATIONS:
        raise ValueError(f"weights {filename!r}: location {location!r} not in {WEIGHT_LOCATIONS[1:]}")
    return WeightSpec(filename, source, location=location)


class Scorer(Protocol):
    """What a metric's loader builds: float tensors N×3×H×W in [0, 1] (and a reference of the
    same shape for FR metrics) -> a tensor of N scores."""

    def __call__(self, x: Any, ref: Any = None) -> Any: ...


class ImageMetric(Protocol):
    """What :func:`restore_r1.metrics.create_metric` returns: uint8 RGB H×W×3 arrays -> floats."""

    name: str

    def __call__(self, img: np.ndarray, ref: np.ndarray | None = None) -> float: ...

    def batch(self, imgs: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None = None) -> list[float]: ...


@functools.lru_cache(maxsize=1)
def _pyiqa_model_names() -> frozenset[str] | None:
    """pyiqa's model names, read from its config file without importing pyiqa (fast).

    Returns ``None`` when pyiqa is not installed.
    """
    folder = package_dir("pyiqa")
    if folder is None:
        return None
    config = folder / "default_model_configs.py"
    try:
        text = config.read_text(encoding="utf-8")
    except OSError:
        return frozenset()
    # Top-level keys of DEFAULT_CONFIGS are written "        'name': {" (8 spaces of indentation).
    return frozenset(re.findall(r"^ {8}'([^']+)': \{", text, flags=re.MULTILINE))


@dataclass(frozen=True)
class MetricInfo(Entry):
    """One metric and its metadata (a :class:`restore_r1.catalog.Entry`).

    Attributes:
        name: our name (the CLI's ``--metrics`` value).
        pyiqa_name: the name of the model in pyiqa's ``list_models()``.
        full_reference: needs a reference image of the same size.
        lower_better: lower scores mean better quality.
        score_range: ``(low, high)`` the scores fall in; ``math.inf`` where open.
        description: one line for listings.
        weights: files that must exist before the metric can be built.
        requires: importable modules needed beyond the core dependencies.
        min_side: smallest image side, in pixels, the metric can score.
        loader: ``(info, device) -> callable(x, ref) -> tensor`` building the scorer on float
            tensors N×3×H×W in [0, 1]; ``None`` uses ``pyiqa.create_metric(pyiqa_name)``.
    """

    name: str
    pyiqa_name: str
    full_reference: bool
    lower_better: bool
    score_range: tuple[float, float]
    description: str
    weights: tuple[WeightSpec, ...] = ()
    requires: tuple[str, ...] = ()
    min_side: int = 16
    loader: Callable[[MetricInfo, str], Scorer] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        low, high = self.score_range
        if not low < high:
            raise ValueError(f"metric {self.name!r}: score range {self.score_range} is empty")

    kind: ClassVar[str] = "metric"

    def modules(self) -> tuple[str, ...]:
        """pyiqa, which computes every metric, and ``requires``."""
        return ("pyiqa", *self.requires)

    def missing(self, **kwargs: Any) -> list[str]:
        """The pyiqa model when the installed pyiqa lacks it, and every absent weights file;
        found without touching pyiqa, in milliseconds."""
        problems = []
        models = _pyiqa_model_names()
        if self.loader is None and models is not None and self.pyiqa_name not in models:
            problems.append(f"the installed pyiqa has no model {self.pyiqa_name!r} (a newer pyiqa may)")
        problems += [missing_message(w) for w in self.weights if find_weights(w) is None]
        return problems

    def unavailable(self) -> str | None:
        """``"<name> is unavailable: <reason>"``, or ``None`` when the metric can run here."""
        ok, reason = self.availability()
        return None if ok else f"{self.name} is unavailable: {reason}"

    def create(self, device: str = "cpu") -> Metric:
        """The metric on ``device``, built lazily on first use.

        Raises:
            UnavailableError: the metric cannot run here; the message says which file or module
                is missing and where to put it.
        """
        reason = self.unavailable()
        if reason is not None:
            raise UnavailableError(reason)
        return Metric(self, device)


def _load_pyiqa(info: MetricInfo, device: str) -> Scorer:
    import pyiqa
    import torch

    # pyiqa prints "Loading pretrained model ..." on stdout; keep stdout for results (--json).
    with contextlib.redirect_stdout(sys.stderr):
        model = pyiqa.create_metric(info.pyiqa_name, as_loss=False, device=torch.device(device))

    def score(x: Any, ref: Any = None) -> Any:
        with torch.no_grad():
            return model(x, ref) if info.full_reference else model(x)

    return score


class Metric:
    """A built metric: call it on uint8 RGB H×W×3 arrays, get floats.

    Built by :func:`create_metric`; the model is built on first use and shared per (name, device).
    """

    def __init__(self, info: MetricInfo, device: str = "cpu") -> None:
        self.info = info
        self.device = device

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"Metric({self.info.name!r}, device={self.device!r})"

    def __call__(self, img: np.ndarray, ref: np.ndarray | None = None) -> float:
        """Scores one image.

        Args:
            img: uint8 RGB H×W×3.
            ref: uint8 RGB H×W×3 of the same shape for FR metrics; ``None`` for NR metrics.

        Returns:
            The score, in ``info.score_range`` (``info.lower_better`` says its direction).

        Raises:
            ValueError: FR metric without ``ref``, or NR metric given one.
            ImageError: not uint8 RGB, smaller than ``info.min_side``, or ``ref`` of another size.
            UnavailableError: the metric cannot run here (the reason names the missing file).
        """
        return self.batch([img], None if ref is None else [ref])[0]

    def batch(self, imgs: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None = None) -> list[float]:
        """Scores several images; images of one shape are scored in one forward pass.

        Args:
            imgs: uint8 RGB H×W×3 arrays (shapes may differ).
            refs: one reference per image for FR metrics, else ``None``.

        Returns:
            One float per image, in order.
        """
        imgs = list(imgs)
        refs = self._check_refs(imgs, refs)
        for i, img in enumerate(imgs):
            number = f" {i}" if len(imgs) > 1 else ""
            self._check_image(img, f"image{number}")
            if refs is not None:
                self._check_image(refs[i], f"reference{number}")
                if refs[i].shape != img.shape:
                    raise ImageError(
                        f"reference{number}: {refs[i].shape[1]}×{refs[i].shape[0]} differs from the image's "
                        f"{img.shape[1]}×{img.shape[0]}; {self.name} needs both of one size"
                    )
        fn = build(self.info, self.device)
        scores: list[float] = [math.nan] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(imgs):
            groups.setdefault(img.shape, []).append(i)
        for indices in groups.values():
            x = _to_tensor([imgs[i] for i in indices], self.device)
            r = None if refs is None else _to_tensor([refs[i] for i in indices], self.device)
            out = fn(x, r)
            values = out.detach().reshape(-1).double().cpu().tolist()
            if len(values) != len(indices):
                raise RuntimeError(f"{self.name}: pyiqa returned {len(values)} scores for {len(indices)} images")
            for i, value in zip(indices, values):
                scores[i] = float(value)
        return scores

    def _check_refs(self, imgs: list[np.ndarray], refs: Sequence[np.ndarray] | None) -> list[np.ndarray] | None:
        if self.info.full_reference:
            if refs is None:
                raise ValueError(f"{self.name} is a full-reference metric: pass ref= (the ground-truth image)")
            refs = list(refs)
            if len(refs) != len(imgs):
                raise ValueError(f"{self.name}: {len(refs)} references for {len(imgs)} images")
            return refs
        if refs is not None:
            raise ValueError(f"{self.name} is a no-reference metric: ref must be None")
        return None

    def _check_image(self, img: np.ndarray, what: str) -> None:
        check_rgb(img, what)
        if min(img.shape[:2]) < self.info.min_side:
            raise ImageError(f"{what}: {img.shape[1]}×{img.shape[0]} is smaller than the {self.info.min_side}×{self.info.min_side} {self.name} needs")


_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _build_cached(info: MetricInfo, device: str) -> Scorer:
    loader = info.loader if info.loader is not None else _load_pyiqa
    return loader(info, device)


def build(info: MetricInfo, device: str) -> Scorer:
    """The scorer of ``info`` on ``device``, built once per (metric, device) and shared.

    Raises:
        UnavailableError: the metric cannot run here.
    """
    reason = info.unavailable()
    if reason is not None:
        raise UnavailableError(reason)
    with _BUILD_LOCK:
        return _build_cached(info, device)


def _to_tensor(imgs: list[np.ndarray], device: str) -> Any:
    """uint8 RGB H×W×3 arrays of one shape -> float32 tensor N×3×H×W in [0, 1] on ``device``."""
    import torch

    batch = np.stack(imgs).astype(np.float32) / 255.0
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)
