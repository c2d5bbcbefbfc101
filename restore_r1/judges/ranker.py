"""``ranker``: the offline default judge, a learned no-reference ranker (runtime side).

A small MLP over the :mod:`restore_r1.judges.features` of an image predicts the image's PSNR
against its (unknown) clean version, in dB; the judge reports it on the 1–5 scale of the MLLM
judges through :func:`level_from_db`. The MLP was fitted OFFLINE by :mod:`restore_r1.judges.fit`
(``make judge``) on synthetic data of the corpus's TRAINING scenes: pairs of images of the same
crop (clean, partly and fully degraded, tool outputs of the right and of wrong tools, two-step
outputs, over-processed clean crops) ranked by their PSNR (RankNet loss), plus a small
regression term that anchors the scale in dB. At use time it is strictly no-reference.

This module only loads and applies the fitted model (NumPy; no torch, nothing of the fitting
side): weights in safetensors, metadata and the weights' sha256 in a JSON beside them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erf

from restore_r1.errors import ChecksumError, RestoreR1Error, WeightsNotFoundError
from restore_r1.images import sha256_file
from restore_r1.judges.features import JUDGE_FEATURES, judge_features, rows_matmul

#: The shipped model: ``ranker.json`` (metadata) beside ``ranker.safetensors`` (weights).
RANKER_PATH = Path(__file__).resolve().parent.parent / "data" / "judges" / "ranker.json"
RANKER_FORMAT = 1
#: The 1–5 level scale: ``1 + 4·sigmoid((dB − LEVEL_MID_DB) / LEVEL_SCALE_DB)``. Its midpoint is
#: the typical PSNR of a degraded input; it is smooth, so every dB still moves the score.
LEVEL_MID_DB = 22.0
LEVEL_SCALE_DB = 6.0
#: Standardised features are clipped to ±this before the MLP (outliers from odd photos).
FEATURE_CLIP = 6.0


class RankerError(RestoreR1Error, ValueError):
    """A ranker model file that is missing, corrupt or does not match the features."""


def level_from_db(db: np.ndarray | float) -> np.ndarray:
    """Predicted PSNR (dB) -> quality level in (1, 5)."""
    return 1.0 + 4.0 / (1.0 + np.exp(-(np.asarray(db, dtype=np.float64) - LEVEL_MID_DB) / LEVEL_SCALE_DB))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


@dataclass
class RankerModel:
    """The fitted MLP: standardisation, layers ``[(weight [out, in], bias [out]), ...]`` with GELU
    between them, and the affine map of its output to dB.

    Attributes:
        features: feature names, in input order (must equal :data:`JUDGE_FEATURES`).
        mean, std: feature standardisation [dim].
        layers: the linear layers.
        db_offset, db_scale: ``dB = db_offset + db_scale · output``.
        info: what it was fitted on and how it measured (free-form, from the fit).
    """

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    db_offset: float
    db_scale: float
    info: dict[str, Any]

    def predict_db(self, x: np.ndarray) -> np.ndarray:
        """Features ``[N, dim]`` -> predicted PSNR in dB ``[N]``."""
        h = np.clip((np.asarray(x, dtype=np.float64) - self.mean) / self.std, -FEATURE_CLIP, FEATURE_CLIP)
        for i, (w, b) in enumerate(self.layers):
            h = rows_matmul(h, w.T) + b
            if i < len(self.layers) - 1:
                h = _gelu(h)
        return self.db_offset + self.db_scale * h[:, 0]

    def predict_tiled_db(self, feats: Sequence[np.ndarray]) -> list[float]:
        """Per item, the mean prediction over its tiles' feature rows (``[tiles, dim]`` each)."""
        if not len(feats):
            return []
        db = self.predict_db(np.concatenate(feats))
        bounds = np.cumsum([0, *(len(f) for f in feats)])
        return [float(db[a:b].mean()) for a, b in zip(bounds[:-1], bounds[1:])]

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean.astype(np.float32), "std": self.std.astype(np.float32)}
        for i, (w, b) in enumerate(self.layers):
            out[f"layer{i}.weight"] = w.astype(np.float32)
            out[f"layer{i}.bias"] = b.astype(np.float32)
        return out


