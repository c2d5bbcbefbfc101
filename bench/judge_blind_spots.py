"""Where the default judge is wrong, tool by tool, and what the shipped policy does about it.

    PYTHONPATH=$PWD RESTORE_R1_CORPUS=$PWD/.cache/corpus .venv/bin/python bench/judge_blind_spots.py --out bench/results

On the corpus's VALIDATION scenes (one 256-px crop per scene and case, all 15 cases; never the
bundled held-out photos), every tool of the shipped policy is applied once to each degraded
input. For each tool the table compares the PSNR gain it really gives (against the clean crop)
with the gain the default judge predicts for it (``relative`` predicts the PSNR gain in dB of an
image over the episode's input), and counts the judge's two kinds of error: a real gain of at
least :data:`GAIN_DB` that it scores as a loss (a missed gain) and a real loss of at least
:data:`GAIN_DB` that it scores as a gain (a false gain). It also counts how often each tool is
the best single step by PSNR and by the judge, and how often the shipped policy calls it.

A diagnosis, not a target: it says which tools a better judge must learn to value, and by how
many dB the policy loses there. Writes ``judge_blind_spots.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore_r1.agent.inference import Agent  # noqa: E402
from restore_r1.corpus import corpus_split_dir  # noqa: E402
from restore_r1.images import atomic_write_bytes  # noqa: E402
from restore_r1.metrics import create_metric  # noqa: E402
from restore_r1.synth import build_dataset, read_manifest  # noqa: E402

#: A gain or loss this large (dB) counts as one the judge must get the sign of.
GAIN_DB = 1.0
CROP = 256
SEED = 7


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    psnr = create_metric("psnr")
    agent = Agent.load(None)
    judge = agent.judge
    if not hasattr(judge, "score_relative"):
        raise SystemExit(f"judge_blind_spots: the default judge {type(judge).__name__} is not relative")
    rows = []
    with tempfile.TemporaryDirectory(prefix="restore-r1-blind-") as tmp:
        build_dataset(tmp, images_dir=corpus_split_dir("val"), cases=list(range(1, 16)), per_case=1, seed=SEED, crop=CROP, progress=False)
        for rec in read_manifest(tmp):
            lq, gt = _read(Path(tmp) / rec["lq"]), _read(Path(tmp) / rec["gt"])
            base = psnr(lq, gt)
            names = list(agent.tools)
            outs = [agent.tools[t](lq) for t in names]
            predicted = judge.score_relative([lq] * len(outs), outs)
            result = agent.restore(lq)
            rows.append(
                {
                    "id": rec["id"],
                    "case": rec["case"],
                    "degradations": rec["degradations"],
                    "input_psnr": base,
                    "policy_psnr": psnr(result.image, gt),
                    "policy_tools": result.tools,
                    "tools": {t: {"gain": psnr(o, gt) - base, "predicted": float(p)} for t, o, p in zip(names, outs, predicted, strict=True)},
                }
            )
    tools = list(rows[0]["tools"])
    best = collections.Counter(max(r["tools"], key=lambda t, r=r: r["tools"][t]["gain"]) for r in rows)
    judged_best = collections.Counter(max(r["tools"], key=lambda t, r=r: r["tools"][t]["predicted"]) for r in rows)
    calls = collections.Counter(t for r in rows for t in r["policy_tools"])
    table = []
    for t in tools:
        gain = np.array([r["tools"][t]["gain"] for r in rows])
        pred = np.array([r["tools"][t]["predicted"] for r in rows])
        table.append(
            {
                "tool": t,
                "mean_gain": float(gain.mean()),
                "mean_predicted": float(pred.mean()),
                "real_gains": int((gain >= GAIN_DB).sum()),
                "missed_gains": int(((gain >= GAIN_DB) & (pred < 0)).sum()),
                "real_losses": int((gain <= -GAIN_DB).sum()),
                "false_gains": int(((gain <= -GAIN_DB) & (pred > 0)).sum()),
                "best_by_psnr": best[t],
                "best_by_judge": judged_best[t],
                "policy_calls": calls[t],
            }
        )
    dark = [r for r in rows if "dark" in r["degradations"]]
    brighten = ("gamma_correction", "constant_shift", "clahe")

    def best_brightening(r):
        return max(brighten, key=lambda t: r["tools"][t]["gain"])

    dark_summary = {
        "images": len(dark),
        "best_brightening_gain": float(np.mean([r["tools"][best_brightening(r)]["gain"] for r in dark])),
        "its_predicted_gain": float(np.mean([r["tools"][best_brightening(r)]["predicted"] for r in dark])),
        "predicted_as_loss": sum(r["tools"][best_brightening(r)]["predicted"] < 0 for r in dark),
        "policy_gain": float(np.mean([r["policy_psnr"] - r["input_psnr"] for r in dark])),
        "policy_brightening_calls": sum(t in brighten for r in dark for t in r["policy_tools"]),
    }
    report = {
        "command": "python bench/judge_blind_spots.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "seconds": time.perf_counter() - started,
        "judge": type(judge).__name__,
        "images": len(rows),
        "gain_db": GAIN_DB,
        "tools": table,
        "dark": dark_summary,
        "policy_gain": float(np.mean([r["policy_psnr"] - r["input_psnr"] for r in rows])),
        "best_single_tool_gain": float(np.mean([max(v["gain"] for v in r["tools"].values()) for r in rows])),
        "judge_single_tool_gain": float(np.mean([r["tools"][max(r["tools"], key=lambda t, r=r: r["tools"][t]["predicted"])]["gain"] for r in rows])),
        "rows": rows,
    }
    lines = [
        "# Where the default judge is wrong, tool by tool",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}; {report['seconds']:.0f} s",
        "",
        f"The corpus's validation scenes, one {CROP}-px crop per scene and case (all 15, seed {SEED}): {len(rows)} degraded inputs, each tool of "
        f"the shipped policy applied once. *Gain*: its real PSNR gain over the input; *predicted*: the default judge's (`relative`) predicted gain "
        f"in dB. A missed gain is a real gain ≥ {GAIN_DB:g} dB scored as a loss; a false gain a real loss ≥ {GAIN_DB:g} dB scored as a gain.",
        "",
        "| tool | mean gain (dB) | mean predicted (dB) | missed gains / real gains | false gains / real losses | best by PSNR | best by judge | shipped policy's calls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| `{row['tool']}` | {row['mean_gain']:+.2f} | {row['mean_predicted']:+.2f} | {row['missed_gains']} / {row['real_gains']} | "
            f"{row['false_gains']} / {row['real_losses']} | {row['best_by_psnr']} | {row['best_by_judge']} | {row['policy_calls']} |"
        )
    d = dark_summary
    lines += [
        "",
        f"One step: the best single tool by PSNR gains {report['best_single_tool_gain']:+.2f} dB on average, the judge's choice "
        f"{report['judge_single_tool_gain']:+.2f} dB; the shipped policy's whole episode {report['policy_gain']:+.2f} dB.",
        "",
        f"**Darkness** ({d['images']} inputs with `dark` in their chain): the best of the three brightening tools gains "
        f"{d['best_brightening_gain']:+.2f} dB on average, the judge predicts {d['its_predicted_gain']:+.2f} dB for it and scores it as a loss on "
        f"{d['predicted_as_loss']} of {d['images']}; the shipped policy calls a brightening tool {d['policy_brightening_calls']} times on them "
        f"and gains {d['policy_gain']:+.2f} dB.",
    ]
    out = Path(args.out)
    atomic_write_bytes(out / "judge_blind_spots.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(out / "judge_blind_spots.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
