"""The ``restore-r1`` command line: one sub-command per module in ``COMMANDS``.

Each command module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and stays a thin shell over the library. Errors become one line on stderr and a non-zero exit
code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from restore_r1 import __version__

#: Command modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("data", "synth", "tools", "weights", "score", "train", "restore", "evaluate", "demo", "registry")

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1  # the command ran, but some inputs failed (listed at the end)
EXIT_ERROR = 2  # the command could not run (bad arguments, bad input, missing weights)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; only the command named in ``argv`` (if any) gets its options built,
    so ``restore-r1 tools`` does not pay for importing what ``restore-r1 train`` needs."""
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="restore-r1", description="Restore-R1: efficient image restoration agents.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        module = importlib.import_module(f"restore_r1.cli.{module_name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        if chosen is None or chosen == module.NAME:
            module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return int(args._run(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("restore-r1: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the edge: one clear line, traceback only with --debug
        if debug:
            raise
        print(f"restore-r1 {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def one_line(exc: BaseException) -> str:
    """An exception as one line (KeyError's quotes removed)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(str(text).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
