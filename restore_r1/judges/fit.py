"""Offline fitting of the ``ranker`` judge (``make judge``); the runtime never imports this module.

Data (synthetic, from a folder of clean photos — the corpus's TRAINING scenes by default): each
*group* is one random crop of one photo, taken at a random scale (multi-scale crops of large
photos), and the images derived from it:

* the clean crop, each prefix of its degradation chain (one more degradation ranks lower), and
  the fully degraded image — the chain is one of the 15 cases, or one or two random types;
* every available tool applied to the degraded image (right and wrong tools alike);
* second steps on two of those outputs (the best and a random one): the tools for the chain's
  degradations plus :attr:`FitConfig.second_random_tools` random others;
* :attr:`FitConfig.clean_tools` random tools on the clean crop (over-processing must lose).

Each image's target is its PSNR against the clean crop (capped at :data:`PSNR_CAP`). The MLP of
:class:`restore_r1.judges.ranker.RankerModel` is fitted with a RankNet loss on every pair of
images of the same group whose PSNR differs by at least :attr:`FitConfig.min_gap_db`, weighted by
the difference, plus ``reg_weight`` × the squared error in dB (units only: GRPO compares images of
one group, so the ranking is what matters).

Evaluation (:func:`evaluate_ranker`) on the validation scenes: the pairwise accuracy over tool
outputs of the same input that differ by ≥ 0.5 dB, the Spearman ρ of ΔQ with ΔPSNR over tool
steps per degradation type (single-degradation groups), and the share of the best single tool's
PSNR gain that the judge's choice recovers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.judges.deep import DEEP_BANK, deep_bank, deep_index, deep_maps
from restore_r1.judges.features import JUDGE_FEATURE_DIM, JUDGE_FEATURES, judge_features_one
from restore_r1.judges.ranker import RankerModel
from restore_r1.judges.relative import CHANGE_FEATURES, CONTEXT_SOURCE, DEEP_SOURCE, change_features_one, context_features_one, context_of
from restore_r1.versions import pixel_versions

#: Clean images have infinite PSNR; targets are capped here.
PSNR_CAP = 45.0
#: Output standardisation of the MLP: ``dB = DB_OFFSET + DB_SCALE · output``.
DB_OFFSET = 20.0
DB_SCALE = 6.0
#: Pairs whose PSNR differs by ≥ this count in the pairwise accuracy (issue target: 0.5 dB).
EVAL_GAP_DB = 0.5
#: The tools whose outputs the shipped fit saw (pinned, so that `make judge` reproduces it when
#: tools are added): the 15 tools that ran here when it was fitted; the DnCNN denoisers came
#: later and are slow (1.4–5 s per 256-px image), so their outputs are judged without having been
#: seen in the fit.
FIT_TOOLS: tuple[str, ...] = (
    "clahe",
    "gamma_correction",
    "constant_shift",
    "nlm_denoise",
    "guided_denoise",
    "jpeg_dct_deblock",
    "jpeg_guided_deblock",
    "dcp_dehaze",
    "cap_dehaze",
    "wiener_motion_deblur",
    "rl_motion_deblur",
    "wiener_defocus_deblur",
    "unsharp_defocus",
    "rain_opening",
    "rain_median",
)
#: Output scale of the relative judge's MLP: ``dB gain = RELATIVE_DB_SCALE · output``.
RELATIVE_DB_SCALE = 5.0
#: Group kinds built by :func:`build_groups`.
MODES: tuple[str, ...] = ("mixed", "single")


@dataclass(frozen=True)
class FitConfig:
    """Settings of the data and the fit (``make judge`` uses the defaults)."""

    crops_per_scene: int = 10  #: groups per training photo ("mixed" mode)
    size: int = 256  #: crop side in pixels
    seed: int = 0  #: seeds every random choice
    case_fraction: float = 0.55  #: share of groups degraded by one of the 15 cases; the rest by 1 (or 2) random types
    single_fraction: float = 0.3  #: share of groups degraded by exactly one random type
    second_random_tools: int = 4  #: random extra tools in each second step
    clean_tools: int = 3  #: random tools applied to the clean crop
    hidden: int = 128  #: width of the MLP's first hidden layer (the second is half); 0: a linear ranker
    epochs: int = 150  #: full-batch steps (each samples ``pair_batch`` pairs)
    pair_batch: int = 20000  #: pairs per step
    lr: float = 3e-3  #: AdamW learning rate
    weight_decay: float = 1e-3  #: AdamW weight decay
    dropout: float = 0.1  #: dropout after the first hidden layer
    reg_weight: float = 0.05  #: weight of the squared dB error beside the ranking loss
    min_gap_db: float = 0.3  #: smallest PSNR difference that makes a training pair
    rank_temperature: float = 3.0  #: RankNet logit = temperature × score difference (output units)
    relative_hidden: int = 128  #: width of the relative judge's MLP (the second layer is half)
    relative_epochs: int = 300  #: full-batch steps of the relative judge's fit (every pair each step)
    relative_dropout: float = 0.2  #: its dropout after the first hidden layer
    relative_reg_weight: float = 1.0  #: weight of its smooth-L1 dB regression beside the ranking loss
    #: Training groups only: the clean crop is first re-exposed by a random gamma, log-uniform in
    #: [e^-j, e^j], so that a training scene's own brightness no longer tells how bright its
    #: clean crop is (0: off, as ``make judge``; bench/judge_exposure.py measures it).
    exposure_jitter: float = 0.0
    search_groups: int = 5  #: mixed groups per training photo searched greedily by the first-round relative judge (0: one round)
    search_steps: int = 4  #: steps of that search
    workers: int = 2  #: processes building data
    tools: tuple[str, ...] = FIT_TOOLS  #: tools applied to build the groups (empty: every available tool)
    context: tuple[str, ...] = CONTEXT_SOURCE  #: the reference's judge features the relative judge also sees (relative.CONTEXT_SOURCE)
    deep: tuple[str, ...] = (
        DEEP_SOURCE  #: the deep change features (restore_r1.judges.deep.DEEP_BANK) it also sees (relative.DEEP_SOURCE); non-empty: the groups keep the whole bank
    )


@dataclass
class Group:
    """One crop and the images derived from it, as features (see the module docstring)."""

    scene: str
    degradations: list[str]
    x: np.ndarray  # [n, JUDGE_FEATURE_DIM]
    psnr: np.ndarray  # [n]
    kind: list[str]  # clean | partial | degraded | tool | tool2 | clean_tool
    what: list[str] = field(default_factory=list)  # chain prefix or tool names
    images: list[np.ndarray] | None = None  # the images themselves, when kept (benches score other judges on them)
    pairs: np.ndarray | None = None  # [m, 2] (reference index, image index) pairs of the relative judge
    rx: np.ndarray | None = None  # [m, len(CHANGE_FEATURES)] their change features (the context comes from x: relative_rows)
    dx: np.ndarray | None = None  # [m, len(DEEP_BANK)] their deep change features, when FitConfig.deep asked for them


def relative_rows(g: Group, context: Sequence[str] = CONTEXT_SOURCE, deep: Sequence[str] = DEEP_SOURCE) -> np.ndarray:
    """The relative judge's feature rows of a group's pairs: the change features ``g.rx``, the
    ``deep`` ones picked from ``g.dx``, and the ``context`` of each pair's reference, taken from
    the reference's judge features ``g.x`` (bit-equal to
    :func:`restore_r1.judges.relative.context_features_one`)."""
    parts = [g.rx]
    if deep:
        if g.dx is None:
            raise ValueError("relative_rows: the group has no deep features (build it with FitConfig.deep set)")
        parts.append(g.dx[:, deep_index(deep)])
    return np.hstack([*parts, context_of(g.x[g.pairs[:, 0]], context)])


def model_deep(model: RankerModel) -> tuple[str, ...]:
    """The deep change features a fitted relative model reads."""
    return tuple(n for n in model.features if n in DEEP_BANK)


def pair_deep_bank(images: Sequence[np.ndarray], pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """:func:`restore_r1.judges.deep.deep_bank` of each (reference, image) pair of ``images``:
    ``[len(pairs), len(DEEP_BANK)]``; each image's maps are computed once."""
    maps: dict[int, Any] = {}
    for i in sorted({int(i) for p in pairs for i in p}):
        maps[i] = deep_maps(images[i])
    return np.stack([deep_bank(maps[int(a)], maps[int(b)]) for a, b in pairs])


