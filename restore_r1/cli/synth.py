"""``restore-r1 synth``: build a paired data set of degraded / clean images (docs/method.md §2, §3).

    restore-r1 synth --out DIR [--images DIR | --split all|train|heldout]
                     [--cases 1-15] [--degradations NAME,NAME...]...
                     [--per-case N] [--seed S] [--crop PX] [--depth DIR]

Without ``--images`` the clean photos bundled with scikit-image are used (``--split`` picks the
training or held-out ones). ``--degradations noise,jpeg`` degrades with that chain, in that
order, instead of the 15 cases (repeat the flag for several chains; add ``--cases`` to get both).
Writes ``DIR/lq``, ``DIR/gt`` and ``DIR/manifest.jsonl``; re-running
into the same folder skips finished pairs. Unreadable images are listed at the end (exit 1); the
others are still processed.
"""

from __future__ import annotations

import argparse
import sys

from restore_r1 import DEGRADATION_TYPES
from restore_r1.cli.common import BatchFailures, non_negative_int, positive_int

NAME = "synth"
HELP = "synthesise degraded/clean image pairs for the 15 cases or chains of degradations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", metavar="DIR", help="folder of clean images (default: the bundled photos)")
    parser.add_argument(
        "--split",
        choices=("all", "train", "heldout"),
        default="all",
        help="which bundled photos to use when --images is not given (default: all)",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder (lq/, gt/, manifest.jsonl)")
    parser.add_argument("--cases", metavar="LIST", help="cases, e.g. 1,3,9-12 (default: 1-15, or none when --degradations is given)")
    parser.add_argument(
        "--degradations",
        action="append",
        metavar="LIST",
        help=f"an ordered comma list of degradations applied in that order, e.g. noise,jpeg; from {', '.join(DEGRADATION_TYPES)}; 'none' makes clean pairs (input = target); repeat for several chains",
    )
    parser.add_argument("--per-case", type=positive_int, default=1, metavar="N", help="pairs per image and case or chain (default: 1)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="S", help="global seed (default: 0)")
    parser.add_argument("--crop", type=positive_int, metavar="PX", help="random square crops of PX pixels (a shorter side is kept whole)")
    parser.add_argument("--depth", metavar="DIR", help="depth maps named after the images (.npy, .mat, .png) for haze")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from restore_r1.degradations import parse_cases, parse_degradations
    from restore_r1.synth import build_dataset

    chains = list(dict.fromkeys(parse_degradations(text) for text in args.degradations or []))
    cases = parse_cases(args.cases) if args.cases is not None else ([] if chains else parse_cases("all"))
    if args.images is not None and args.split != "all":
        raise ValueError("--split applies to the bundled photos; drop it or drop --images")
    summary = build_dataset(
        out_dir=args.out,
        images_dir=args.images,
        cases=cases,
        per_case=args.per_case,
        seed=args.seed,
        crop=args.crop,
        depth_dir=args.depth,
        progress=not args.no_progress,
        split=args.split,
        chains=chains,
    )
    failures = BatchFailures()
    for item, message in summary.failures:
        failures.add(item, ValueError(message))
    if summary.ignored:
        print(f"ignored {len(summary.ignored)} non-image file(s): {', '.join(summary.ignored)}", file=sys.stderr)
    print(
        f"synth: {summary.written} pair(s) written, {summary.skipped} already done, "
        f"{len(summary.failures)} of {summary.sources} image(s) failed; "
        f"{_recipes_text(cases, chains)} × {args.per_case} per image -> {summary.manifest}"
    )
    return failures.report(summary.sources)


def _recipes_text(cases: list[int], chains: list[tuple[str, ...]]) -> str:
    """E.g. ``"2 case(s)"``, ``"chain noise+jpeg"`` or ``"1 case(s) and chains dark, noise+jpeg"``."""
    from restore_r1.synth import chain_name

    parts = [f"{len(cases)} case(s)"] if cases else []
    if chains:
        parts.append(("chain " if len(chains) == 1 else "chains ") + ", ".join(chain_name(c) for c in chains))
    return " and ".join(parts)
