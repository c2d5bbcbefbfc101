"""Which offline judge should give the reward? (SPEC §1: r_t = Q(I_{t+1}) − Q(I_t).)

The reward only needs the judge's *step increments* ΔQ to move with true quality. On synthetic
data we know the clean image, so for every step we have ΔPSNR and ΔSSIM. This bench measures,
per degradation type, the Spearman correlation of each candidate judge's ΔQ with ΔPSNR and ΔSSIM
over two kinds of steps:

* tool steps: degraded image -> after a tool (every available tool of the matching type plus
  ``--other-tools`` tools of other types drawn at random, so harmful steps are in the sample);
* degradation steps: clean -> degraded (ΔPSNR is huge and negative here, so these are reported
  apart: they only check the sign).

The default judge is the candidate judge (a catalogue entry of restore_r1.judges) with the best
mean tool-step correlation over types and over PSNR and SSIM. Writes bench/results/judges.md and
judges.json.

Usage: .venv/bin/python bench/judges_bench.py [--size 256] [--crops 1] [--other-tools 2] [--seed 0]
A full run takes about 3 minutes on 2 CPU cores.
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
from restore_r1.cleanimages import ALL_NAMES, load_clean
from restore_r1.degradations import apply_degradation
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


def candidates() -> dict[str, tuple[bool, Callable[[dict], float]]]:
    """name -> (is a catalogue judge, fn(raw metric dict) -> score, higher better)."""
    out = {
        "niqe": (True, lambda r: map_to_levels(r["niqe"], NIQE_TO_LEVEL)),
        "piqe": (True, lambda r: map_to_levels(r["piqe"], PIQE_TO_LEVEL)),
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
    cleans = [(f"{name}#{k}", c) for name in ALL_NAMES for k, c in enumerate(centre_crops(load_clean(name), args.size, args.crops, rng))]

    def measure(img: np.ndarray, clean: np.ndarray) -> dict:
        raw = {m: float(f(img)) for m, f in raw_metrics.items()}
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
    raw_probe = {m: float(f(probe)) for m, f in raw_metrics.items()}
    for name, (is_judge, fn) in cands.items():
        if is_judge:
            got = create_judge(name).score([probe])[0]
            if abs(got - fn(raw_probe)) > 1e-6:
                raise RuntimeError(f"judge {name}: create_judge gives {got}, the bench computes {fn(raw_probe)}")

    table = summarise(steps, types, cands)
    judges_only = {c: v for c, v in table["selection"].items() if cands[c][0]}
    best = max(judges_only, key=judges_only.get)
    result = {
        "settings": vars(args) | {"images": len(cleans), "tools": [t.name for t in tools]},
        "seconds": round(time.time() - start, 1),
        "tool_seconds": {k: round(v, 2) for k, v in sorted(tool_seconds.items())},
        "best_judge": best,
        "default_judge": DEFAULT_JUDGE,
        "table": table,
        "raw_ranges": raw_ranges(steps),
        "steps": steps,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "judges.json").write_text(json.dumps(result, indent=1))
    (out / "judges.md").write_text(render(result, cands))
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
        f"**Best catalogue judge by selection score: `{result['best_judge']}`. `DEFAULT_JUDGE` in restore_r1/judges.py is `{result['default_judge']}`.**",
        "",
        "Caveats: classical NR metrics are blind to some degradations (darkening and haze lower",
        "contrast, which NIQE/PIQE can read as *cleaner*); the paper's DeQA-Score is the intended judge",
        "(`mllm` with its checkpoint, or `openai` against a served VLM) wherever it can run.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
