"""Bench of the agent (issue: the agent, §7): the trained policy against the baselines.

Runs ``restore_r1.evaluate`` on the bundled HELD-OUT photos (never used in training) over all 15
cases, then checks the targets and writes ``agent.json`` and ``agent.md`` to ``--out``:

* the policy beats ``random`` and ``fixed`` on mean PSNR and on mean SSIM;
* its mean PSNR is at most 0.5 dB below ``exploration`` (or above it), with at most a quarter of
  exploration's tool calls and a quarter of its seconds per image;
* the share of the ``oracle``'s PSNR gain over ``input`` that the policy recovers;
* the default policy's training time (from its training log).

    .venv/bin/python bench/agent_bench.py --out bench/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

from restore_r1.images import atomic_write_bytes
from restore_r1.degradations import parse_cases
from restore_r1.evaluate import EvalConfig, evaluate

#: Where the default policy's training log is kept (committed beside the policy).
TRAIN_LOG = Path(__file__).resolve().parent.parent / "restore_r1" / "data" / "default_policy" / "train_log.jsonl"


def check_targets(summary: dict) -> list[dict]:
    """The issue's targets as rows {target, value, met}."""
    p, r, f, e = (summary.get(m) for m in ("policy", "random", "fixed", "exploration"))
    rows = []
    if p and r:
        rows.append({"target": "policy PSNR > random PSNR", "value": f"{p['psnr']:.2f} vs {r['psnr']:.2f}", "met": p["psnr"] > r["psnr"]})
        rows.append({"target": "policy SSIM > random SSIM", "value": f"{p['ssim']:.3f} vs {r['ssim']:.3f}", "met": p["ssim"] > r["ssim"]})
    if p and f:
        rows.append({"target": "policy PSNR > fixed PSNR", "value": f"{p['psnr']:.2f} vs {f['psnr']:.2f}", "met": p["psnr"] > f["psnr"]})
        rows.append({"target": "policy SSIM > fixed SSIM", "value": f"{p['ssim']:.3f} vs {f['ssim']:.3f}", "met": p["ssim"] > f["ssim"]})
    if p and e:
        gap = p["psnr"] - e["psnr"]
        rows.append({"target": "policy PSNR >= exploration PSNR - 0.5 dB", "value": f"{gap:+.2f} dB", "met": gap >= -0.5})
        calls = p["tool_calls"] / e["tool_calls"] if e["tool_calls"] else float("inf")
        rows.append({"target": "policy tool calls <= 1/4 of exploration's", "value": f"{p['tool_calls']:.2f} vs {e['tool_calls']:.2f} ({calls:.3f}×)", "met": calls <= 0.25})
        secs = p["seconds"] / e["seconds"] if e["seconds"] else float("inf")
        rows.append({"target": "policy seconds <= 1/4 of exploration's", "value": f"{p['seconds']:.3f} vs {e['seconds']:.3f} s ({secs:.3f}×)", "met": secs <= 0.25})
    return rows


def training_time() -> dict | None:
    """Total seconds and updates of the default policy's training, from its log."""
    if not TRAIN_LOG.is_file():
        return None
    records = [json.loads(line) for line in TRAIN_LOG.read_text().splitlines() if line.strip()]
    return {"updates": len(records), "seconds": sum(r["seconds"] for r in records)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cases", default="1-15")
    parser.add_argument("--per-case", type=int, default=1)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--oracle-depth", type=int, default=2)
    parser.add_argument("--policy", default=None, help="default: the shipped policy")
    parser.add_argument("--work", default="runs/agent_bench", help="evaluation folder (resumable)")
    args = parser.parse_args(argv)

    config = EvalConfig(cases=parse_cases(args.cases), per_case=args.per_case, seed=args.seed, crop=args.crop,
                        oracle_depth=args.oracle_depth, policy=args.policy)
    start = time.perf_counter()
    results = evaluate(config, args.work)
    wall = time.perf_counter() - start
    targets = check_targets(results["summary"])
    train = training_time()
    report = {
        "command": "python bench/agent_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "wall_seconds": wall,
        "targets": targets,
        "oracle_gain_share": results.get("oracle_gain_share"),
        "training": train,
        "results": results,
    }
    out = Path(args.out)
    atomic_write_bytes(out / "agent.json", json.dumps(report, indent=2).encode())
    md = [
        "# Agent bench: the trained policy against the baselines",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}; evaluation wall time {wall:.0f} s  ",
        f"Held-out photos (never used in training), all {len(config.cases)} cases, {config.per_case} per photo and case, "
        f"{config.crop}-px crops, seed {config.seed}; judge `{config.judge}`; oracle depth {config.oracle_depth}.",
        "",
        "## Targets",
        "",
        "| target | value | met |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in targets],
        "",
    ]
    if report["oracle_gain_share"] is not None:
        md += [f"The policy recovers **{100 * report['oracle_gain_share']:.1f}%** of the oracle's PSNR gain over the input "
               f"(the oracle reads the clean image and searches every sequence of up to {config.oracle_depth} tools).", ""]
    if train:
        md += [f"Default policy training: {train['updates']} updates in {train['seconds'] / 60:.1f} min (sum of the logged update times).", ""]
    tables = (Path(args.work) / "results.md").read_text().split("\n", 2)[2]
    md += [tables]
    atomic_write_bytes(out / "agent.md", "\n".join(md).encode())
    print("\n".join(md[: 12 + len(targets)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
