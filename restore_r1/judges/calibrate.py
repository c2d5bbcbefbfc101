"""Offline calibration of the ``calibrated`` judge: a no-reference quality model fitted to a
full-reference target on synthetic data from the TRAINING photos only.

The ``calibrated`` judge (:class:`restore_r1.judges.calibrated.CalibratedJudge`, its runtime model in
:mod:`restore_r1.judges.calibrated`) is strictly no-reference at
use time: it sees one image and computes :data:`CALIBRATED_FEATURES` — the 32 ``stats`` features
of :func:`restore_r1.encoders.degradation_stats` plus PIQE — and maps them to 1–5 with a small
model (ridge regression or a one-hidden-layer MLP, chosen by grouped cross-validation). Only the
model's coefficients were fitted here, offline, like any NR-IQA model is trained: on images whose
clean original is known, with the target :func:`quality_target` (SSIM and PSNR of the image
against its clean crop, mapped to 1–5). GRPO never sees a clean image; it only calls the judge.

The calibration data never includes the held-out photos (:data:`restore_r1.cleanimages.HELDOUT_NAMES`):
:func:`build_calibration_set` refuses any name outside :data:`restore_r1.cleanimages.TRAIN_NAMES`,
so the held-out rows of ``bench/judges_bench.py --split heldout`` measure the judge on unseen scenes.

Samples per clean crop (256 px, the training crop size, and 512 px where the photo allows):
the clean crop itself, degraded versions from :func:`restore_r1.degradations.apply_case` over all
15 cases, each degraded image after a few single tools (those matching the case's degradations and
random others, so harmful steps are in the data too) and after a few 2-tool sequences.

Public API: :func:`quality_target`, :func:`fast_ssim`, :func:`build_calibration_set`,
:func:`fit_calibration` (the model, its features and file are in :mod:`restore_r1.judges.calibrated`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from restore_r1.judges.calibrated import (
    CALIBRATED_FEATURES,
    FEATURE_CLIP,
    LEVEL_HIGH,
    LEVEL_LOW,
    CalibrationModel,
    _expand,
    calibrated_features,
)
from restore_r1.metrics import psnr as psnr_db

#: PSNR (dB) that maps to the top of the PSNR half of the target; higher is clipped.
TARGET_PSNR_CAP = 40.0
#: Share of SSIM in the target (the rest is PSNR / TARGET_PSNR_CAP).
TARGET_SSIM_WEIGHT = 0.5
#: SSIM constants (Wang et al. 2004) for 8-bit images, Gaussian window σ = 1.5.
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SSIM_SIGMA = 1.5


def fast_ssim(img: np.ndarray, ref: np.ndarray) -> float:
    """SSIM (Wang et al., Gaussian window σ 1.5) of the luma of two uint8 RGB images of one size."""
    if img.shape != ref.shape:
        raise ValueError(f"fast_ssim: shapes differ, {img.shape} vs {ref.shape}")
    x = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(np.float64)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mx * mx + my * my + SSIM_C1) * (sxx + syy + SSIM_C2)
    return float(np.mean(num / den))


def quality_target(img: np.ndarray, clean: np.ndarray) -> float:
    """The full-reference calibration target on the judge's 1–5 scale.

    ``1 + 4 · (w · SSIM⁺ + (1 − w) · min(PSNR, 40) / 40)`` with w = :data:`TARGET_SSIM_WEIGHT`
    and SSIM⁺ = max(SSIM, 0); the clean crop itself scores 5. Used offline only.
    """
    s = max(fast_ssim(img, clean), 0.0)
    p = min(psnr_db(img, clean), TARGET_PSNR_CAP) / TARGET_PSNR_CAP
    return LEVEL_LOW + (LEVEL_HIGH - LEVEL_LOW) * (TARGET_SSIM_WEIGHT * s + (1 - TARGET_SSIM_WEIGHT) * p)


# --------------------------------------------------------------------------------------------
# the calibration set
# --------------------------------------------------------------------------------------------


@dataclass
class CalibrationSet:
    """Rows of the calibration data.

    Attributes:
        x: features [n, len(CALIBRATED_FEATURES)].
        y: targets [n] on 1–5.
        photo: the training photo each row comes from (for grouped cross-validation).
        group: id of the degraded image a row belongs to (its tool outputs share it); -1 for clean crops.
        kind: "clean", "clean_tool", "degraded", "tool" or "tool2".
        size: crop side.
        description: what was generated.
    """

    x: np.ndarray
    y: np.ndarray
    photo: list[str]
    group: np.ndarray
    kind: list[str]
    size: np.ndarray
    description: dict[str, Any] = field(default_factory=dict)


def _random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    size = min(size, h, w)
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def build_calibration_set(
    photos: Sequence[str] | None = None,
    crops_256: int = 2,
    crops_512: int = 1,
    cases_512: int = 5,
    tools_per_image: int = 3,
    sequences_per_image: int = 2,
    tools_on_clean: int = 3,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CalibrationSet:
    """Degraded, tool-processed and clean crops of TRAINING photos with their features and targets.

    Args:
        photos: training photo names (default :data:`restore_r1.cleanimages.TRAIN_NAMES`); a
            held-out name is refused.
        crops_256: random 256-px crops per photo; each gets all 15 cases.
        crops_512: random 512-px crops per photo (smaller photos give their largest square);
            each gets ``cases_512`` random cases.
        cases_512: cases per 512-px crop.
        tools_per_image: single tools applied to each degraded image: one tool matching each of
            the case's degradations (up to this many, in random order), filled up with random others.
        sequences_per_image: 2-tool sequences per degraded image (a single-tool output followed
            by another random tool).
        tools_on_clean: random single tools applied to each clean crop (over-processing).
        seed: seeds every random choice.
        progress: optional callback for one-line progress messages.

    Returns:
        The :class:`CalibrationSet`.

    Raises:
        ValueError: a held-out or unknown photo name.
    """
    from restore_r1.cleanimages import HELDOUT_NAMES, TRAIN_NAMES, load_clean
    from restore_r1.degradations import CASES, apply_case
    from restore_r1.metrics import create_metric
    from restore_r1.tools import list_tools

    photos = tuple(TRAIN_NAMES if photos is None else photos)
    for name in photos:
        if name in HELDOUT_NAMES or name not in TRAIN_NAMES:
            raise ValueError(f"calibration photo {name!r} is not a training photo; use some of {list(TRAIN_NAMES)} (held-out photos never enter calibration)")
    rng = np.random.default_rng(seed)
    piqe = create_metric("piqe").batch
    tools = list_tools(available_only=True)
    start = time.time()
    imgs: list[np.ndarray] = []
    ys: list[float] = []
    meta: list[tuple[str, int, str, int]] = []
    group_id = 0
    for photo in photos:
        full = load_clean(photo)
        jobs: list[tuple[np.ndarray, list[int]]] = []
        for _ in range(crops_256):
            jobs.append((_random_crop(full, 256, rng), sorted(CASES)))
        for _ in range(crops_512):
            jobs.append((_random_crop(full, 512, rng), sorted(int(c) for c in rng.choice(sorted(CASES), size=cases_512, replace=False))))
        for clean, cases in jobs:
            side = clean.shape[0]
            imgs.append(clean)
            ys.append(LEVEL_HIGH)
            meta.append((photo, -1, "clean", side))
            # Tools on the clean crop: over-processing must score below the clean image, or a
            # judge-maximising search never stops.
            for t in rng.choice(len(tools), size=min(tools_on_clean, len(tools)), replace=False):
                out = tools[int(t)](clean)
                imgs.append(out)
                ys.append(quality_target(out, clean))
                meta.append((photo, -1, "clean_tool", side))
            for case in cases:
                degraded, _ = apply_case(case, clean, rng)
                batch = [(degraded, "degraded")]
                degs = list(CASES[case].degradations)
                matching = [t for t in tools if t.degradation in degs]
                others = [t for t in tools if t.degradation not in degs]
                rng.shuffle(matching)
                rng.shuffle(others)
                n_match = min(len(matching), max(1, tools_per_image - 1))
                picked = matching[:n_match] + others[: max(0, tools_per_image - n_match)]
                singles = []
                for tool in picked:
                    out = tool(degraded)
                    singles.append(out)
                    batch.append((out, "tool"))
                for _ in range(sequences_per_image):
                    first = singles[int(rng.integers(0, len(singles)))]
                    second = tools[int(rng.integers(0, len(tools)))]
                    batch.append((second(first), "tool2"))
                for img, kind in batch:
                    imgs.append(img)
                    ys.append(quality_target(img, clean))
                    meta.append((photo, group_id, kind, side))
                group_id += 1
            if progress:
                progress(f"{photo} {side}px: {len(imgs)} images, {time.time() - start:.0f} s")
    # Features in batches of one size (PIQE batches same-shape images).
    x = np.zeros((len(imgs), len(CALIBRATED_FEATURES)))
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(imgs):
        by_shape.setdefault(img.shape, []).append(i)
    for idx in by_shape.values():
        for k in range(0, len(idx), 32):
            chunk = idx[k : k + 32]
            x[chunk] = calibrated_features([imgs[i] for i in chunk], piqe)
    if progress:
        progress(f"features of {len(imgs)} images, {time.time() - start:.0f} s")
    description = {
        "photos": list(photos),
        "heldout_photos_excluded": list(HELDOUT_NAMES),
        "crops_256": crops_256,
        "crops_512": crops_512,
        "cases_512": cases_512,
        "tools_per_image": tools_per_image,
        "sequences_per_image": sequences_per_image,
        "tools_on_clean": tools_on_clean,
        "seed": seed,
        "tools": [t.name for t in tools],
        "rows": len(imgs),
        "rows_by_kind": {k: sum(m[2] == k for m in meta) for k in ("clean", "clean_tool", "degraded", "tool", "tool2")},
        "target": f"1 + 4*({TARGET_SSIM_WEIGHT}*max(SSIM,0) + {1 - TARGET_SSIM_WEIGHT}*min(PSNR,{TARGET_PSNR_CAP:g})/{TARGET_PSNR_CAP:g}) vs the clean crop (luma SSIM, Gaussian σ {SSIM_SIGMA})",
    }
    return CalibrationSet(
        x=x,
        y=np.asarray(ys),
        photo=[m[0] for m in meta],
        group=np.asarray([m[1] for m in meta]),
        kind=[m[2] for m in meta],
        size=np.asarray([m[3] for m in meta]),
        description=description,
    )


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------


def _scene(photo: str) -> str:
    # The stereo pair shows one scene: keep both halves in one cross-validation fold.
    return photo.replace("_right", "_left")


def _fit_ridge(cset: CalibrationSet, rows: np.ndarray, cols: list[int], alpha: float, delta_weight: float, expansion: str, clip: float) -> CalibrationModel:
    """Ridge on absolute rows plus within-group step rows (tool output − its degraded input),
    the latter weighted by ``delta_weight``: the reward is a step increment, so steps are fitted too."""
    x = cset.x[np.ix_(rows, cols)]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    f = _expand(np.clip((x - mean) / std, -clip, clip), expansion)
    y = cset.y[rows]
    groups = cset.group[rows]
    kinds = np.asarray(cset.kind)[rows]
    d_rows, d_y = [], []
    for g in np.unique(groups[groups >= 0]):
        members = np.flatnonzero(groups == g)
        base = members[kinds[members] == "degraded"]
        if base.size == 0:
            continue
        for i in members:
            if i != base[0]:
                d_rows.append(f[i] - f[base[0]])
                d_y.append(y[i] - y[base[0]])
    a = np.concatenate([np.c_[f, np.ones(len(f))], delta_weight * np.c_[np.asarray(d_rows).reshape(-1, f.shape[1]), np.zeros(len(d_rows))]])
    b = np.concatenate([y, delta_weight * np.asarray(d_y)])
    reg = alpha * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + reg, a.T @ b)
    return CalibrationModel(
        features=tuple(CALIBRATED_FEATURES[c] for c in cols), mean=mean, std=std, clip=clip, expansion=expansion, coef=w[:-1], intercept=float(w[-1])
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _evaluate(model: CalibrationModel, cset: CalibrationSet, rows: np.ndarray) -> dict[str, float]:
    pred = model.predict(cset.x[rows])
    y, groups, kinds = cset.y[rows], cset.group[rows], np.asarray(cset.kind)[rows]
    dq, dt, regret = [], [], []
    for g in np.unique(groups[groups >= 0]):
        members = np.flatnonzero(groups == g)
        bases = members[kinds[members] == "degraded"]
        if bases.size == 0:
            continue
        base = bases[0]
        for i in members:
            if i != base:
                dq.append(pred[i] - pred[base])
                dt.append(y[i] - y[base])
        regret.append(float(y[members].max() - y[members[np.argmax(pred[members])]]))
    return {"rho": _spearman(pred, y), "step_rho": _spearman(np.asarray(dq), np.asarray(dt)), "regret": float(np.mean(regret))}


#: The grid searched by :func:`fit_calibration` (measured on the training photos only).
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "alpha": (30.0, 100.0, 300.0, 1000.0),
    "delta_weight": (0.0, 2.0, 3.0),
    "expansion": ("linear", "quadratic"),
    "piqe": (False, True),
}
#: A candidate with PIQE must beat the best one without it by this much in the selection score
#: to be chosen (PIQE doubles the judge's cost).
PIQE_MARGIN = 0.01


def fit_calibration(
    cset: CalibrationSet, grid: dict[str, tuple[Any, ...]] | None = None, clip: float = FEATURE_CLIP
) -> tuple[CalibrationModel, list[dict[str, Any]]]:
    """Chooses the model by leave-one-scene-out cross-validation on the calibration set (training
    photos only), then refits it on all rows.

    Selection score: mean over folds of (Spearman of scores with the target + Spearman of step
    increments with the target's increments) / 2.

    Returns:
        (the refitted model, one dict per grid point with its cross-validation numbers).
    """
    grid = DEFAULT_GRID if grid is None else grid
    scenes = np.asarray([_scene(p) for p in cset.photo])
    folds = sorted(set(scenes.tolist()))
    if len(folds) < 2:
        raise ValueError(f"cross-validation needs photos of at least two scenes, got {folds}")
    results: list[dict[str, Any]] = []
    for use_piqe in grid["piqe"]:
        cols = list(range(len(CALIBRATED_FEATURES) - (0 if use_piqe else 1)))
        for expansion in grid["expansion"]:
            for alpha in grid["alpha"]:
                for dw in grid["delta_weight"]:
                    per_fold = []
                    for scene in folds:
                        train, test = np.flatnonzero(scenes != scene), np.flatnonzero(scenes == scene)
                        per_fold.append(_evaluate(_fit_ridge(cset, train, cols, alpha, dw, expansion, clip), cset, test))
                    cv = {k: float(np.nanmean([f[k] for f in per_fold])) for k in per_fold[0]}
                    results.append(
                        {"piqe": use_piqe, "expansion": expansion, "alpha": alpha, "delta_weight": dw, **cv, "selection": 0.5 * (cv["rho"] + cv["step_rho"])}
                    )
    best_plain = max((r for r in results if not r["piqe"]), key=lambda r: r["selection"], default=None)
    best_piqe = max((r for r in results if r["piqe"]), key=lambda r: r["selection"], default=None)
    best = best_plain if best_piqe is None or (best_plain is not None and best_piqe["selection"] < best_plain["selection"] + PIQE_MARGIN) else best_piqe
    cols = list(range(len(CALIBRATED_FEATURES) - (0 if best["piqe"] else 1)))
    model = _fit_ridge(cset, np.arange(len(cset.y)), cols, best["alpha"], best["delta_weight"], best["expansion"], clip)
    model.meta = {"selected": best, "cv_folds": folds}
    return model, results
