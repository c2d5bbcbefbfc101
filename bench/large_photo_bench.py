"""A 12-megapixel photo through the shipped agent: does it finish, how long, where the time goes.

Builds one degraded photo of ``--mp`` megapixels (astronaut from skimage.data resized to 4:3 and
degraded by case ``--case``, seeded), restores it in-process with the shipped default policy
(``Agent.restore``, exactly what ``restore-r1 restore`` runs) and writes ``large_photo.json`` and
``large_photo.md``: the tools chosen, the total seconds, seconds per part (each tool, the judge,
the encoder, the policy) and the peak resident memory.

    .venv/bin/python bench/large_photo_bench.py --out bench/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from restore_r1.agent.inference import Agent
from restore_r1.degradations import apply_case
from restore_r1.images import atomic_write_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--mp", type=float, default=12.0, help="megapixels of the photo (4:3)")
    parser.add_argument("--case", type=int, default=4, help="degradation case (default 4: noise + JPEG)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    w = round((args.mp * 1e6 * 4 / 3) ** 0.5)
    h = round(w * 3 / 4)
    clean = cv2.resize(skimage.data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC)
    degraded, _ = apply_case(args.case, clean, np.random.default_rng(args.seed))
    agent = Agent.load(None)
    result = agent.restore(degraded, progress=sys.stderr.isatty())
    report = {
        "command": "python bench/large_photo_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, OpenCV threads {cv2.getNumThreads()}",
        "width": w,
        "height": h,
        "case": args.case,
        "tools": result.tools,
        "seconds": result.seconds,
        "timings": result.timings,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out = Path(args.out)
    atomic_write_bytes(out / "large_photo.json", (json.dumps(report, indent=1) + "\n").encode())
    rows = sorted(result.timings.items(), key=lambda kv: -kv[1])
    md = [
        "# A 12-megapixel photo through the shipped agent",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']} (other jobs may share the cores)",
        "",
        f"{w}×{h} ({w * h / 1e6:.1f} MP), astronaut degraded by case {args.case}, restored in-process by the shipped default policy "
        f"(what `restore-r1 restore` runs): **{result.seconds:.1f} s**, tools {' → '.join(result.tools) or '(none)'}, "
        f"peak resident memory {report['peak_rss_mib']:.0f} MiB.",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
        *(f"| {k.removeprefix('tool:')} | {v:.2f} | {100 * v / result.seconds:.0f} % |" for k, v in rows),
        "",
    ]
    atomic_write_bytes(out / "large_photo.md", "\n".join(md).encode())
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
