"""``relative``: a learned judge of what a restoration did to its input (runtime side).

The no-reference judges score each image on its own, and on scenes they were not fitted on they
mistake content for quality: a smooth sky reads as blur, an evening scene as under-exposure, so
every brightening or sharpening tool looks like a gain (bench/results/judges.md). This judge
scores an image **against the image the episode started from** — the user's degraded input, never
a clean reference — and predicts the PSNR gain of the change in dB: ``Q(I | I₀)``, with
``Q(I₀ | I₀) = 0``. Its features (:data:`RELATIVE_FEATURES`) describe the change only
(:data:`CHANGE_FEATURES`): how the brightness and colour moved, which frequency bands gained or
lost energy, whether the removed residual follows the input's edges (texture lost) or is white and
uniform (noise removed), sits on the 8-px grid (blocks removed) or runs vertically (streaks
removed), what clipped, and how similar the two images are (SSIM, gradient similarity). No
absolute property of either image is used, so the scene's own content cancels out: adding the
output's absolute features, or the input's as context (:data:`CONTEXT_SOURCE`), measured worse on
the validation scenes.

Like ``ranker``, it needs no label at agent-training time (it sees the input and the current
image, nothing else) and was fitted OFFLINE by :mod:`restore_r1.judges.fit` (``make judge``) on
synthetic data of the corpus's TRAINING scenes: pairs (input, output) where the output is a tool
result (right and wrong tools, one and two steps), a further degradation, or an over-processed
clean crop, targets their PSNR difference against the clean crop, ranked among the outputs of the
same input (RankNet) plus a regression in dB.

In an episode the reward is ``r_t = Q(I_{t+1} | I₀) − Q(I_t | I₀) − c``, so the return is the
predicted gain of the final image over the input. The MLP is :class:`RankerModel` (NumPy), stored
in safetensors with its sha256 in a JSON beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from restore_r1.encoders import STATS_FEATURES, degradation_stats
from restore_r1.images import check_rgb
from restore_r1.judges.deep import DeepMaps, deep_features_one, deep_maps
from restore_r1.judges.features import EXPOSURE_FEATURES, JUDGE_FEATURES, exposure_features, tiles

#: The shipped model: ``relative.json`` (metadata) beside ``relative.safetensors`` (weights).
RELATIVE_PATH = Path(__file__).resolve().parent.parent / "data" / "judges" / "relative.json"
RELATIVE_KIND = "relative"
#: Laplacian-pyramid levels whose energy change and residual correlation are features.
PYRAMID_LEVELS = 4
#: JPEG block size whose grid the block-residual feature looks at.
BLOCK = 8
#: Luma levels (0–1) counted as clipped high / low.
CLIP_HIGH, CLIP_LOW = 0.98, 0.02
#: SSIM window (Gaussian 7×7, σ 1.5) and constants (for images in [0, 1]).
SSIM_WINDOW, SSIM_SIGMA = (7, 7), 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
#: Gradient-magnitude similarity constant (GMSD, Xue et al. 2014, for images in [0, 1]).
GMS_C = 0.0026

#: Features of the change from the reference to the image.
CHANGE_FEATURES: tuple[str, ...] = (
    "d_luma_mean",
    "d_r_mean",
    "d_g_mean",
    "d_b_mean",
    "log_std_ratio",
    "residual_mad",
    "residual_rms",
    "residual_p99",
    *(f"band{k}_{what}" for k in range(PYRAMID_LEVELS) for what in ("log_energy_ratio", "residual_corr", "log_residual_share")),
    "residual_edge_corr",
    "residual_spread_cv",
    "residual_autocorr_h",
    "residual_autocorr_v",
    "residual_block_ratio",
    "residual_streak_ratio",
    "d_clip_high",
    "d_clip_low",
    "d_saturation",
    "ssim",
    "gms_std",
    "gms_mean",
)
#: The reference's own judge features (names in :data:`restore_r1.judges.features.JUDGE_FEATURES`)
#: that the judge reads the change against: none. Its context would let the same brightening
#: count as a gain on a dark input and a loss on a well-exposed one, but every set tried
#: (exposure, haze and colour statistics, all 32 degradation statistics, plus the luma histogram)
#: measured worse on the validation scenes than the change alone: the MLP learns the 20
#: training scenes' own brightness instead (bench/results/judge_context.md, docs/method.md §1.4).
#: ``FitConfig.context`` fits other sets; shipping one means setting it here and ``make judge``.
CONTEXT_SOURCE: tuple[str, ...] = ()
#: Their names as features of the relative judge.
CONTEXT_FEATURES: tuple[str, ...] = tuple(f"ref_{name}" for name in CONTEXT_SOURCE)
#: Frozen EfficientNet-Lite0 features of the change (names in
#: :data:`restore_r1.judges.deep.DEEP_BANK`) the judge also reads: none. ``FitConfig.deep`` fits
#: other sets (bench/judge_deep.py, bench/results/judge_deep.md).
DEEP_SOURCE: tuple[str, ...] = ()
RELATIVE_FEATURES: tuple[str, ...] = (*CHANGE_FEATURES, *DEEP_SOURCE, *CONTEXT_FEATURES)
RELATIVE_FEATURE_DIM = len(RELATIVE_FEATURES)


def _luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _pyramid(y: np.ndarray) -> list[np.ndarray]:
    """Laplacian pyramid bands (finest first) of a float image, :data:`PYRAMID_LEVELS` of them."""
    bands, cur = [], y
    for _ in range(PYRAMID_LEVELS):
        down = cv2.pyrDown(cur)
        bands.append(cur - cv2.pyrUp(down, dstsize=(cur.shape[1], cur.shape[0])))
        cur = down
    return bands


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / d if d > 1e-12 else 0.0


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    blur = lambda z: cv2.GaussianBlur(z, SSIM_WINDOW, SSIM_SIGMA)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    m = ((2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (sxx + syy + SSIM_C2))
    return float(m.mean())


def _gradient(y: np.ndarray) -> np.ndarray:
    # Not cv2.magnitude: its SIMD path rounds a few elements differently depending on the buffers'
    # 8-byte alignment, so the same image scored twice could differ in the last bit and a GRPO run
    # could not reproduce itself (docs/method.md §8). NumPy's elementwise ops are correctly rounded.
    gx, gy = cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)
    return np.sqrt(gx * gx + gy * gy)


def context_of(judge_features: np.ndarray, source: Sequence[str] = CONTEXT_SOURCE) -> np.ndarray:
    """The context features ``source`` (default :data:`CONTEXT_SOURCE`) picked out of judge
    feature vectors ``[..., JUDGE_FEATURE_DIM]``, as float64."""
    index = np.asarray([JUDGE_FEATURES.index(n) for n in source], dtype=np.int64)
    return np.asarray(judge_features)[..., index].astype(np.float64)


def context_features_one(reference: np.ndarray, source: Sequence[str] = CONTEXT_SOURCE) -> np.ndarray:
    """The context features ``source`` of one reference tile: float64 ``[len(source)]``, equal to
    ``context_of(judge_features_one(reference), source)`` but computing only the groups it needs
    (the degradation statistics and the exposure features; the NSS features are not offered)."""
    values: dict[str, float] = {}
    if any(n in STATS_FEATURES for n in source):
        values.update(zip(STATS_FEATURES, degradation_stats(reference).astype(np.float32)))
    if any(n in EXPOSURE_FEATURES for n in source):
        values.update(zip(EXPOSURE_FEATURES, exposure_features(reference)))
    unknown = [n for n in source if n not in values]
    if unknown:
        raise ValueError(f"relative judge: no context feature {unknown[0]!r} (use degradation statistics or exposure features)")
    return np.asarray([values[n] for n in source], dtype=np.float64)


def relative_features_one(
    reference: np.ndarray,
    image: np.ndarray,
    context: np.ndarray | None = None,
    deep: Sequence[str] = DEEP_SOURCE,
    ref_maps: DeepMaps | None = None,
    context_source: Sequence[str] = CONTEXT_SOURCE,
) -> np.ndarray:
    """Features of ``image`` against ``reference`` (same-shape uint8 RGB tiles): float64
    ``[RELATIVE_FEATURE_DIM]`` in :data:`RELATIVE_FEATURES` order, the change, its ``deep``
    features (:mod:`restore_r1.judges.deep`; ``ref_maps``: the reference's maps, when known), then
    the reference's context (``context``: :func:`context_features_one` of ``reference``, when known)."""
    ctx = context_features_one(reference, context_source) if context is None else context
    parts = [change_features_one(reference, image)]
    if deep:
        parts.append(deep_features_one(reference, image, deep, ref_maps))
    return np.concatenate([*parts, ctx])


def change_features_one(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Features of the change from ``reference`` to ``image`` (same-shape uint8 RGB tiles):
    float64 ``[len(CHANGE_FEATURES)]`` in :data:`CHANGE_FEATURES` order."""
    yi, yo = _luma(reference), _luma(image)
    r = yo - yi
    fi, fo = reference.astype(np.float32) / 255.0, image.astype(np.float32) / 255.0
    f: list[float] = [float(yo.mean() - yi.mean()), *(float((fo[..., c] - fi[..., c]).mean()) for c in range(3))]
    f.append(float(np.log((yo.std() + 1e-4) / (yi.std() + 1e-4))))
    ar = np.abs(r)
    f += [float(ar.mean()), float(np.sqrt((r * r).mean())), float(np.percentile(ar, 99))]
    bi, bo, br = _pyramid(yi), _pyramid(yo), _pyramid(r)
    for k in range(PYRAMID_LEVELS):
        ei, eo, er = float((bi[k] ** 2).mean()), float((bo[k] ** 2).mean()), float((br[k] ** 2).mean())
        f += [float(np.log((eo + 1e-8) / (ei + 1e-8))), _corr(br[k], bi[k]), float(np.log((er + 1e-8) / (ei + 1e-8)))]
    hp = br[0]
    gi = _gradient(yi)
    f.append(_corr(cv2.GaussianBlur(np.abs(hp), (5, 5), 1.0), cv2.GaussianBlur(gi, (5, 5), 1.0)))
    spread = np.sqrt(np.maximum(cv2.blur(hp * hp, (BLOCK, BLOCK)), 0.0))
    f.append(float(spread.std() / (spread.mean() + 1e-6)))
    f += [_corr(hp[:, 1:], hp[:, :-1]), _corr(hp[1:], hp[:-1])]
    dh, dv = np.abs(np.diff(r, axis=1)), np.abs(np.diff(r, axis=0))
    on_h = np.arange(dh.shape[1]) % BLOCK == BLOCK - 1
    on_v = np.arange(dv.shape[0]) % BLOCK == BLOCK - 1
    ratio_h = dh[:, on_h].mean() / (dh[:, ~on_h].mean() + 1e-6) if on_h.any() else 1.0
    ratio_v = dv[on_v].mean() / (dv[~on_v].mean() + 1e-6) if on_v.any() else 1.0
    f.append(float(np.log(0.5 * (ratio_h + ratio_v) + 1e-6)))
    f.append(float(np.log((dh.mean() + 1e-6) / (dv.mean() + 1e-6))))
    f += [float((yo >= CLIP_HIGH).mean() - (yi >= CLIP_HIGH).mean()), float((yo <= CLIP_LOW).mean() - (yi <= CLIP_LOW).mean())]
    sat_i = cv2.cvtColor(reference, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0
    sat_o = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0
    f.append(float(sat_o.mean() - sat_i.mean()))
    f.append(_ssim(yi, yo))
    go = _gradient(yo)
    gms = (2 * gi * go + GMS_C) / (gi * gi + go * go + GMS_C)
    f += [float(gms.std()), float(gms.mean())]
    return np.asarray(f, dtype=np.float64)


def relative_features(
    references: Sequence[np.ndarray],
    images: Sequence[np.ndarray],
    deep: Sequence[str] = DEEP_SOURCE,
    context_source: Sequence[str] = CONTEXT_SOURCE,
) -> list[np.ndarray]:
    """Per pair, the features of each of the :func:`tiles` both images share: ``[tiles, RELATIVE_FEATURE_DIM]``
    (another model's ``deep`` and ``context_source`` features when given).

    Raises:
        ValueError: the counts differ, an image is not uint8 RGB, or a pair differs in shape.
    """
    if len(references) != len(images):
        raise ValueError(f"relative judge: {len(references)} references for {len(images)} images")
    out = []
    contexts: dict[int, list[np.ndarray]] = {}
    maps: dict[int, list[DeepMaps | None]] = {}
    for i, (ref, img) in enumerate(zip(references, images)):
        check_rgb(ref, name=f"relative judge reference {i}")
        check_rgb(img, name=f"relative judge image {i}")
        if ref.shape != img.shape:
            raise ValueError(f"relative judge: image {i} is {img.shape[1]}×{img.shape[0]} but its reference is {ref.shape[1]}×{ref.shape[0]}")
        ref_tiles = tiles(ref)
        key = id(ref)
        if key not in contexts:  # one reference is usually scored against many images
            contexts[key] = [context_features_one(t, context_source) for t in ref_tiles]
            maps[key] = [deep_maps(t) if deep else None for t in ref_tiles]
        out.append(np.stack([relative_features_one(a, b, c, deep, m, context_source) for a, b, c, m in zip(ref_tiles, tiles(img), contexts[key], maps[key])]))
    return out


class RelativeJudge:
    """``relative``: predicted PSNR gain (dB) of an image over the episode's input (module docstring).

    ``score_relative(references, images)`` is the judge's call; ``score(images)`` has no
    reference and raises :class:`restore_r1.judges.JudgeError`.

    Args:
        path: model JSON (default: the shipped :data:`RELATIVE_PATH`).
        device: accepted for a uniform judge signature; it runs on the CPU.
        model: a fitted :class:`~restore_r1.judges.ranker.RankerModel` to use instead of a file
            (benches of fit variants: its deep and context features are computed).
    """

    name = "relative"
    relative = True
    range = (-float("inf"), float("inf"))

    def __init__(self, path: str | None = None, device: str = "cpu", model: Any = None) -> None:
        from restore_r1.judges.deep import DEEP_BANK
        from restore_r1.judges.ranker import load_ranker

        self.path = None if path is None else str(path)
        self.device = device
        if model is None:
            model = load_ranker(RELATIVE_PATH if path is None else path, kind=RELATIVE_KIND, features=RELATIVE_FEATURES)
        self.model = model
        self._deep = tuple(n for n in model.features if n in DEEP_BANK)
        self._context = tuple(n[len("ref_") :] for n in model.features if n.startswith("ref_"))

    def score_relative(self, references: Sequence[np.ndarray], images: Sequence[np.ndarray]) -> list[float]:
        """Predicted PSNR gain in dB of each image over its reference (0 for the reference itself)."""
        if len(references) != len(images):
            raise ValueError(f"relative judge: {len(references)} references for {len(images)} images")
        # The model's output for (reference, reference) is subtracted, so that Q(I₀ | I₀) = 0
        # exactly; it depends on the reference's texture, and is computed once per reference.
        distinct: dict[int, np.ndarray] = {}
        for ref in references:
            distinct.setdefault(id(ref), ref)
        order = list(distinct)
        if not references:
            return []
        feats = relative_features([*distinct.values(), *references], [*distinct.values(), *images], self._deep, self._context)
        means = self.model.predict_tiled_db(feats)
        identity = dict(zip(order, means[: len(order)]))
        out = []
        for ref, img, m in zip(references, images, means[len(order) :]):
            out.append(0.0 if ref is img or np.array_equal(ref, img) else m - identity[id(ref)])
        return out

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        from restore_r1.judges.base import JudgeError

        raise JudgeError(
            "the relative judge scores an image against the input it was restored from: call score_relative(references, images) (CLI: restore-r1 score OUT --ref INPUT --metrics judge:relative)"
        )

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "device": self.device}


def is_relative(judge: Any) -> bool:
    """True for judges that score an image against the episode's input (``score_relative``)."""
    return bool(getattr(judge, "relative", False))


def score_images(judge: Any, images: Sequence[np.ndarray], starts: Sequence[np.ndarray]) -> list[float]:
    """``judge``'s score of each image: ``score(images)``, or for a relative judge
    ``score_relative(starts, images)`` (each image against the input it was restored from)."""
    scores = judge.score_relative(starts, images) if is_relative(judge) else judge.score(images)
    return [float(s) for s in scores]
