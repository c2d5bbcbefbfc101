"""``restore-r1 data``: the training corpus of natural photos (see :mod:`restore_r1.corpus`).

restore-r1 data fetch [--out DIR]     fetch it (idempotent); default $RESTORE_R1_CORPUS
restore-r1 data list [--out DIR]      the scenes, their split, source and licence
"""

from __future__ import annotations

import argparse
import sys

NAME = "data"
HELP = "fetch or list the training corpus of natural photos (train/val split by scene)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch", "list"), help="fetch the photos, or list them")
    parser.add_argument("--out", metavar="DIR", help="corpus folder (default: $RESTORE_R1_CORPUS or ~/.cache/restore-r1/corpus)")


def run(args: argparse.Namespace) -> int:
    from restore_r1 import corpus

    if args.action == "fetch":
        corpus.fetch_corpus(args.out, progress=lambda msg: print(msg, file=sys.stderr))
        return 0
    elif args.action == "list":
        entries = corpus.read_manifest(args.out)
        print(f"{'scene':<16} {'split':<5} {'package':<28} {'version':<14} licence")
        for e in entries:
            print(f"{e['scene']:<16} {e['split']:<5} {e['package']:<28} {e['version']:<14} {e['licence']}")
        return 0
    else:
        raise ValueError(f"unknown action {args.action!r}")
