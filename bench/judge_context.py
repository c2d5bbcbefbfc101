"""Does the relative judge gain from seeing its reference? (writes judge_context.json / .md)

The relative judge reads only the change from the episode's input to the current image. On dark
inputs it scores brightening as a loss (docs/method.md §1.4), which suggests giving it the
input's own statistics as context (``FitConfig.context``). This bench refits the relative judge
with several context sets on the groups ``make judge`` cached (``.cache/judge_fit``: the
corpus's training scenes), and measures each on the VALIDATION scenes only: pairwise accuracy,
recovery of the best one/two-step gain, and per-type Spearman ρ of ΔQ with ΔPSNR. Every variant
uses the same second-round search states (those of the shipped first round), so only the
features differ.

    make judge   # builds the cache
    .venv/bin/python bench/judge_context.py --out bench/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.encoders import STATS_FEATURES
from restore_r1.images import atomic_write_bytes
from restore_r1.judges import fit
from restore_r1.judges.features import EXPOSURE_FEATURES
from restore_r1.judges.relative import CONTEXT_SOURCE

#: Exposure, haze and colour statistics of the input (the evidence a brightening or dehazing
#: step needs).
TONE = ("v_mean", "v_p05", "v_p50", "v_p95", "v_clipped_low", "dark_channel_mean", "dark_channel_p90", "rms_contrast", "saturation_mean", "saturation_p90")
VARIANTS: dict[str, tuple[str, ...]] = {
    "none (shipped)": (),
    "brightness (5)": TONE[:5],
    "brightness + haze (7)": TONE[:7],
    "brightness + haze + colour (10)": TONE,
    "tone + luma histogram + channels (32)": (*TONE, *EXPOSURE_FEATURES),
    "all degradation statistics (32)": tuple(STATS_FEATURES),
    "degradation statistics + exposure (54)": (*STATS_FEATURES, *EXPOSURE_FEATURES),
}


def table_head(first: str) -> list[str]:
    """The header of a relative-judge variant table (first column ``first``)."""
    return [
        f"| {first} | pairwise acc. (mixed / single) | 1-step recovery (mixed) | 2-step recovery (mixed / single) | mean ρ | min ρ | "
        + " | ".join(f"ρ {t}" for t in DEGRADATION_TYPES)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(DEGRADATION_TYPES),
    ]


def table_cells(m: dict, s: dict) -> str:
    """One variant's cells after the first: ``m`` and ``s`` are its ``evaluate_relative`` reports
    on the mixed and the single-degradation validation groups."""
    rho = [s["rho_psnr"].get(t, float("nan")) for t in DEGRADATION_TYPES]
    return (
        f"{m['pairwise_accuracy']:.3f} / {s['pairwise_accuracy']:.3f} | {m['one_step_recovery']:.2f} | "
        f"{m['two_step_recovery']:.2f} / {s['two_step_recovery']:.2f} | {np.nanmean(rho):+.3f} | {np.nanmin(rho):+.2f} | "
        + " | ".join(f"{v:+.2f}" for v in rho)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cache", default=".cache/judge_fit", help="make judge's group cache")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    names = ("train", "val_mixed", "val_single", "train_search")
    if not all((cache / f"{n}.pkl").is_file() for n in names):
        print(f"judge_context: no cached groups in {cache}: run `make judge` first", file=sys.stderr)
        return 2
    loaded = {n: pickle.loads((cache / f"{n}.pkl").read_bytes())["groups"] for n in names}
    train, states = loaded["train"], loaded["train_search"]
    cfg = fit.FitConfig()
    per = min(cfg.search_groups, cfg.crops_per_scene)
    extra = {p * cfg.crops_per_scene + k: states[p * per + k] for p in range(len(train) // cfg.crops_per_scene) for k in range(per)}
    start = time.time()
    rows = []
    for name, context in VARIANTS.items():
        t = time.time()
        model = fit.fit_relative(train, fit.FitConfig(context=context), {}, extra=extra)
        rep = {split: fit.evaluate_relative(model, loaded[split]) for split in ("val_mixed", "val_single")}
        rows.append({"variant": name, "context": list(context), "fit_seconds": time.time() - t, **rep})
        print(f"{name}: pairwise {rep['val_mixed']['pairwise_accuracy']:.3f}/{rep['val_single']['pairwise_accuracy']:.3f}", flush=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/judge_context.py --out " + args.out,
        "train_groups": len(train),
        "minutes": (time.time() - start) / 60,
        "variants": rows,
    }
    out = Path(args.out)
    atomic_write_bytes(out / "judge_context.json", (json.dumps(report, indent=1, default=float) + "\n").encode())
    lines = [
        "# Relative judge: does context about the input help?",
        "",
        f"Command: {report['command']}  ",
        f"Date: {report['date']}  ",
        f"Data: the {len(train)} training groups of `make judge` (corpus training scenes); every number below is on the VALIDATION scenes.  ",
        "Same second-round search states for every variant; `FitConfig.context` names the input's judge features the MLP also sees.",
        "",
        *table_head("context"),
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {table_cells(r['val_mixed'], r['val_single'])} |")
    best = max(rows, key=lambda r: np.nanmean(list(r["val_single"]["rho_psnr"].values())))
    lines += [
        "",
        f"Highest mean ρ: **{best['variant']}**; the shipped judge reads `restore_r1.judges.relative.CONTEXT_SOURCE` "
        f"= {list(CONTEXT_SOURCE) or 'none'} (docs/method.md §1.4 says why).",
        "",
    ]
    atomic_write_bytes(out / "judge_context.md", "\n".join(lines).encode())
    print(f"-> {out / 'judge_context.md'} ({report['minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
