"""The ``calibrated`` judge's model at use time: its no-reference features and the fitted
ridge model read from ``restore_r1/data/judges/calibrated.json``.

The judge (:class:`CalibratedJudge`, at the end) sees one image, computes
:data:`CALIBRATED_FEATURES` (the 32 ``stats`` features of
:func:`restore_r1.encoders.degradation_stats` plus PIQE) and maps them to 1–5 with
:class:`CalibrationModel`. How that model was fitted, offline and on the training photos only,
is :mod:`restore_r1.judges.calibrate` (``bench/calibrate_judge.py``); nothing here imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.encoders import STATS_FEATURES, degradation_stats
from restore_r1.errors import RestoreR1Error
from restore_r1.judges.base import LEVEL_RANGE, check_images
from restore_r1.judges.features import rows_matmul, upscale_to_min_side

#: The calibration file shipped in the package and read by the ``calibrated`` judge.
CALIBRATION_PATH = Path(__file__).resolve().parent.parent / "data" / "judges" / "calibrated.json"
#: Format version of the calibration file.
CALIBRATION_FORMAT = 1
#: Model input features, in order: the 32 ``stats`` features and PIQE (0..100, lower better).
CALIBRATED_FEATURES: tuple[str, ...] = (*STATS_FEATURES, "piqe")
#: Smallest side PIQE is computed on (smaller images are upscaled first, as the piqe judge does).
PIQE_MIN_SIDE = 192
#: Standardised features are clipped to ±this before the model, so an image unlike any
#: calibration image cannot drive the score by extrapolation (a policy maximising the judge
#: would find such images).
FEATURE_CLIP = 4.0
#: Judge scale.
LEVEL_LOW, LEVEL_HIGH = 1.0, 5.0


class CalibrationError(RestoreR1Error, ValueError):
    """The calibration file is missing, unreadable or inconsistent."""


def calibrated_features(imgs: Sequence[np.ndarray], piqe: Callable[[list[np.ndarray]], list[float]] | None = None) -> np.ndarray:
    """The no-reference feature matrix of :data:`CALIBRATED_FEATURES`, one row per image.

    Args:
        imgs: uint8 RGB H×W×3 images.
        piqe: batch PIQE function (``create_metric("piqe").batch``); built when ``None``.

    Returns:
        float64 array [len(imgs), len(CALIBRATED_FEATURES)].
    """
    if piqe is None:
        from restore_r1.metrics import create_metric

        piqe = create_metric("piqe").batch
    imgs = list(imgs)
    stats = np.stack([degradation_stats(img).astype(np.float64) for img in imgs]) if imgs else np.zeros((0, len(STATS_FEATURES)))
    p = np.asarray(piqe([upscale_to_min_side(img, PIQE_MIN_SIDE) for img in imgs]) if imgs else [], dtype=np.float64)
    return np.concatenate([stats, p.reshape(-1, 1)], axis=1)


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------

#: Feature expansions the model knows: the standardised features, or those and their squares.
EXPANSIONS: tuple[str, ...] = ("linear", "quadratic")


def _expand(z: np.ndarray, expansion: str) -> np.ndarray:
    if expansion == "linear":
        return z
    if expansion == "quadratic":
        return np.concatenate([z, z * z], axis=1)
    raise CalibrationError(f"unknown expansion {expansion!r}; use one of {list(EXPANSIONS)}")


@dataclass
class CalibrationModel:
    """Ridge regression on standardised, clipped (and optionally squared) NR features.

    ``score = clip(intercept + coef · expand(clip((x − mean) / std, ±clip)), 1, 5)``.

    Attributes:
        features: names of the input features, a subset of :data:`CALIBRATED_FEATURES`.
        mean, std: standardisation per feature.
        clip: clip of the standardised features.
        expansion: "linear" or "quadratic" (features and their squares).
        coef: one weight per expanded feature.
        intercept: the constant.
        meta: provenance (command, data description, cross-validation), not used to score.
    """

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    clip: float
    expansion: str
    coef: np.ndarray
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = tuple(self.features)
        unknown = [f for f in self.features if f not in CALIBRATED_FEATURES]
        if unknown:
            raise CalibrationError(f"unknown features {unknown}; known: {list(CALIBRATED_FEATURES)}")
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        self.coef = np.asarray(self.coef, dtype=np.float64).reshape(-1)
        n = len(self.features)
        expected = n * (2 if self.expansion == "quadratic" else 1)
        _expand(np.zeros((1, n)), self.expansion)  # unknown expansion -> CalibrationError
        if self.mean.size != n or self.std.size != n or self.coef.size != expected:
            raise CalibrationError(
                f"calibration sizes disagree: {n} features, {self.mean.size} means, {self.std.size} stds, {self.coef.size} coefficients (expected {expected})"
            )
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.coef)) and np.all(self.std > 0) and math.isfinite(self.intercept) and self.clip > 0):
            raise CalibrationError("calibration has non-finite values, a non-positive std or clip")

    @property
    def uses_piqe(self) -> bool:
        return "piqe" in self.features

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores on 1–5 from a feature matrix whose columns are :data:`CALIBRATED_FEATURES`
        (all of them) or exactly ``self.features``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D feature matrix, got shape {x.shape}")
        if x.shape[1] == len(CALIBRATED_FEATURES) and len(self.features) != len(CALIBRATED_FEATURES):
            x = x[:, [CALIBRATED_FEATURES.index(f) for f in self.features]]
        if x.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} feature columns, got {x.shape[1]}")
        z = np.clip((x - self.mean) / self.std, -self.clip, self.clip)
        return np.clip(self.intercept + rows_matmul(_expand(z, self.expansion), self.coef), LEVEL_LOW, LEVEL_HIGH)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT,
            "model": "ridge",
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip": self.clip,
            "expansion": self.expansion,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "range": [LEVEL_LOW, LEVEL_HIGH],
            "meta": self.meta,
        }


def save_calibration(model: CalibrationModel, path: str | Path) -> Path:
    """Writes the calibration JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(model.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path


def load_calibration(path: str | Path | None = None) -> CalibrationModel:
    """Reads a calibration JSON (default :data:`CALIBRATION_PATH`).

    Raises:
        CalibrationError: the file is missing, not JSON, of another format, or inconsistent.
    """
    path = Path(CALIBRATION_PATH if path is None else path)
    how = "rebuild it with `python bench/calibrate_judge.py --out restore_r1/data/judges/calibrated.json`"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"calibrated judge: calibration file {path} is missing; {how}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"calibrated judge: cannot read calibration file {path}: {exc}; {how}") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CalibrationError(f"calibrated judge: {path} has format {got!r}, expected {CALIBRATION_FORMAT}; {how}")
    try:
        return CalibrationModel(
            features=tuple(data["features"]),
            mean=data["mean"],
            std=data["std"],
            clip=float(data["clip"]),
            expansion=str(data["expansion"]),
            coef=data["coef"],
            intercept=float(data["intercept"]),
            meta=dict(data.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CalibrationError):
            raise CalibrationError(f"calibrated judge: {path}: {exc}; {how}") from None
        raise CalibrationError(f"calibrated judge: {path} is malformed ({type(exc).__name__}: {exc}); {how}") from None


class CalibratedJudge:
    """``calibrated``: a no-reference quality model calibrated offline on synthetic data.

    At use time it is strictly no-reference: :meth:`score` takes only images. Each image gets the
    no-reference features of :func:`restore_r1.judges.calibrated.calibrated_features` (the 32
    ``stats`` features of :func:`restore_r1.encoders.degradation_stats`, plus PIQE only when the
    calibration selected it) and a small ridge model maps them to 1–5. The model's coefficients
    were fitted OFFLINE (``python bench/calibrate_judge.py``) to a full-reference target (SSIM and
    PSNR against the clean crop) on degraded, tool-processed and clean crops of the TRAINING photos
    only (:data:`restore_r1.cleanimages.TRAIN_NAMES`); the held-out photos never entered it. GRPO
    never sees clean images: it only calls this judge, like any trained NR-IQA model.

    Args:
        path: calibration JSON (default: the file shipped in the package,
            :data:`restore_r1.judges.calibrated.CALIBRATION_PATH`).
        device: device of the PIQE metric, when used.

    Raises:
        CalibrationError: the calibration file is missing or corrupt.
    """

    name = "calibrated"
    range = LEVEL_RANGE

    def __init__(self, path: str | None = None, device: str = "cpu") -> None:
        self.path = str(CALIBRATION_PATH if path is None else path)
        self.device = device
        self.model = load_calibration(self.path)
        self._piqe = None
        if self.model.uses_piqe:
            from restore_r1.metrics import create_metric

            self._piqe = create_metric("piqe", device=device).batch

    def features(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """The model's input features [len(imgs), len(model.features)]."""
        imgs = check_images(imgs, self.name)
        if self._piqe is not None:
            return calibrated_features(imgs, self._piqe)
        # Stats-only calibration: skip PIQE (it would double the cost for nothing).
        x = np.stack([degradation_stats(img).astype(np.float64) for img in imgs]) if imgs else np.zeros((0, len(self.model.features)))
        return x

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Calibrated quality in [1, 5] per uint8 RGB H×W×3 image (higher is better)."""
        x = self.features(imgs)
        if len(x) == 0:
            return []
        return [float(v) for v in self.model.predict(x)]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "device": self.device, "features": list(self.model.features)}
