"""Bench of the agent (issue 9, "Policy v2"): the shipped policy against the baselines.

Runs ``restore_r1.evaluate`` on the bundled HELD-OUT photos (never used for training, fitting or
selection) over all 15 cases, then checks the targets and writes ``agent.json`` and ``agent.md``:

* the policy recovers >= 50 % of the PSNR oracle's gain over the input;
* it is not below its input on mean PSNR or SSIM in any setting, and below its input PSNR in at
  most 2 of the 15 cases;
* at most 1.5 tool calls per degradation present;
* within 0.3 dB of greedy exploration with the same judge, with at most 1/10 of its tool calls;
* judge agreement: of the policy's steps that its judge scored as gains, how many raised PSNR.

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

import numpy as np
from clean_photos import clean_photo_check, summary_cells

from restore_r1.cleanimages import load_clean, split_names
from restore_r1.degradations import parse_cases
from restore_r1.evaluate import EvalConfig, evaluate
from restore_r1.images import atomic_write_bytes
from restore_r1.judges import resolve_judge_name

#: Where the default policy's training log is kept (committed beside the policy).
TRAIN_LOG = Path(__file__).resolve().parent.parent / "restore_r1" / "data" / "default_policy" / "train_log.jsonl"


def check_targets(results: dict) -> list[dict]:
    """The issue's targets as rows {target, value, met} (issue 9, "Policy v2")."""
    from restore_r1.degradations import CASES

    summary = results["summary"]
    p, i, e, o = (summary.get(m) for m in ("policy", "input", "exploration", "oracle"))
    rows = []
    if p and i and o:
        share = results.get("oracle_gain_share")
        rows.append({"target": "policy recovers >= 50 % of the oracle's PSNR gain", "value": f"{100 * share:.1f} %", "met": share >= 0.5})
    if p and i:
        worse = [s for s, r in results["settings"].items() if r["policy"]["psnr"] < r["input"]["psnr"] or r["policy"]["ssim"] < r["input"]["ssim"]]
        rows.append({"target": "policy not below input on mean PSNR or SSIM in any setting", "value": ", ".join(worse) or "none below", "met": not worse})
        cases = [c for c, r in results["cases"].items() if r["policy"]["psnr"] < r["input"]["psnr"]]
        rows.append(
            {"target": "policy below input PSNR in at most 2 of the 15 cases", "value": f"{len(cases)} ({', '.join(cases) or '-'})", "met": len(cases) <= 2}
        )
        per_deg = np.mean([r["policy"]["tool_calls"] / len(CASES[int(c)].degradations) for c, r in results["cases"].items()])
        rows.append({"target": "at most 1.5 tool calls per degradation present", "value": f"{per_deg:.2f}", "met": bool(per_deg <= 1.5)})
    if p and e:
        gap = p["psnr"] - e["psnr"]
        rows.append({"target": "policy PSNR within 0.3 dB of exploration (same judge)", "value": f"{gap:+.2f} dB", "met": gap >= -0.3})
        calls = p["tool_calls"] / e["tool_calls"] if e["tool_calls"] else float("inf")
        rows.append(
            {
                "target": "policy tool calls <= 1/10 of exploration's",
                "value": f"{p['tool_calls']:.2f} vs {e['tool_calls']:.2f} ({calls:.3f}×)",
                "met": calls <= 0.1,
            }
        )
    return rows


