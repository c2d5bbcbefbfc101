"""Policy selection on the corpus's VALIDATION scenes (writes policy_selection.json / .md).

Candidate policies are compared here, never on the bundled held-out photos: each restores one
256-px crop per validation scene and case (6 scenes × 15 cases), and the table gives the mean
PSNR/SSIM against the input, the cases whose mean PSNR ends below the input, and the tool calls.

    .venv/bin/python bench/policy_selection.py NAME=POLICY_DIR ... --out bench/results
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import sys
from pathlib import Path

from clean_photos import clean_photo_check, summary_cells

from restore_r1.corpus import corpus_split_dir
from restore_r1.evaluate import EvalConfig, evaluate
from restore_r1.images import atomic_write_bytes


def summarise(work: Path) -> dict:
    records = [json.loads(line) for line in (work / "records.jsonl").read_text().splitlines() if line.strip()]
    inp = {r["id"]: r["metrics"] for r in records if r["method"] == "input"}
    pol = [r for r in records if r["method"] == "policy"]
    by_case = collections.defaultdict(list)
    for r in pol:
        by_case[r["case"]].append(r["metrics"]["psnr"] - inp[r["id"]]["psnr"])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "images": len(pol),
        "input_psnr": mean([m["psnr"] for m in inp.values()]),
        "input_ssim": mean([m["ssim"] for m in inp.values()]),
        "psnr": mean([r["metrics"]["psnr"] for r in pol]),
        "ssim": mean([r["metrics"]["ssim"] for r in pol]),
        "cases_below_input": sorted(c for c, d in by_case.items() if mean(d) < 0),
        "tool_calls": mean([r["tool_calls"] for r in pol]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="+", metavar="NAME=DIR", help="candidate policies")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--work", default="runs/policy_selection", help="evaluation folders (resumable), one per candidate")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows = {}
    for spec in args.policies:
        name, _, policy = spec.partition("=")
        config = EvalConfig(
            cases=list(range(1, 16)),
            images=str(corpus_split_dir("val")),
            crop=256,
            seed=args.seed,
            methods=("input", "policy"),
            metrics=("psnr", "ssim"),
            policy=policy,
            judge="relative",
        )
        work = Path(args.work) / name
        evaluate(config, work, progress=False)
        rows[name] = {"policy": policy, **summarise(work)}
        rows[name]["clean"] = clean_photo_check(policy, sorted(corpus_split_dir("val").iterdir()), per_photo=3, seed=args.seed)
    report = {
        "command": "python bench/policy_selection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }
    out = Path(args.out)
    atomic_write_bytes(out / "policy_selection.json", (json.dumps(report, indent=1) + "\n").encode())
    md = [
        "# Policy selection on the validation scenes",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}",
        "",
        "One 256-px crop per validation scene (Dune, EveningGlow, Kite, LadyBird, Path, Storm) and case; no held-out photo is used to choose.",
        "",
        "| candidate | policy | PSNR (input) | SSIM (input) | cases below input | tool calls |",
        "|---|---|---|---|---|---|",
        *(
            f"| {n} | `{r['policy']}` | {r['psnr']:.2f} ({r['input_psnr']:.2f}) | {r['ssim']:.3f} ({r['input_ssim']:.3f}) | "
            f"{len(r['cases_below_input'])} ({', '.join(map(str, r['cases_below_input'])) or '-'}) | {r['tool_calls']:.2f} |"
            for n, r in rows.items()
        ),
        "",
        "## Clean photos (nothing to restore: the right answer is STOP)",
        "",
        "Three clean 256-px crops per validation scene (`bench/clean_photos.py`).",
        "",
        "| candidate | tool calls | left untouched | SSIM to the photo | worst PSNR (dB) |",
        "|---|---|---|---|---|",
        *(f"| {n} | {summary_cells(r['clean'])} |" for n, r in rows.items()),
        "",
    ]
    atomic_write_bytes(out / "policy_selection.md", "\n".join(md).encode())
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
