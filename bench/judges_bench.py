"""Which offline judge should give the reward? (docs/method.md §1: r_t = Q(I_{t+1}) − Q(I_t).)

The reward only needs the judge's *step increments* ΔQ to move with true quality. On synthetic
data we know the clean image, so for every step we have ΔPSNR and ΔSSIM. This bench measures,
per degradation type, the Spearman correlation of each candidate judge's ΔQ with ΔPSNR and ΔSSIM
over two kinds of steps:

* tool steps: degraded image -> after a tool (every available tool of the matching type plus
  ``--other-tools`` tools of other types drawn at random, so harmful steps are in the sample);
* degradation steps: clean -> degraded (ΔPSNR is huge and negative here, so these are reported
  apart: they only check the sign).

By default (``--split heldout``) only the held-out photos (coffee, rocket) are used, so the
``calibrated`` judge — fitted offline on the training photos by bench/calibrate_judge.py — is
measured on unseen scenes, and every other judge on the same images. It also reports, per judge,
the PSNR of greedy judge-maximising exploration (restore_r1.agent.baselines.run_exploration) on
held-out 256-px images of all 15 cases: which judge, when maximised, restores best.

The default judge is the candidate judge (a catalogue entry of restore_r1.judges) with the best
selection score (per-type and pooled tool-step correlation), checked against the exploration
PSNR. Writes bench/results/judges.md and judges.json.

Usage: .venv/bin/python bench/judges_bench.py [--split heldout] [--crops 3] [--other-tools 2] [--seed 0]
The published run (--split heldout --crops 3) took about 10 minutes on 2 shared CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from scipy.stats import spearmanr

from restore_r1 import DEGRADATION_TYPES
from restore_r1.agent.baselines import run_exploration
from restore_r1.cleanimages import SPLITS, load_clean, split_names
from restore_r1.degradations import CASES, apply_case, apply_degradation
from restore_r1.judge_calibration import fast_ssim, psnr_db
from restore_r1.judges import (
    DEFAULT_JUDGE,
    NIQE_TO_LEVEL,
    NR_OFFLINE_WEIGHTS,
    PIQE_TO_LEVEL,
    create_judge,
    map_to_levels,
)
from restore_r1.metrics import create_metric, metric_availability
from restore_r1.tools import list_tools

RESULTS = Path(__file__).resolve().parent / "results"
#: Raw no-reference metrics measured once per image; candidates are computed from them.
RAW_METRICS = ("niqe", "piqe", "entropy")
#: Crop side and step limit of the greedy exploration check (the training crop size).
EXPLORATION_SIZE = 256
EXPLORATION_STEPS = 5


def candidates() -> dict[str, tuple[bool, Callable[[dict], float]]]:
    """name -> (is a catalogue judge, fn(raw metric dict) -> score, higher better)."""
    out = {
        "niqe": (True, lambda r: map_to_levels(r["niqe"], NIQE_TO_LEVEL)),
        "piqe": (True, lambda r: map_to_levels(r["piqe"], PIQE_TO_LEVEL)),
        # Calibrated offline on TRAINING photos only (bench/calibrate_judge.py); its score is
        # stored with the raw metrics since it needs the image's stats features.
        "calibrated": (True, lambda r: r["calibrated"]),
        "nr_offline": (True, lambda r: sum(w * map_to_levels(r[m], {"niqe": NIQE_TO_LEVEL, "piqe": PIQE_TO_LEVEL}[m]) for m, w in NR_OFFLINE_WEIGHTS)
                       / sum(w for _, w in NR_OFFLINE_WEIGHTS)),
        # Reference points, not judges: the metrics unmapped, and other weightings.
        "-niqe (raw)": (False, lambda r: -r["niqe"]),
        "-piqe (raw)": (False, lambda r: -r["piqe"]),
        "entropy (raw)": (False, lambda r: r["entropy"]),
    }
    for w in (0.5, 0.75):
        out[f"{w:g}·niqe+{1 - w:g}·piqe"] = (False, lambda r, w=w: w * map_to_levels(r["niqe"], NIQE_TO_LEVEL) + (1 - w) * map_to_levels(r["piqe"], PIQE_TO_LEVEL))
    return out


def centre_crops(img: np.ndarray, size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = img.shape[:2]
    size = min(size, h, w)
    crops = []
    for _ in range(n):
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crops.append(np.ascontiguousarray(img[top : top + size, left : left + size]))
    return crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels")
    parser.add_argument("--crops", type=int, default=1, help="random crops per bundled photo")
    parser.add_argument("--other-tools", type=int, default=2, help="tools of other types tried per degraded image")
    parser.add_argument("--types", default=",".join(DEGRADATION_TYPES), help="comma-separated degradation types")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=SPLITS, default="heldout",
                        help="bundled photos to measure on; 'heldout' (default) keeps the calibrated judge's training photos out")
    parser.add_argument("--exploration-per-case", type=int, default=1,
                        help="held-out 256-px images per case and held-out photo for the greedy exploration PSNR (0: skip)")
    parser.add_argument("--exploration-judges", default="piqe,calibrated", help="comma-separated judges run in the exploration")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rescore", metavar="JSON", help="recompute the candidates from the raw metric values of an earlier judges.json (no images)")
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.rescore), Path(args.out))
    types = [t for t in args.types.split(",") if t]
    for t in types:
        if t not in DEGRADATION_TYPES:
            raise SystemExit(f"unknown degradation {t!r}; use some of {DEGRADATION_TYPES}")
    rng = np.random.default_rng(args.seed)
    start = time.time()

    psnr, ssim = create_metric("psnr"), create_metric("ssim")
    raw_metrics = {m: create_metric(m) for m in RAW_METRICS if metric_availability(m)[0]}
    cands = candidates()
    tools = list_tools(available_only=True)
    calibrated = create_judge("calibrated")
    cleans = [(f"{name}#{k}", c) for name in split_names(args.split) for k, c in enumerate(centre_crops(load_clean(name), args.size, args.crops, rng))]

    def measure(img: np.ndarray, clean: np.ndarray) -> dict:
        raw = {m: float(f(img)) for m, f in raw_metrics.items()}
        raw["calibrated"] = calibrated.score([img])[0]
        return {"psnr": float(psnr(img, clean)), "ssim": float(ssim(img, clean)), "raw": raw, "q": {c: float(fn(raw)) for c, (_, fn) in cands.items()}}

    steps: list[dict] = []
    tool_seconds: dict[str, float] = {}
    for cname, clean in cleans:
        m_clean = measure(clean, clean)
        for dtype in types:
            degraded, params = apply_degradation(dtype, clean, rng)
            m_deg = measure(degraded, clean)
            steps.append(_step(dtype, cname, "degrade", dtype, m_clean, m_deg))
            matching = [t for t in tools if t.degradation == dtype]
            others = [t for t in tools if t.degradation != dtype]
            picked = matching + [others[i] for i in rng.choice(len(others), size=min(args.other_tools, len(others)), replace=False)]
            for tool in picked:
                t0 = time.time()
                out = tool(degraded)
                tool_seconds[tool.name] = tool_seconds.get(tool.name, 0.0) + time.time() - t0
                steps.append(_step(dtype, cname, "tool", tool.name, m_deg, measure(out, clean), matched=tool.degradation == dtype))

    # The catalogue judges must score exactly as the bench computes them.
    probe = cleans[0][1]
    raw_probe = {m: float(f(probe)) for m, f in raw_metrics.items()} | {"calibrated": calibrated.score([probe])[0]}
    for name, (is_judge, fn) in cands.items():
        if is_judge:
            got = create_judge(name).score([probe])[0]
            if abs(got - fn(raw_probe)) > 1e-6:
                raise RuntimeError(f"judge {name}: create_judge gives {got}, the bench computes {fn(raw_probe)}")

    table = summarise(steps, types, cands)
    exploration = None
    if args.exploration_per_case > 0:
        exploration = explore(args, tools, rng)
    judges_only = {c: v for c, v in table["selection"].items() if cands[c][0]}
    best = max(judges_only, key=judges_only.get)
    result = {
        "settings": vars(args) | {"images": len(cleans), "tools": [t.name for t in tools]},
        "seconds": round(time.time() - start, 1),
        "tool_seconds": {k: round(v, 2) for k, v in sorted(tool_seconds.items())},
        "best_judge": best,
        "default_judge": DEFAULT_JUDGE,
        "table": table,
        "exploration": exploration,
        "raw_ranges": raw_ranges(steps),
        "steps": steps,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "judges.json").write_text(json.dumps(result, indent=1))
    (out / "judges.md").write_text(render(result, cands))
    if exploration:
        sys.stdout.write("exploration PSNR: " + ", ".join(f"{j} {v['psnr']:.2f} dB" for j, v in exploration["summary"].items()) + "\n")
    sys.stdout.write(f"best judge by selection score (mean per-type and pooled tool-step Spearman): {best} ({judges_only[best]:.3f}); DEFAULT_JUDGE = {DEFAULT_JUDGE}; "
                     f"{len(steps)} steps in {result['seconds']} s -> {out}/judges.md\n")
    return 0


def rescore(path: Path, out: Path) -> int:
    """Recomputes ΔQ of every candidate from stored raw metric values (after editing the maps)."""
    result = json.loads(path.read_text())
    cands = candidates()
    for s in result["steps"]:
        s["d_q"] = {c: fn(s["raw_after"]) - fn(s["raw_before"]) for c, (_, fn) in cands.items()}
    types = list(dict.fromkeys(s["type"] for s in result["steps"]))
    result["table"] = summarise(result["steps"], types, cands)
    judges_only = {c: v for c, v in result["table"]["selection"].items() if cands[c][0]}
    result["best_judge"] = max(judges_only, key=judges_only.get)
    result["default_judge"] = DEFAULT_JUDGE
    out.mkdir(parents=True, exist_ok=True)
    (out / "judges.json").write_text(json.dumps(result, indent=1))
    (out / "judges.md").write_text(render(result, cands))
    sys.stdout.write(f"rescored {len(result['steps'])} steps: best judge {result['best_judge']}; DEFAULT_JUDGE = {DEFAULT_JUDGE}\n")
    return 0


def explore(args: argparse.Namespace, tools: list, rng: np.random.Generator) -> dict:
    """Greedy judge-maximising restoration (run_exploration, max 5 steps) of held-out 256-px
    images of all 15 cases: which judge, when maximised, restores best? Tool outputs are cached
    per (input, tool), so every judge sees identical tool results."""
    from restore_r1.cleanimages import HELDOUT_NAMES

    judges = {name: create_judge(name) for name in args.exploration_judges.split(",") if name}
    cache: dict[tuple[bytes, str], np.ndarray] = {}

    def cached(tool):
        def fn(img: np.ndarray) -> np.ndarray:
            import hashlib

            key = (hashlib.sha1(img.tobytes()).digest() + str(img.shape).encode(), tool.name)
            if key not in cache:
                cache[key] = tool(img)
            return cache[key]
        return fn

    tool_fns = {t.name: cached(t) for t in tools}
    rows = []
    t0 = time.time()
    for photo in HELDOUT_NAMES:
        full = load_clean(photo)
        for case in sorted(CASES):
            for clean in centre_crops(full, EXPLORATION_SIZE, args.exploration_per_case, rng):
                degraded, _ = apply_case(case, clean, rng)
                row = {"photo": photo, "case": case, "input": {"psnr": psnr_db(degraded, clean), "ssim": fast_ssim(degraded, clean)}}
                for name, judge in judges.items():
                    res = run_exploration(degraded, tools=tool_fns, judge=judge, max_steps=EXPLORATION_STEPS)
                    row[name] = {"psnr": psnr_db(res.image, clean), "ssim": fast_ssim(res.image, clean), "tools": res.tools}
                rows.append(row)
                cache.clear()
    methods = ["input", *judges]
    summary = {m: {"psnr": float(np.mean([r[m]["psnr"] for r in rows])), "ssim": float(np.mean([r[m]["ssim"] for r in rows]))} for m in methods}
    for name in judges:
        summary[name]["steps"] = float(np.mean([len(r[name]["tools"]) for r in rows]))
        summary[name]["better_than_input"] = float(np.mean([r[name]["psnr"] > r["input"]["psnr"] + 0.05 for r in rows]))
        summary[name]["worse_than_input"] = float(np.mean([r[name]["psnr"] < r["input"]["psnr"] - 0.05 for r in rows]))
    per_case = {c: {m: float(np.mean([r[m]["psnr"] for r in rows if r["case"] == c])) for m in methods} for c in sorted(CASES)}
    return {"images": len(rows), "size": EXPLORATION_SIZE, "max_steps": EXPLORATION_STEPS, "seconds": round(time.time() - t0, 1),
            "summary": summary, "per_case": per_case, "rows": rows}


def _step(dtype: str, image: str, kind: str, action: str, before: dict, after: dict, matched: bool = True) -> dict:
    return {
        "type": dtype, "image": image, "kind": kind, "action": action, "matched": matched,
        "d_psnr": after["psnr"] - before["psnr"], "d_ssim": after["ssim"] - before["ssim"],
        "d_q": {c: after["q"][c] - before["q"][c] for c in after["q"]},
        "raw_before": before["raw"], "raw_after": after["raw"],
    }


def _rho(x: list[float], y: list[float]) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def summarise(steps: list[dict], types: list[str], cands: dict) -> dict:
    per_type: dict[str, dict[str, dict[str, float]]] = {}
    for dtype in types:
        tool_steps = [s for s in steps if s["type"] == dtype and s["kind"] == "tool"]
        per_type[dtype] = {}
        for c in cands:
            dq = [s["d_q"][c] for s in tool_steps]
            per_type[dtype][c] = {
                "psnr": _rho(dq, [s["d_psnr"] for s in tool_steps]),
                "ssim": _rho(dq, [s["d_ssim"] for s in tool_steps]),
                "n": len(tool_steps),
            }
    mean_tool = {c: float(np.nanmean([per_type[t][c][k] for t in types for k in ("psnr", "ssim")])) for c in cands}
    all_tool = [s for s in steps if s["kind"] == "tool"]
    pooled = {c: {"psnr": _rho([s["d_q"][c] for s in all_tool], [s["d_psnr"] for s in all_tool]),
                  "ssim": _rho([s["d_q"][c] for s in all_tool], [s["d_ssim"] for s in all_tool])} for c in cands}
    degrade = [s for s in steps if s["kind"] == "degrade"]
    # Share of clean -> degraded steps the judge scores as a loss, per type.
    sign = {c: {t: float(np.mean([s["d_q"][c] < 0 for s in degrade if s["type"] == t])) for t in types} for c in cands}
    # Share of tool steps where the judge's sign agrees with PSNR's (|ΔPSNR| > 0.1 dB).
    agree = {c: float(np.mean([(s["d_q"][c] > 0) == (s["d_psnr"] > 0) for s in all_tool if abs(s["d_psnr"]) > 0.1])) for c in cands}
    # What the default is chosen by: per-type agreement and cross-type calibration (GRPO compares
    # rewards of different tools in one group), equally weighted.
    selection = {c: 0.5 * mean_tool[c] + 0.25 * (pooled[c]["psnr"] + pooled[c]["ssim"]) for c in cands}
    return {"per_type": per_type, "mean_tool": mean_tool, "selection": selection, "pooled_tool": pooled, "degrade_detected": sign, "tool_sign_agreement": agree}


def render_exploration(ex: dict | None) -> list[str]:
    if not ex:
        return []
    judges = [m for m in ex["summary"] if m != "input"]
    lines = [
        f"## Greedy exploration: which judge, when maximised, restores best? (held-out photos, {ex['images']} images, {ex['size']} px, all 15 cases)",
        "",
        f"restore_r1.agent.baselines.run_exploration (try every tool, keep the judge's best if it raises the judge, ≤ {ex['max_steps']} steps); "
        f"identical tool outputs for every judge; {ex['seconds']} s.",
        "",
        "| method | PSNR (dB) | SSIM | mean steps | PSNR better / worse than input |",
        "|---|---|---|---|---|",
        f"| input (no restoration) | {ex['summary']['input']['psnr']:.2f} | {ex['summary']['input']['ssim']:.3f} | 0 | – |",
    ]
    for j in judges:
        v = ex["summary"][j]
        lines.append(f"| exploration with `{j}` | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['steps']:.2f} | {v['better_than_input']:.2f} / {v['worse_than_input']:.2f} |")
    lines += ["", "PSNR per case (dB):", "", "| case | input | " + " | ".join(judges) + " |", "|---|---|" + "---|" * len(judges)]
    for case, v in ex["per_case"].items():
        lines.append(f"| {case} {CASES[int(case)].name} | {v['input']:.2f} | " + " | ".join(f"{v[j]:.2f}" for j in judges) + " |")
    return lines + [""]


def raw_ranges(steps: list[dict]) -> dict:
    out = {}
    for m in RAW_METRICS:
        values = [s["raw_after"][m] for s in steps if m in s["raw_after"]]
        if values:
            out[m] = {q: round(float(np.percentile(values, p)), 2) for q, p in (("p05", 5), ("p50", 50), ("p95", 95))}
    return out


def render(result: dict, cands: dict) -> str:
    t = result["table"]
    types = list(t["per_type"])
    lines = [
        "# Offline judges: do their step increments follow PSNR / SSIM?",
        "",
        "Generated by `bench/judges_bench.py` (" + ", ".join(f"{k}={v}" for k, v in result["settings"].items() if k not in ("tools", "out", "rescore")) + f"); {result['seconds']} s.",
        f"Tools tried (available here): {', '.join(result['settings']['tools'])}.",
        "",
        "Spearman ρ between a judge's ΔQ and ΔPSNR / ΔSSIM over tool steps (degraded -> after a tool), per degradation type.",
        "Rows marked * are catalogue judges; the others are reference points.",
        "",
        "| candidate | " + " | ".join(f"{d} ρPSNR / ρSSIM" for d in types) + " | mean | pooled ρPSNR / ρSSIM | selection | sign agreement | clean→degraded seen as loss |",
        "|---|" + "---|" * (len(types) + 5),
    ]
    order = sorted(cands, key=lambda c: -t["selection"][c])
    for c in order:
        cells = [f"{t['per_type'][d][c]['psnr']:+.2f} / {t['per_type'][d][c]['ssim']:+.2f}" for d in types]
        pooled = t["pooled_tool"][c]
        det = t["degrade_detected"][c]
        lines.append(f"| {c}{' *' if cands[c][0] else ''} | " + " | ".join(cells) + f" | {t['mean_tool'][c]:+.3f} | {pooled['psnr']:+.2f} / {pooled['ssim']:+.2f} | {t['selection'][c]:+.3f} | "
                     f"{t['tool_sign_agreement'][c]:.2f} | " + " ".join(f"{d}:{det[d]:.2f}" for d in types) + " |")
    n = {d: t["per_type"][d][order[0]]["n"] for d in types}
    lines += [
        "",
        f"Tool steps per type: {n}.",
        f"Raw metric values over all scored images (p05 / p50 / p95): {result['raw_ranges']}.",
        "",
        "selection = ½·mean + ¼·(pooled ρPSNR + pooled ρSSIM): per-type agreement and cross-type calibration, since GRPO compares",
        "rewards of different tools within one group. Sign agreement: share of tool steps with |ΔPSNR| > 0.1 dB where ΔQ has ΔPSNR's sign.",
        "",
        f"Photos: split `{result['settings']['split']}`. The `calibrated` judge's coefficients were fitted offline (bench/calibrate_judge.py) on",
        "synthetic data of the TRAINING photos only (astronaut, chelsea, motorcycle_left/right); with `--split heldout` every number here",
        "is measured on photos (coffee, rocket) that never entered its calibration. At use time it is no-reference: it sees only the image.",
        "",
        f"**Best catalogue judge by selection score: `{result['best_judge']}`. `DEFAULT_JUDGE` in restore_r1/judges.py is `{result['default_judge']}`.**",
        "",
        *render_exploration(result.get("exploration")),
        "Caveats: classical NR metrics are blind to some degradations (darkening and haze lower",
        "contrast, which NIQE/PIQE can read as *cleaner*); the paper's DeQA-Score is the intended judge",
        "(`mllm` with its checkpoint, or `openai` against a served VLM) wherever it can run.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