def judge_agreement(config: EvalConfig, work: Path) -> dict:
    """Can the policy fool its judge? Replays each held-out policy trajectory and counts the steps
    where the judge's score rose, and of those, the steps where PSNR rose too."""
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.evaluate import held_out_pairs
    from restore_r1.metrics import psnr

    records = [json.loads(line) for line in (work / "records.jsonl").read_text().splitlines() if line.strip()]
    policy = {r["id"]: r for r in records if r["method"] == "policy"}
    tools = available_tool_map()
    judged_up = both_up = steps = 0
    for pair in held_out_pairs(config):
        rec = policy.get(pair.id)
        if rec is None:
            continue
        img, scores = pair.lq, rec["judge_scores"]
        for k, name in enumerate(rec["tools"]):
            out = tools[name](img)
            steps += 1
            if k + 1 < len(scores) and scores[k + 1] > scores[k]:
                judged_up += 1
                both_up += psnr(out, pair.gt) > psnr(img, pair.gt)
            img = out
    return {"steps": steps, "judge_up": judged_up, "judge_up_and_psnr_up": both_up, "share": both_up / judged_up if judged_up else float("nan")}


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
    parser.add_argument("--methods", default=None, help="comma list (default: all); runs into the same --work resume")
    parser.add_argument("--tools", default=None, help="comma list of tools every method may use (default: the policy's)")
    parser.add_argument("--judge", default="default", help="judge of the exploration baseline and the reported scores (default: the offline default)")
    args = parser.parse_args(argv)

    extra = {"methods": args.methods.split(",")} if args.methods else {}
    config = EvalConfig(
        cases=parse_cases(args.cases),
        per_case=args.per_case,
        seed=args.seed,
        crop=args.crop,
        oracle_depth=args.oracle_depth,
        policy=args.policy,
        tools=args.tools.split(",") if args.tools else None,
        judge=args.judge,
        **extra,
    )
    records = Path(args.work) / "records.jsonl"
    resumed = sum(1 for line in records.read_text().splitlines() if line.strip()) if records.is_file() else 0
    start = time.perf_counter()
    results = evaluate(config, args.work)
    wall = time.perf_counter() - start
    targets = check_targets(results)
    agreement = judge_agreement(config, Path(args.work))
    train = training_time()
    clean = clean_photo_check(args.policy, [(n, load_clean(n)) for n in split_names("heldout")], per_photo=4, size=config.crop, seed=args.seed)
    report = {
        "command": "python bench/agent_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "wall_seconds": wall,
        "targets": targets,
        "oracle_gain_share": results.get("oracle_gain_share"),
        "training": train,
        "judge_agreement": agreement,
        "clean_photos": clean,
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
        f"{config.crop}-px crops, seed {config.seed}; judge `{resolve_judge_name(config.judge)}`; oracle depth {config.oracle_depth}.",
        *(
            [
                f"Resumed: {resumed} of the {sum(int(r['images']) for r in results['summary'].values())} method runs were already in `{args.work}` (the evaluation resumes by image and method; "
                "the baselines do not depend on the policy), so the wall time covers the rest only."
            ]
            if resumed
            else []
        ),
        "",
        "## Targets",
        "",
        "| target | value | met |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in targets],
        "",
    ]
    if report["oracle_gain_share"] is not None:
        md += [
            f"The policy recovers **{100 * report['oracle_gain_share']:.1f}%** of the oracle's PSNR gain over the input "
            f"(the oracle reads the clean image and searches every sequence of up to {config.oracle_depth} tools).",
            "",
        ]
    md += [
        f"Judge agreement on the policy's own held-out steps: of {agreement['judge_up']} steps the judge scored as gains, "
        f"{agreement['judge_up_and_psnr_up']} raised PSNR ({100 * agreement['share']:.0f} %); {agreement['steps']} steps in all.",
        "",
    ]
    md += [
        "## Clean photos (nothing to restore: the right answer is STOP)",
        "",
        f"{clean['crops']} clean {config.crop}-px crops of the held-out photos (`bench/clean_photos.py`).",
        "",
        "| tool calls | left untouched | SSIM to the photo | worst PSNR (dB) |",
        "|---|---|---|---|",
        f"| {summary_cells(clean)} |",
        "",
    ]
    if train:
        md += [f"Default policy training: {train['updates']} updates in {train['seconds'] / 60:.1f} min (sum of the logged update times).", ""]
    tables = (Path(args.work) / "results.md").read_text().split("\n", 2)[2]
    md += [tables]
    atomic_write_bytes(out / "agent.md", "\n".join(md).encode())
    print("\n".join(md[: 12 + len(targets)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
