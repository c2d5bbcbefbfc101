"""``restore-r1 weights``: the neural tools' weights files: what each wants, and installing them.

    restore-r1 weights [list] [TOOL...] [--json]
    restore-r1 weights add FILE [--tool TOOL]
    restore-r1 weights pull TOOL|registry://NAME@REF [--registry LOCATION]

``list`` prints, per neural tool, the authors' file, where they publish it, where it goes (the
weights folder: ``$RESTORE_R1_WEIGHTS`` or ``~/.cache/restore-r1/weights``), its licence, loader
and call, and whether it is installed. ``add`` verifies a file (its sha256 when a published one
is known, the architecture spandrel detects, a forward pass on a small image) and installs it
atomically; without ``--tool`` the tool is the one whose architecture the file is. ``pull``
installs a version published with ``restore-r1 registry publish-tool`` (sha256-checked, then
verified the same way). A bad file is a one-line error and exit 2; nothing is installed.
"""

from __future__ import annotations

import argparse
import json

NAME = "weights"
HELP = "the neural tools' weights: what each wants and where it goes (list), verify and install a file (add), or pull one from the registry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="per tool: the file it wants, where to get it, where to put it (the default)")
    listing.add_argument("tools", nargs="*", metavar="TOOL", help="only these tools (default: every neural tool)")
    listing.add_argument("--json", action="store_true", help="a JSON list, one object per tool")
    add = actions.add_parser("add", help="verify a weights file and install it into the weights folder")
    add.add_argument("file", metavar="FILE", help="the authors' checkpoint (.pth/.safetensors) or a TorchScript export (.pt)")
    add.add_argument("--tool", metavar="TOOL", help="the tool it is for (default: detected from the architecture)")
    pull = actions.add_parser("pull", help="install a tool's weights published in the registry (restore-r1 registry publish-tool)")
    pull.add_argument("ref", metavar="TOOL|registry://NAME@REF", help="a tool name (its production version) or a registry URI")
    pull.add_argument("--registry", metavar="LOCATION", help="folder or s3://bucket/prefix (default $RESTORE_R1_REGISTRY)")
    pull.add_argument("--endpoint", metavar="URL", help="S3 endpoint URL, e.g. MinIO's")
    for sub in (listing, add, pull):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    if args.action == "add":
        return add_file(args)
    if args.action == "pull":
        return pull(args)
    if args.action in (None, "list"):
        return list_weights(args)
    raise ValueError(f"unknown weights action {args.action!r}")


def list_weights(args: argparse.Namespace) -> int:
    from restore_r1.tools import get_tool, list_tools, weights_info
    from restore_r1.weights import weights_dir

    tools = [get_tool(n) for n in getattr(args, "tools", [])] or [t for t in list_tools() if t.model is not None]
    infos = [weights_info(t) for t in tools]
    if getattr(args, "json", False):
        print(json.dumps(infos, indent=1, ensure_ascii=False))
        return 0
    print(f"weights folder: {weights_dir()} (set $RESTORE_R1_WEIGHTS to change it); install a file with `restore-r1 weights add FILE`\n")
    for i in infos:
        kind = "paper" if i["paper"] else "ours, not the paper's"
        state = f"installed: {i['installed']}" if i["installed"] else "missing"
        print(f"{i['name']}  [{i['degradation']}, {kind}, {i['loader']}{', ' + i['architecture'] if i['architecture'] else ''}]  {state}")
        wants = i["file"] if i["loader"] != "torchscript" else f"a TorchScript export of {i['file']}"
        print(f"  wants:   {wants} ({i['model']})")
        print(f"  from:    {i['url']}")
        print(f"  put at:  {i['path']}")
        unknown = (
            "none published: checked by architecture and a forward pass" if i["loader"] != "torchscript" else "none (your export): checked by a forward pass"
        )
        print(f"  sha256:  {i['sha256'] or unknown}")
        print(f"  licence: {i['licence']}; call: {i['call']}")
        if i["note"]:
            print(f"  note:    {i['note']}")
        if not i["available"] and i["installed"]:
            print(f"  unavailable: {i['reason']}")
    missing = sum(not i["installed"] for i in infos)
    print(f"\n{len(infos) - missing} of {len(infos)} weights file(s) installed.")
    return 0


def _report(target, served, verified) -> None:
    checked = "sha256 matches the published one" if verified.checked_sha256 else "no published sha256: architecture and a forward pass checked"
    print(f"installed {target} ({verified.architecture}, sha256 {verified.sha256[:12]}…, {checked})")
    print(f"available: {', '.join(t.name for t in served if t.available) or 'none'}")
    for t in served:
        if not t.available:
            print(f"still unavailable: {t.name}: {t.availability()[1]}")


def add_file(args: argparse.Namespace) -> int:
    from restore_r1.tools import add_weights

    _report(*add_weights(args.file, args.tool))
    return 0


def pull(args: argparse.Namespace) -> int:
    from restore_r1.registry import open_registry, pull_tool_weights

    registry = open_registry(args.registry, endpoint_url=args.endpoint)
    _report(*pull_tool_weights(args.ref, registry))
    return 0
