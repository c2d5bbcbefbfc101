"""``restore-r1 evaluate``: the agent against the baselines on held-out synthetic images.

    restore-r1 evaluate [--images DIR] --cases 1-15 --per-case N --seed S [--crop PX]
                        --methods policy,exploration,random,fixed,oracle,input [--policy PATH] --out DIR

The images are degraded on the fly with the seed (held-out images never touch training). Writes
results.json, CSV and Markdown tables, and the two figures to --out; resumable.
"""

from __future__ import annotations

import argparse

from restore_r1.cli.common import name_list, non_negative_int, positive_int

NAME = "evaluate"
HELP = "evaluate the policy and the baselines on held-out synthetic images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from restore_r1.evaluate import ALL_METHODS, DEFAULT_METRICS

    parser.add_argument("--images", metavar="DIR", help="clean held-out images (default: the bundled held-out photos)")
    parser.add_argument("--cases", default="1-15", metavar="LIST", help="cases, e.g. 1,3,9-12 (default 1-15)")
    parser.add_argument("--per-case", type=positive_int, default=1, metavar="N", help="images per clean image and case (default 1)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S", help="synthesis seed (default 0)")
    parser.add_argument("--crop", type=positive_int, metavar="PX", help="random square crops of PX pixels")
    parser.add_argument("--methods", type=name_list, default=list(ALL_METHODS), metavar="LIST", help=f"default {','.join(ALL_METHODS)}")
    parser.add_argument("--metrics", type=name_list, default=list(DEFAULT_METRICS), metavar="LIST", help=f"default {','.join(DEFAULT_METRICS)}")
    parser.add_argument("--policy", help="policy folder (an MLP policy or a VLM planner) or registry URI (default: the shipped policy)")
    parser.add_argument("--judge", default="default", help="judge for exploration and reported scores")
    parser.add_argument("--tools", type=name_list, metavar="LIST", help="tools every method may use (default: the policy's)")
    parser.add_argument("--max-steps", type=positive_int, default=5, metavar="K", help="tool budget of random/exploration (default 5)")
    parser.add_argument("--oracle-depth", type=positive_int, default=2, metavar="D", help="oracle search depth (default 2)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from restore_r1.degradations import parse_cases
    from restore_r1.evaluate import EvalConfig, evaluate

    config = EvalConfig(
        cases=parse_cases(args.cases),
        per_case=args.per_case,
        seed=args.seed,
        crop=args.crop,
        methods=args.methods,
        metrics=args.metrics,
        max_steps=args.max_steps,
        oracle_depth=args.oracle_depth,
        images=args.images,
        policy=args.policy,
        judge=args.judge,
        tools=args.tools,
    )
    results = evaluate(config, args.out, progress=not args.no_progress)
    print(f"{'method':<12} {'PSNR':>7} {'SSIM':>7} {'calls':>6} {'s/img':>7}")
    for method, row in results["summary"].items():
        psnr = "–" if row.get("psnr") is None else f"{row['psnr']:.2f}"
        ssim = "–" if row.get("ssim") is None else f"{row['ssim']:.3f}"
        print(f"{method:<12} {psnr:>7} {ssim:>7} {row['tool_calls']:>6.2f} {row['seconds']:>7.3f}")
    print(f"results: {args.out}/results.md, results.json, *.csv, perception_distortion.png, qualitative.png")
    return 0
