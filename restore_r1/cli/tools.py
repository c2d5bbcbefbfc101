"""``restore-r1 tools``: the tool catalogue, and one tool run on images.

    restore-r1 tools [list] [--json] [--available]
    restore-r1 tools run TOOL IMG... -o OUT [--overwrite] [--json] [--max-pixels N]
    restore-r1 tools export-onnx TOOL -o FILE.onnx [--overwrite]

``list`` (the default) prints a table, or JSON with ``--json`` (each tool with the reason it is
unavailable, if it is). ``run`` applies one catalogue tool to each image (files or folders) and
writes the results atomically: ``-o`` follows ``restore-r1 restore`` (a file for one image and an
image suffix, else a folder of ``<stem>.png``; existing outputs are refused unless
``--overwrite``). Per image it prints the seconds the tool took; ``--json`` prints one object per
image (``input``, ``output``, ``tool``, ``seconds``). An unknown tool, or one that cannot run
here, is a one-line error naming close matches or the reason; bad images are listed at the end
(exit 1). ``export-onnx`` writes a neural tool's network as ONNX for Triton's onnxruntime backend,
checked against torch first (:mod:`restore_r1.tools.onnx_export`; the ``onnx`` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from restore_r1.cli.common import add_output_arguments, expand_inputs, image_batch, output_targets

NAME = "tools"
HELP = "list the restoration tools (target, licence, whether they run here) or run one on images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per tool")
    parser.add_argument("--available", action="store_true", help="only tools that can run here")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list the catalogue (the default)", description="list the catalogue")
    # SUPPRESS: given after ``list`` they set the value, absent they leave the parent's default.
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print a JSON list, one object per tool")
    listing.add_argument("--available", action="store_true", default=argparse.SUPPRESS, help="only tools that can run here")
    runner = actions.add_parser("run", help="run one tool on images", description="run one catalogue tool on images")
    runner.add_argument("tool", metavar="TOOL", help="tool name (see `restore-r1 tools`)")
    runner.add_argument("inputs", nargs="+", metavar="IMG", help="image files or folders")
    add_output_arguments(runner, what="tool outputs")
    runner.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per image on stdout")
    runner.add_argument("--max-pixels", type=int, help="refuse larger images (default: $RESTORE_R1_MAX_PIXELS or 64 MP)")
    export = actions.add_parser("export-onnx", help="export a neural tool's network to ONNX", description="export a neural tool's network to ONNX")
    export.add_argument("tool", metavar="TOOL", help="a neural tool with an exportable network (the DnCNN denoisers)")
    export.add_argument("-o", "--out", required=True, metavar="FILE", help="the .onnx file to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    for sub in (listing, runner, export):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    if args.action == "run":
        return run_tool(args)
    if args.action == "export-onnx":
        return export_onnx(args)
    return list_catalogue(args)


def list_catalogue(args: argparse.Namespace) -> int:
    from restore_r1.tools import list_tools, tool_info

    infos = [tool_info(t) for t in list_tools(available_only=args.available)]
    if args.json:
        print(json.dumps(infos, indent=1, ensure_ascii=False))
        return 0
    cols = ("name", "degradation", "paper", "backend", "licence", "available")
    rows = [[str(i[c]) if c != "paper" and c != "available" else ("yes" if i[c] else "no") for c in cols] for i in infos]
    widths = [max(len(c), *(len(r[k]) for r in rows)) if rows else len(c) for k, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    missing = [i for i in infos if not i["available"]]
    if missing:
        print(f"\n{len(missing)} tool(s) unavailable; `restore-r1 tools --json` gives each reason.")
    return 0


def run_tool(args: argparse.Namespace) -> int:
    from restore_r1.errors import UnavailableError
    from restore_r1.images import write_image
    from restore_r1.tools import get_tool

    tool = get_tool(args.tool)  # unknown: KeyError with close matches -> one line, exit 2
    ok, reason = tool.availability()
    if not ok:
        raise UnavailableError(f"tool {tool.name!r} is unavailable: {reason}")
    paths = expand_inputs(args.inputs)
    targets = output_targets(paths, args.out, overwrite=args.overwrite)

    def work(path: Path, target: Path, img) -> None:
        start = time.perf_counter()
        out = tool(img)
        seconds = time.perf_counter() - start
        write_image(target, out, overwrite=args.overwrite)
        if args.json:
            print(json.dumps({"input": str(path), "output": str(target), "tool": tool.name, "seconds": seconds}), flush=True)
        else:
            print(f"{path}: {tool.name} {seconds:.3f} s -> {target}", flush=True)

    failures = image_batch(paths, targets, args.max_pixels, work)
    return failures.report(len(paths))


def export_onnx(args: argparse.Namespace) -> int:
    from restore_r1.tools.onnx_export import export_onnx as export

    if not str(args.out).endswith(".onnx"):
        raise ValueError(f"-o {args.out}: name the file with the .onnx suffix")
    path, worst = export(args.tool, args.out, overwrite=args.overwrite)
    print(f"{args.tool}: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB; onnxruntime vs torch max diff {worst:.1e})")
    return 0
