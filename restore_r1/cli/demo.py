"""``restore-r1 demo``: degrade held-out photos and restore them with the shipped policy."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "restore a few degraded held-out photos with the shipped policy and print the result"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="where images and contact_sheet.png go (default demo_out)")
    parser.add_argument("--policy", help="policy folder or registry URI (default: the shipped policy)")


def run(args: argparse.Namespace) -> int:
    from restore_r1.demo import format_rows, run_demo

    rows = run_demo(args.out, policy=args.policy)
    print(format_rows(rows))
    print(f"before/after contact sheet: {args.out}/contact_sheet.png")
    return 0