def model_context(model: RankerModel) -> tuple[str, ...]:
    """The context features a fitted relative model reads (its ``ref_*`` feature names)."""
    return tuple(n[len("ref_") :] for n in model.features if n.startswith("ref_"))


def relative_pairs(kind: Sequence[str], what: Sequence[str]) -> list[tuple[int, int]]:
    """The (reference, image) pairs of a group the relative judge learns from: the degraded input
    against itself and against every one- and two-step tool output, each first step against its
    second steps, the clean crop against its over-processed versions, and each chain prefix
    against the next (one more degradation)."""
    d, c = kind.index("degraded"), kind.index("clean")
    first = {what[i]: i for i, k in enumerate(kind) if k == "tool"}
    out = [(d, d)]
    for i, k in enumerate(kind):
        if k in ("tool", "tool2"):
            out.append((d, i))
        if k == "tool2":
            out.append((first[what[i].split(">")[0]], i))
        elif k == "clean_tool":
            out.append((c, i))
        elif k in ("partial", "degraded"):
            out.append((i - 1, i))
    return out


def psnr_db(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (capped at :data:`PSNR_CAP`)."""
    from restore_r1.metrics import psnr

    return min(float(psnr(img, ref)), PSNR_CAP)


def crop_at_scale(full: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size``-px square crop of ``full`` after a random downscale (log-uniform, from the scale
    where the crop spans the short side up to 4× that, never above 1)."""
    import cv2

    h, w = full.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"photo {w}x{h} is smaller than the crop {size}")
    s_min = size / min(h, w)
    s = float(np.exp(rng.uniform(np.log(s_min), np.log(min(1.0, 4 * s_min)))))
    img = full if s >= 1.0 else cv2.resize(full, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def re_expose(img: np.ndarray, gamma: float) -> np.ndarray:
    """``255·(x/255)^gamma`` per channel, rounded: a clean crop made darker (gamma > 1) or
    brighter (< 1) without clipping."""
    table = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
    return table[img]


def _chain(rng: np.random.Generator, cfg: FitConfig, mode: str, index: int) -> list[str]:
    from restore_r1.degradations import CASES

    if mode == "single":
        return [DEGRADATION_TYPES[index % len(DEGRADATION_TYPES)]]
    elif mode == "mixed":
        r = rng.random()
        if r < cfg.case_fraction:
            return list(CASES[int(rng.choice(sorted(CASES)))].degradations)
        n = 1 if r < cfg.case_fraction + cfg.single_fraction else 2
        return [str(d) for d in rng.choice(DEGRADATION_TYPES, size=n, replace=False)]
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")


def _group_start(path: str, index: int, cfg: FitConfig, mode: str) -> tuple[str, np.random.Generator, list[str], list[tuple[np.ndarray, str, str]]]:
    """The deterministic start of a group: scene, its generator (drawn up to the chain), the
    chain, and ``(image, kind, what)`` for the clean crop and each chain prefix (last: degraded)."""
    import zlib

    from restore_r1.degradations import apply_degradation
    from restore_r1.depth import depth_prior
    from restore_r1.images import read_image

    scene = Path(path).stem
    rng = np.random.default_rng([cfg.seed, zlib.crc32(scene.encode()), index, MODES.index(mode)])
    clean = crop_at_scale(read_image(path), cfg.size, rng)
    if cfg.exposure_jitter > 0:
        clean = re_expose(clean, float(np.exp(rng.uniform(-cfg.exposure_jitter, cfg.exposure_jitter))))
    degs = _chain(rng, cfg, mode, index)
    depth = depth_prior(clean) if "haze" in degs else None
    images: list[tuple[np.ndarray, str, str]] = [(clean, "clean", "")]
    out = clean
    for i, name in enumerate(degs):
        out, _ = apply_degradation(name, out, rng, depth=depth)
        images.append((out, "partial" if i < len(degs) - 1 else "degraded", "+".join(degs[: i + 1])))
    return scene, rng, degs, images


def build_group(path: str, index: int, cfg: FitConfig, mode: str, keep_images: bool = False) -> Group:
    """One group from one photo (see the module docstring); deterministic in (seed, photo, index, mode)."""
    import cv2

    from restore_r1.tools import get_tool, list_tools

    cv2.setNumThreads(1)
    scene, rng, degs, images = _group_start(path, index, cfg, mode)
    clean, degraded = images[0][0], images[-1][0]
    tools = [get_tool(n) for n in cfg.tools] if cfg.tools else list_tools(available_only=True)
    singles = []
    for tool in tools:
        o = tool(degraded)
        singles.append((psnr_db(o, clean), tool.name, o))
        images.append((o, "tool", tool.name))
    if mode == "mixed":
        singles.sort(key=lambda s: -s[0])
        for _, first, img in (singles[0], singles[int(rng.integers(1, len(singles)))]):
            extra = [tools[int(i)] for i in rng.choice(len(tools), size=min(cfg.second_random_tools, len(tools)), replace=False)]
            second = {t.name: t for t in [*(t for t in tools if t.degradation in degs), *extra]}
            images.extend((t(img), "tool2", f"{first}>{t.name}") for t in second.values())
        for i in rng.choice(len(tools), size=min(cfg.clean_tools, len(tools)), replace=False):
            images.append((tools[int(i)](clean), "clean_tool", tools[int(i)].name))
    x = np.stack([judge_features_one(img) for img, _, _ in images])
    kinds, whats = [k for _, k, _ in images], [w for _, _, w in images]
    pairs = np.asarray(relative_pairs(kinds, whats), dtype=np.int64)
    rx = np.stack([change_features_one(images[a][0], images[b][0]) for a, b in pairs])
    dx = pair_deep_bank([img for img, _, _ in images], pairs) if cfg.deep else None
    return Group(
        scene,
        degs,
        x,
        np.asarray([psnr_db(img, clean) for img, _, _ in images]),
        kinds,
        whats,
        [img for img, _, _ in images] if keep_images else None,
        pairs,
        rx,
        dx,
    )


def search_states(path: str, index: int, cfg: FitConfig, mode: str, model: RankerModel) -> tuple[np.ndarray, ...]:
    """Hard examples for the relative judge: greedy search from the group's degraded input with
    the first-round ``model`` (try every tool, keep the one it scores highest, never the same tool
    twice in a row, :attr:`FitConfig.search_steps` steps, no early stop). Every candidate of every
    step is returned, against the input: ``(change features [m, C], PSNR gains [m])`` (the context
    is the input's, read from its group's ``x``). These are
    the decisions an agent trained on the judge faces past the two steps of :func:`build_group`,
    where the first round overrates chains of mild smoothing and repeated brightening. With
    ``cfg.deep`` set, a third array holds the candidates' :data:`DEEP_BANK` features."""
    import cv2

    from restore_r1.tools import get_tool, list_tools

    cv2.setNumThreads(1)
    _, _, _, images = _group_start(path, index, cfg, mode)
    clean, degraded = images[0][0], images[-1][0]
    tools = [get_tool(n) for n in cfg.tools] if cfg.tools else list_tools(available_only=True)
    base = psnr_db(degraded, clean)
    context = context_features_one(degraded, model_context(model))
    used = model_deep(model)
    ref_maps = deep_maps(degraded) if used or cfg.deep else None
    identity_deep = deep_bank(ref_maps, ref_maps)[deep_index(used)] if used else np.zeros(0)
    identity = float(model.predict_db(np.concatenate([change_features_one(degraded, degraded), identity_deep, context])[None])[0])
    feats, gains, banks = [], [], []
    current, last = degraded, None
    for _ in range(cfg.search_steps):
        cands = [t for t in tools if t.name != last]
        outs = [t(current) for t in cands]
        rx = np.stack([change_features_one(degraded, o) for o in outs])
        feats.append(rx)
        gains.extend(psnr_db(o, clean) - base for o in outs)
        bank = np.stack([deep_bank(ref_maps, deep_maps(o)) for o in outs]) if ref_maps is not None else np.zeros((len(outs), 0))
        banks.append(bank)
        rows = np.hstack([rx, bank[:, deep_index(used)], np.broadcast_to(context, (len(rx), len(context)))])
        best = int(np.argmax(model.predict_db(rows) - identity))
        current, last = outs[best], cands[best].name
    if cfg.deep:
        return np.concatenate(feats), np.asarray(gains, dtype=np.float64), np.concatenate(banks)
    return np.concatenate(feats), np.asarray(gains, dtype=np.float64)


def _search_one(job: tuple[str, int, FitConfig, str, RankerModel]) -> tuple[np.ndarray, ...]:
    import torch

    torch.set_num_threads(1)
    return search_states(*job)


def _build_one(job: tuple[str, int, FitConfig, str, bool]) -> Group:
    import torch

    torch.set_num_threads(1)
    return build_group(*job)


def _run_jobs(fn: Callable[[Any], Any], jobs: list, workers: int, label: str, progress: Callable[[str], None] | None) -> list:
    """``fn`` over ``jobs`` in order, by ``workers`` spawned processes (in this one when ≤ 1),
    reporting every 20 jobs to ``progress``."""
    from multiprocessing import get_context

    start = time.time()
    if workers <= 1:
        return [fn(j) for j in jobs]
    out = []
    with get_context("spawn").Pool(workers) as pool:
        for i, r in enumerate(pool.imap(fn, jobs, chunksize=1)):
            out.append(r)
            if progress and (i + 1) % 20 == 0:
                progress(f"{label}: {i + 1}/{len(jobs)} groups, {time.time() - start:.0f} s")
    return out


def build_search_states(
    photos: Sequence[str | os.PathLike], cfg: FitConfig, model: RankerModel, progress: Callable[[str], None] | None = None
) -> list[tuple[np.ndarray, ...]]:
    """:func:`search_states` for the first :attr:`FitConfig.search_groups` mixed groups of each
    photo (the same crops as :func:`build_groups`), by ``cfg.workers`` processes."""
    jobs = [(str(p), k, cfg, "mixed", model) for p in photos for k in range(min(cfg.search_groups, cfg.crops_per_scene))]
    start = time.time()
    out = _run_jobs(_search_one, jobs, cfg.workers, "search", progress)
    if progress:
        progress(f"search: {len(out)} groups, {sum(len(s[1]) for s in out)} candidates, {time.time() - start:.0f} s")
    return out


def build_groups(
    photos: Sequence[str | os.PathLike],
    cfg: FitConfig,
    mode: str = "mixed",
    per_photo: int | None = None,
    progress: Callable[[str], None] | None = None,
    keep_images: bool = False,
) -> list[Group]:
    """Groups from every photo: ``per_photo`` each (default ``cfg.crops_per_scene``; in "single"
    mode, that many per degradation type), built by ``cfg.workers`` processes."""
    n = cfg.crops_per_scene if per_photo is None else per_photo
    count = n * (len(DEGRADATION_TYPES) if mode == "single" else 1)
    jobs = [(str(p), k, cfg, mode, keep_images) for p in photos for k in range(count)]
    start = time.time()
    groups = _run_jobs(_build_one, jobs, cfg.workers, mode, progress)
    if progress:
        progress(f"{mode}: {len(groups)} groups, {sum(len(g.psnr) for g in groups)} images, {time.time() - start:.0f} s")
    return groups


def ranking_pairs(groups: Sequence[Group], min_gap_db: float) -> tuple[np.ndarray, ...]:
    """Stacked features ``X``, targets ``y`` and the pairs ``(better, worse, weight)`` within groups."""
    xs, ys, better, worse, weight = [], [], [], [], []
    offset = 0
    for g in groups:
        n = len(g.psnr)
        a, b = np.triu_indices(n, 1)
        d = g.psnr[a] - g.psnr[b]
        keep = np.abs(d) >= min_gap_db
        a, b, d = a[keep], b[keep], d[keep]
        better.append(np.where(d > 0, a, b) + offset)
        worse.append(np.where(d > 0, b, a) + offset)
        weight.append(0.2 + np.minimum(np.abs(d), 6.0) / 6.0)
        xs.append(g.x)
        ys.append(g.psnr)
        offset += n
    return (np.concatenate(xs), np.concatenate(ys), np.concatenate(better), np.concatenate(worse), np.concatenate(weight))


def _mlp(dim: int, hidden: int, dropout: float):
    """The judges' MLP: ``dim → hidden → hidden/2 → 1`` with GELU and dropout after the first
    layer; a single linear layer when ``hidden`` is 0."""
    import torch

    if hidden <= 0:
        return torch.nn.Sequential(torch.nn.Linear(dim, 1))
    return torch.nn.Sequential(
        torch.nn.Linear(dim, hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, hidden // 2),
        torch.nn.GELU(),
        torch.nn.Linear(hidden // 2, 1),
    )


def _layers(net) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fitted linear layers as float64 ``(weight, bias)`` arrays for :class:`RankerModel`."""
    import torch

    return [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in net if isinstance(m, torch.nn.Linear)]


def pair_weight(gap_db: float) -> float:
    """Weight of a training pair whose PSNRs differ by ``gap_db``: 0.2 + |gap| / 6, capped at 1.2."""
    return 0.2 + min(abs(gap_db), 6.0) / 6.0


@contextlib.contextmanager
def _deterministic_torch():
    """Torch's deterministic kernels for the fit: the backward of the pair indexing (``s[better]``)
    accumulates with atomics otherwise, and the relative fit differed by ~1e-7 between two runs."""
    import torch

    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


def fit_ranker(groups: Sequence[Group], cfg: FitConfig, info: dict[str, Any] | None = None) -> RankerModel:
    """Fits the MLP (torch, CPU) on the groups' pairs; deterministic for a given ``cfg.seed``."""
    import torch

    torch.manual_seed(cfg.seed)
    x, y, better, worse, weight = ranking_pairs(groups, cfg.min_gap_db)
    if len(better) == 0:
        raise ValueError("no training pairs: the groups' PSNRs never differ by min_gap_db")
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor(np.clip((x - mean) / std, -6, 6), dtype=torch.float32)
    yt = torch.tensor((y - DB_OFFSET) / DB_SCALE, dtype=torch.float32)
    bt, wt_idx, wt = torch.tensor(better), torch.tensor(worse), torch.tensor(weight, dtype=torch.float32)
    net = _mlp(x.shape[1], cfg.hidden, cfg.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.epochs):
        net.train()
        sel = torch.tensor(rng.choice(len(better), size=min(len(better), cfg.pair_batch), replace=False))
        s = net(xt).squeeze(-1)
        rank_loss = (wt[sel] * torch.nn.functional.softplus(-cfg.rank_temperature * (s[bt[sel]] - s[wt_idx[sel]]))).mean()
        loss = rank_loss + cfg.reg_weight * ((s - yt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    layers = _layers(net)
    return RankerModel(JUDGE_FEATURES, mean.astype(np.float64), std.astype(np.float64), layers, DB_OFFSET, DB_SCALE, dict(info or {}))


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def evaluate_ranker(model: RankerModel, groups: Sequence[Group]) -> dict[str, Any]:
    """Pairwise accuracy, per-type ρ(ΔQ, ΔPSNR) and single-step recovery of the model on ``groups``."""
    return evaluate_scores([model.predict_db(g.x) for g in groups], groups)


def evaluate_scores(scores: Sequence[np.ndarray], groups: Sequence[Group]) -> dict[str, Any]:
    """The measures of :func:`evaluate_ranker` for any judge's scores (one array per group)."""
    correct = total = 0
    steps: dict[str, tuple[list[float], list[float]]] = {}
    chosen, best, inputs = [], [], []
    for g, q in zip(groups, scores, strict=True):
        q = np.asarray(q, dtype=np.float64)
        d = g.kind.index("degraded")
        tools = [i for i, k in enumerate(g.kind) if k == "tool"]
        for a, b in itertools.combinations(tools, 2):
            if abs(g.psnr[a] - g.psnr[b]) >= EVAL_GAP_DB:
                total += 1
                correct += bool((q[a] - q[b]) * (g.psnr[a] - g.psnr[b]) > 0)
        if len(g.degradations) == 1:
            dq, dp = steps.setdefault(g.degradations[0], ([], []))
            dq.extend(q[i] - q[d] for i in tools)
            dp.extend(g.psnr[i] - g.psnr[d] for i in tools)
        pick = max(tools, key=lambda i: q[i])
        chosen.append(g.psnr[pick] if q[pick] > q[d] else g.psnr[d])
        best.append(max(g.psnr[d], *(g.psnr[i] for i in tools)))
        inputs.append(g.psnr[d])
    gain = float(np.mean(best) - np.mean(inputs))
    return {
        "groups": len(groups),
        "pairwise_accuracy": correct / total if total else float("nan"),
        "pairs": total,
        "rho_psnr": {t: _spearman(*steps[t]) for t in DEGRADATION_TYPES if t in steps},
        "steps_per_type": {t: len(steps[t][0]) for t in DEGRADATION_TYPES if t in steps},
        "one_step_recovery": float(np.mean(chosen) - np.mean(inputs)) / gain if gain > 0 else float("nan"),
    }


def fit_relative(
    groups: Sequence[Group],
    cfg: FitConfig,
    info: dict[str, Any] | None = None,
    extra: dict[int, tuple[np.ndarray, ...]] | None = None,
) -> RankerModel:
    """Fits the relative judge's MLP (torch, CPU): predicted dB gain of each (reference, image)
    pair, ranked among the pairs of the same reference (RankNet, pairs ≥ ``cfg.min_gap_db`` apart)
    plus ``relative_reg_weight`` × a smooth-L1 regression; deterministic for a given seed.
    ``extra`` maps a group's index to more pairs against its degraded input (features, gains),
    e.g. the :func:`search_states` of the first round (with their deep features third, when
    ``cfg.deep`` is set)."""
    with _deterministic_torch():
        return _fit_relative(groups, cfg, info, extra)


def _fit_relative(groups, cfg, info, extra) -> RankerModel:
    import torch

    torch.manual_seed(cfg.seed)
    xs, ys, refs = [], [], []
    for gi, g in enumerate(groups):
        xs.append(relative_rows(g, cfg.context, cfg.deep))
        ys.append(g.psnr[g.pairs[:, 1]] - g.psnr[g.pairs[:, 0]])
        refs.extend((gi, int(a)) for a in g.pairs[:, 0])
    for gi, (rx, gains, *bank) in sorted((extra or {}).items(), key=lambda kv: kv[0]):
        g = groups[gi]
        context = context_of(g.x[g.kind.index("degraded")], cfg.context)
        deep = [bank[0][:, deep_index(cfg.deep)]] if cfg.deep else []
        xs.append(np.hstack([rx, *deep, np.broadcast_to(context, (len(rx), len(context)))]))
        ys.append(gains)
        refs.extend([(gi, groups[gi].kind.index("degraded"))] * len(gains))
    x, y = np.concatenate(xs), np.concatenate(ys)
    siblings: dict[tuple[int, int], list[int]] = {}
    for j, key in enumerate(refs):
        siblings.setdefault(key, []).append(j)
    better, worse, weight = [], [], []
    for js in siblings.values():
        for a, b in itertools.combinations(js, 2):
            d = y[a] - y[b]
            if abs(d) >= cfg.min_gap_db:
                better.append(a if d > 0 else b)
                worse.append(b if d > 0 else a)
                weight.append(pair_weight(d))
    if not better:
        raise ValueError("no training pairs: no two outputs of one reference differ by min_gap_db")
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor(np.clip((x - mean) / std, -6, 6), dtype=torch.float32)
    yt = torch.tensor(np.clip(y, -3 * RELATIVE_DB_SCALE, 3 * RELATIVE_DB_SCALE) / RELATIVE_DB_SCALE, dtype=torch.float32)
    bt, wt_idx, wt = torch.tensor(better), torch.tensor(worse), torch.tensor(weight, dtype=torch.float32)
    net = _mlp(x.shape[1], cfg.relative_hidden, cfg.relative_dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.relative_epochs)
    for _ in range(cfg.relative_epochs):
        net.train()
        s = net(xt).squeeze(-1)
        rank_loss = (wt * torch.nn.functional.softplus(-cfg.rank_temperature * (s[bt] - s[wt_idx]))).mean()
        loss = rank_loss + cfg.relative_reg_weight * torch.nn.functional.smooth_l1_loss(s, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    layers = _layers(net)
    features = (*CHANGE_FEATURES, *cfg.deep, *(f"ref_{n}" for n in cfg.context))
    return RankerModel(features, mean.astype(np.float64), std.astype(np.float64), layers, 0.0, RELATIVE_DB_SCALE, dict(info or {}))


def evaluate_relative(model: RankerModel, groups: Sequence[Group]) -> dict[str, Any]:
    """The measures of :func:`evaluate_scores` for the relative judge: every image of a group is
    scored against the group's degraded input (the first steps and the two-step outputs), and
    ``two_step_recovery`` is the share of the best one- or two-step gain its choice recovers."""
    scores, chosen2, best2 = [], [], []
    for g in groups:
        d = g.kind.index("degraded")
        q = np.full(len(g.psnr), np.nan)
        q[d] = 0.0
        rows = relative_rows(g, model_context(model), model_deep(model))
        identity = float(model.predict_db(rows[[0]])[0])  # (d, d) comes first
        on_input = [j for j, (a, _) in enumerate(g.pairs) if a == d]
        pred = model.predict_db(rows[on_input]) - identity
        for j, p in zip(on_input, pred):
            if g.pairs[j][1] != d:
                q[g.pairs[j][1]] = p
        scores.append(q)
        cand = [i for i, k in enumerate(g.kind) if k in ("tool", "tool2")]
        pick = max(cand, key=lambda i: q[i])
        chosen2.append(g.psnr[pick] - g.psnr[d] if q[pick] > 0 else 0.0)
        best2.append(max(0.0, *(g.psnr[i] - g.psnr[d] for i in cand)))
    out = evaluate_scores(scores, groups)
    out["two_step_recovery"] = float(np.mean(chosen2) / np.mean(best2)) if np.mean(best2) > 0 else float("nan")
    return out


def _cached_groups(cache: Path | None, name: str, key: dict, build: Callable[[], list[Group]]) -> list[Group]:
    """The groups of ``build()``, kept in ``cache/name.pkl`` for refits with the same data settings."""
    import pickle

    if cache is None:
        return build()
    path = cache / f"{name}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                stored = pickle.load(fh)
        except (pickle.UnpicklingError, AttributeError, EOFError, ImportError):
            stored = {"key": None}  # written by another version: rebuild
        if stored["key"] == key:
            return stored["groups"]
    groups = build()
    from restore_r1.images import atomic_write_bytes

    atomic_write_bytes(path, pickle.dumps({"key": key, "groups": groups}))
    return groups


#: The data settings of FitConfig (a change rebuilds the cached groups).
DATA_FIELDS = ("crops_per_scene", "size", "seed", "case_fraction", "single_fraction", "second_random_tools", "clean_tools", "tools")


def fit_default(
    train_dir: str | os.PathLike,
    val_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: FitConfig = FitConfig(),
    progress: Callable[[str], None] | None = None,
    cache: str | os.PathLike | None = None,
    relative_out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``make judge``: data from the training photos, the fits, their evaluation on the validation
    photos, and the models written to ``out`` (the ranker) and ``relative_out`` (the relative
    judge; JSON + safetensors each). Returns the report."""
    from restore_r1.images import list_images
    from restore_r1.judges.ranker import save_ranker

    start = time.time()
    train = [str(p) for p in list_images(train_dir)]
    val = [str(p) for p in list_images(val_dir)]
    if not train or not val:
        raise ValueError(f"no photos in {train_dir if not train else val_dir}")
    if {Path(p).stem for p in train} & {Path(p).stem for p in val}:
        raise ValueError("a scene is in both the training and the validation folder")
    cache_dir = None if cache is None else Path(cache)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    # Features computed under other pixel-library versions are stale (OpenCV 5 and 4.11 differ).
    key = {
        "data": {f: getattr(cfg, f) for f in DATA_FIELDS},
        "features": list(JUDGE_FEATURES),
        # The groups store the change features; the context is read from x when fitting.
        "relative_features": list(CHANGE_FEATURES),
        # Groups built for a deep judge also hold the deep bank (the default key is unchanged).
        **({"deep_bank": list(DEEP_BANK)} if cfg.deep else {}),
        "pixel_versions": pixel_versions(),
    }
    # Validation groups are natural photos as they are: the jitter is for training only.
    val_cfg = replace(cfg, exposure_jitter=0.0)
    train_key = {**key, **({"exposure_jitter": cfg.exposure_jitter} if cfg.exposure_jitter else {})}
    groups = _cached_groups(cache_dir, "train", {**train_key, "photos": train}, lambda: build_groups(train, cfg, "mixed", progress=progress))
    val_mixed = _cached_groups(
        cache_dir,
        "val_mixed",
        {**key, "photos": val},
        lambda: build_groups(val, val_cfg, "mixed", per_photo=max(1, cfg.crops_per_scene // 3), progress=progress),
    )
    val_single = _cached_groups(cache_dir, "val_single", {**key, "photos": val}, lambda: build_groups(val, val_cfg, "single", per_photo=1, progress=progress))
    t_fit = time.time()
    info = {
        "train_scenes": sorted(Path(p).stem for p in train),
        "val_scenes": sorted(Path(p).stem for p in val),
        "train_groups": len(groups),
        "train_images": int(sum(len(g.psnr) for g in groups)),
        "config": asdict(cfg),
        "target": f"PSNR vs the clean crop, capped at {PSNR_CAP:g} dB",
    }
    model = fit_ranker(groups, cfg, info)
    fit_seconds = time.time() - t_fit
    report = {
        "train": evaluate_ranker(model, groups),
        "val_mixed": evaluate_ranker(model, val_mixed),
        "val_single": evaluate_ranker(model, val_single),
        "fit_seconds": fit_seconds,
        "total_seconds": time.time() - start,
    }
    model.info["validation"] = {k: report[k] for k in ("val_mixed", "val_single")}
    save_ranker(model, out)
    t_rel = time.time()
    rel_info = {**info, "target": "PSNR gain over the reference image, in dB (both against the clean crop)"}
    relative = fit_relative(groups, cfg, rel_info)
    report["relative_round1"] = {"val_mixed": evaluate_relative(relative, val_mixed), "val_single": evaluate_relative(relative, val_single)}
    if cfg.search_groups > 0:
        import hashlib

        round1 = hashlib.sha256(b"".join(a.tobytes() for w, b in relative.layers for a in (w, b))).hexdigest()
        search_key = {**train_key, "photos": train, "round1": round1, "search": [cfg.search_groups, cfg.search_steps]}
        states = _cached_groups(cache_dir, "train_search", search_key, lambda: build_search_states(train, cfg, relative, progress=progress))
        per_photo = min(cfg.search_groups, cfg.crops_per_scene)
        extra = {p * cfg.crops_per_scene + k: states[p * per_photo + k] for p in range(len(train)) for k in range(per_photo)}
        rel_info["search"] = {"groups": len(states), "candidates": int(sum(len(s[1]) for s in states)), "steps": cfg.search_steps}
        relative = fit_relative(groups, cfg, rel_info, extra=extra)
    report["relative"] = {
        "train": evaluate_relative(relative, groups),
        "val_mixed": evaluate_relative(relative, val_mixed),
        "val_single": evaluate_relative(relative, val_single),
        "fit_seconds": time.time() - t_rel,
    }
    relative.info["validation"] = {k: report["relative"][k] for k in ("val_mixed", "val_single")}
    if relative_out is not None:
        save_ranker(relative, relative_out, kind="relative")
    report["total_seconds"] = time.time() - start
    return {**info, **report}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m restore_r1.judges.fit --train DIR --val DIR --out ranker.json [--report R.json]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m restore_r1.judges.fit", description="fit the ranker judge offline")
    parser.add_argument("--train", required=True, help="folder of training photos (e.g. the corpus's train/)")
    parser.add_argument("--val", required=True, help="folder of validation photos (other scenes)")
    parser.add_argument("--out", required=True, help="model JSON to write (the safetensors goes beside it)")
    parser.add_argument("--relative-out", help="the relative judge's model JSON to write (the safetensors goes beside it)")
    parser.add_argument("--report", help="write the fit report (JSON) here")
    parser.add_argument("--crops-per-scene", type=int, default=FitConfig.crops_per_scene)
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--workers", type=int, default=FitConfig.workers)
    parser.add_argument("--seed", type=int, default=FitConfig.seed)
    parser.add_argument("--hidden", type=int, default=FitConfig.hidden, help="MLP width (0: linear ranker)")
    parser.add_argument("--cache", help="keep the built groups here, so a refit with the same data settings skips building them")
    args = parser.parse_args(argv)
    cfg = FitConfig(crops_per_scene=args.crops_per_scene, epochs=args.epochs, workers=args.workers, seed=args.seed, hidden=args.hidden)
    report = fit_default(args.train, args.val, args.out, cfg, progress=lambda m: print(m, flush=True), cache=args.cache, relative_out=args.relative_out)
    text = json.dumps(report, indent=1, default=float)
    if args.report:
        from restore_r1.images import atomic_write_bytes

        atomic_write_bytes(args.report, (text + "\n").encode())
    for judge, rep in (("ranker", report), ("relative", report["relative"])):
        for key in ("train", "val_mixed", "val_single"):
            r = rep[key]
            rho = " ".join(f"{t}:{v:+.2f}" for t, v in r["rho_psnr"].items())
            extra = f", two-step recovery {r['two_step_recovery']:.2f}" if "two_step_recovery" in r else ""
            print(
                f"{judge} {key}: pairwise accuracy {r['pairwise_accuracy']:.3f} ({r['pairs']} pairs), one-step recovery {r['one_step_recovery']:.2f}{extra}, ρ {rho}"
            )
    print(f"fit {report['fit_seconds']:.0f} s, total {report['total_seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that pickled groups name restore_r1.judges.fit, not __main__.
    from restore_r1.judges.fit import main as _main

    raise SystemExit(_main())


__all__ = [
    "FitConfig",
    "Group",
    "build_group",
    "build_groups",
    "evaluate_ranker",
    "evaluate_relative",
    "fit_default",
    "fit_ranker",
    "fit_relative",
    "ranking_pairs",
    "relative_pairs",
    "JUDGE_FEATURE_DIM",
]
