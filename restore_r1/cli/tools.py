"""``restore-r1 tools``: lists the tool catalogue (a table, or JSON with ``--json``)."""

from __future__ import annotations

import argparse
import json

NAME = "tools"
HELP = "list the restoration tools, their target, licence and whether they can run here"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per tool")
    parser.add_argument("--available", action="store_true", help="only tools that can run here")


def run(args: argparse.Namespace) -> int:
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
