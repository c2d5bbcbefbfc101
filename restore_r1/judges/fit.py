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

import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.judges.features import JUDGE_FEATURE_DIM, JUDGE_FEATURES, judge_features_one
from restore_r1.judges.ranker import RankerModel

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
    workers: int = 2  #: processes building data
    tools: tuple[str, ...] = FIT_TOOLS  #: tools applied to build the groups (empty: every available tool)


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


def build_group(path: str, index: int, cfg: FitConfig, mode: str, keep_images: bool = False) -> Group:
    """One group from one photo (see the module docstring); deterministic in (seed, photo, index, mode)."""
    import zlib

    import cv2

    from restore_r1.degradations import apply_degradation
    from restore_r1.depth import depth_prior
    from restore_r1.images import read_image
    from restore_r1.tools import get_tool, list_tools

    cv2.setNumThreads(1)
    scene = Path(path).stem
    rng = np.random.default_rng([cfg.seed, zlib.crc32(scene.encode()), index, MODES.index(mode)])
    clean = crop_at_scale(read_image(path), cfg.size, rng)
    tools = [get_tool(n) for n in cfg.tools] if cfg.tools else list_tools(available_only=True)
    degs = _chain(rng, cfg, mode, index)
    depth = depth_prior(clean) if "haze" in degs else None
    images: list[tuple[np.ndarray, str, str]] = [(clean, "clean", "")]
    out = clean
    for i, name in enumerate(degs):
        out, _ = apply_degradation(name, out, rng, depth=depth)
        images.append((out, "partial" if i < len(degs) - 1 else "degraded", "+".join(degs[: i + 1])))
    degraded = out
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
    return Group(
        scene,
        degs,
        x,
        np.asarray([psnr_db(img, clean) for img, _, _ in images]),
        [k for _, k, _ in images],
        [w for _, _, w in images],
        [img for img, _, _ in images] if keep_images else None,
    )


def _build_one(job: tuple[str, int, FitConfig, str, bool]) -> Group:
    import torch

    torch.set_num_threads(1)
    return build_group(*job)


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
    from multiprocessing import get_context

    n = cfg.crops_per_scene if per_photo is None else per_photo
    count = n * (len(DEGRADATION_TYPES) if mode == "single" else 1)
    jobs = [(str(p), k, cfg, mode, keep_images) for p in photos for k in range(count)]
    start = time.time()
    groups: list[Group] = []
    if cfg.workers <= 1:
        groups = [_build_one(j) for j in jobs]
    else:
        with get_context("spawn").Pool(cfg.workers) as pool:
            for i, g in enumerate(pool.imap(_build_one, jobs, chunksize=1)):
                groups.append(g)
                if progress and (i + 1) % 20 == 0:
                    progress(f"{mode}: {i + 1}/{len(jobs)} groups, {time.time() - start:.0f} s")
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
    h = cfg.hidden
    if h > 0:
        net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], h),
            torch.nn.GELU(),
            torch.nn.Dropout(cfg.dropout),
            torch.nn.Linear(h, h // 2),
            torch.nn.GELU(),
            torch.nn.Linear(h // 2, 1),
        )
    else:
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 1))
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
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in linears]
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
) -> dict[str, Any]:
    """``make judge``: data from the training photos, the fit, its evaluation on the validation
    photos, and the model written to ``out`` (JSON + safetensors). Returns the report."""
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
    key = {"data": {f: getattr(cfg, f) for f in DATA_FIELDS}, "features": list(JUDGE_FEATURES)}
    groups = _cached_groups(cache_dir, "train", {**key, "photos": train}, lambda: build_groups(train, cfg, "mixed", progress=progress))
    val_mixed = _cached_groups(
        cache_dir, "val_mixed", {**key, "photos": val}, lambda: build_groups(val, cfg, "mixed", per_photo=max(1, cfg.crops_per_scene // 3), progress=progress)
    )
    val_single = _cached_groups(cache_dir, "val_single", {**key, "photos": val}, lambda: build_groups(val, cfg, "single", per_photo=1, progress=progress))
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
    return {**info, **report}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m restore_r1.judges.fit --train DIR --val DIR --out ranker.json [--report R.json]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m restore_r1.judges.fit", description="fit the ranker judge offline")
    parser.add_argument("--train", required=True, help="folder of training photos (e.g. the corpus's train/)")
    parser.add_argument("--val", required=True, help="folder of validation photos (other scenes)")
    parser.add_argument("--out", required=True, help="model JSON to write (the safetensors goes beside it)")
    parser.add_argument("--report", help="write the fit report (JSON) here")
    parser.add_argument("--crops-per-scene", type=int, default=FitConfig.crops_per_scene)
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--workers", type=int, default=FitConfig.workers)
    parser.add_argument("--seed", type=int, default=FitConfig.seed)
    parser.add_argument("--hidden", type=int, default=FitConfig.hidden, help="MLP width (0: linear ranker)")
    parser.add_argument("--cache", help="keep the built groups here, so a refit with the same data settings skips building them")
    args = parser.parse_args(argv)
    cfg = FitConfig(crops_per_scene=args.crops_per_scene, epochs=args.epochs, workers=args.workers, seed=args.seed, hidden=args.hidden)
    report = fit_default(args.train, args.val, args.out, cfg, progress=lambda m: print(m, flush=True), cache=args.cache)
    text = json.dumps(report, indent=1, default=float)
    if args.report:
        from restore_r1.images import atomic_write_bytes

        atomic_write_bytes(args.report, (text + "\n").encode())
    for key in ("train", "val_mixed", "val_single"):
        r = report[key]
        rho = " ".join(f"{t}:{v:+.2f}" for t, v in r["rho_psnr"].items())
        print(f"{key}: pairwise accuracy {r['pairwise_accuracy']:.3f} ({r['pairs']} pairs), one-step recovery {r['one_step_recovery']:.2f}, ρ {rho}")
    print(f"fit {report['fit_seconds']:.0f} s, total {report['total_seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that pickled groups name restore_r1.judges.fit, not __main__.
    from restore_r1.judges.fit import main as _main

    raise SystemExit(_main())


__all__ = ["FitConfig", "Group", "build_group", "build_groups", "evaluate_ranker", "fit_default", "fit_ranker", "ranking_pairs", "JUDGE_FEATURE_DIM"]