def save_ranker(model: RankerModel, path: str | os.PathLike, kind: str = "ranker") -> Path:
    """Writes ``<path>`` (JSON) and the safetensors beside it, atomically; returns the JSON path.
    ``kind`` names the judge the model is for (``ranker`` or ``relative``)."""
    from safetensors.numpy import save

    from restore_r1.images import atomic_write_bytes

    path = Path(path)
    weights = path.with_suffix(".safetensors")
    atomic_write_bytes(weights, save(model.tensors()))
    meta = {
        "format": RANKER_FORMAT,
        "kind": kind,
        "weights": weights.name,
        "sha256": sha256_file(weights),
        "features": list(model.features),
        "layers": len(model.layers),
        "db_offset": model.db_offset,
        "db_scale": model.db_scale,
        "level": {"mid_db": LEVEL_MID_DB, "scale_db": LEVEL_SCALE_DB},
        "info": model.info,
    }
    return atomic_write_bytes(path, (json.dumps(meta, indent=1) + "\n").encode())


def load_ranker(path: str | os.PathLike | None = None, kind: str = "ranker", features: Sequence[str] = JUDGE_FEATURES) -> RankerModel:
    """Loads a ranker model (default: the shipped :data:`RANKER_PATH`), checking its sha256.
    ``kind`` and ``features`` are what the file must hold (the ``relative`` judge passes its own).

    Raises:
        WeightsNotFoundError: the JSON or its weights file is absent (named).
        ChecksumError: the weights differ from the recorded sha256.
        RankerError: wrong format or features.
    """
    from safetensors.numpy import load_file

    path = Path(RANKER_PATH if path is None else path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{kind} judge model {path} not found; `make judge` fits it (or pass path=)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RankerError(f"ranker judge model {path} is not JSON: {exc}") from None
    if meta.get("format") != RANKER_FORMAT or meta.get("kind") != kind:
        raise RankerError(f"{path}: format {meta.get('format')!r} kind {meta.get('kind')!r}, expected {RANKER_FORMAT} {kind!r}")
    if tuple(meta.get("features", ())) != tuple(features):
        raise RankerError(f"{path}: fitted on other features than this version computes; refit with `make judge`")
    weights = path.parent / meta["weights"]
    if not weights.is_file():
        raise WeightsNotFoundError(f"{kind} judge weights {weights} not found (named in {path})")
    digest = sha256_file(weights)
    if digest != meta["sha256"]:
        raise ChecksumError(f"{weights}: sha256 {digest} differs from {meta['sha256']} recorded in {path}")
    t = load_file(str(weights))
    layers = [(t[f"layer{i}.weight"].astype(np.float64), t[f"layer{i}.bias"].astype(np.float64)) for i in range(int(meta["layers"]))]
    return RankerModel(
        tuple(features),
        t["mean"].astype(np.float64),
        t["std"].astype(np.float64),
        layers,
        float(meta["db_offset"]),
        float(meta["db_scale"]),
        meta.get("info", {}),
    )


class RankerJudge:
    """``ranker``: learned no-reference judge (see the module docstring).

    Args:
        path: model JSON (default: the shipped :data:`RANKER_PATH`).
        device: accepted for a uniform judge signature; it runs on the CPU.
    """

    name = "ranker"
    range = (1.0, 5.0)

    def __init__(self, path: str | None = None, device: str = "cpu") -> None:
        self.path = None if path is None else str(path)
        self.device = device
        self.model = load_ranker(path)

    def predict_db(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Predicted PSNR (dB) of each uint8 RGB H×W×3 image: the mean over its tiles."""
        return self.model.predict_tiled_db(judge_features(imgs))

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Quality level in (1, 5) per image (higher is better)."""
        return [float(v) for v in level_from_db(np.asarray(self.predict_db(imgs)))] if len(imgs) else []

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "device": self.device}
