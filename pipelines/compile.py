"""Compiles the pipelines to the YAML that the KFP UI uploads.

    python -m pipelines.compile [--pipeline training|batch|all] [--out FILE.yaml] [--image REF]

``training`` (the default) is ``restore_r1_training`` -> pipelines/restore_r1_training.yaml;
``batch`` is ``restore_r1_batch`` -> pipelines/restore_r1_batch.yaml; ``all`` writes both
(``--out`` is then not allowed).

``--image`` compiles with another project image than the pinned one (components/image.py).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The committed, uploadable pipeline file of the training pipeline.
DEFAULT_OUT = HERE / "restore_r1_training.yaml"
#: Each pipeline: (module, function, committed YAML).
PIPELINES = {
    "training": ("pipelines.restore_r1_training", "restore_r1_training", DEFAULT_OUT),
    "batch": ("pipelines.restore_r1_batch", "restore_r1_batch", HERE / "restore_r1_batch.yaml"),
}


#: A header line of the compiled file that shows a parameter's default, e.g. ``#    x: dict [Default: {...}]``.
_DEFAULT_LINE = re.compile(r"^(#\s+\w+: \w+ \[Default: )(.*)(\])$")


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _stable_header(text: str) -> str:
    """Sorts the keys of dict defaults in the header comments (KFP prints them in protobuf map
    order, which changes from run to run), so the same pipeline always compiles to the same bytes."""
    lines = []
    for line in text.split("\n"):
        match = _DEFAULT_LINE.match(line) if line.startswith("#") else None
        if match:
            try:
                line = f"{match.group(1)}{_sorted(ast.literal_eval(match.group(2)))!r}{match.group(3)}"
            except (ValueError, SyntaxError):
                pass  # not a Python literal: leave the line as KFP wrote it
        lines.append(line)
    return "\n".join(lines)


def compile_pipeline(out: str | os.PathLike | None = None, pipeline: str = "training") -> Path:
    """Writes the compiled ``pipeline`` (a key of :data:`PIPELINES`) to ``out`` (default: its
    committed file), atomically, and returns its path."""
    import importlib
    import tempfile

    from kfp import compiler

    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
    module, function, default_out = PIPELINES[pipeline]
    func = getattr(importlib.import_module(module), function)
    out = Path(out or default_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".yaml", dir=out.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(func, tmp)
        Path(tmp).write_text(_stable_header(Path(tmp).read_text()))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", choices=(*PIPELINES, "all"), default="training", help="which pipeline (default training)")
    parser.add_argument("--out", help="output YAML (default: the pipeline's committed file under pipelines/)")
    parser.add_argument("--image", help="project image reference (default: the one pinned in components/image.py)")
    args = parser.parse_args(argv)
    if args.image:
        from components.image import IMAGE_ENV

        if "components" in sys.modules:  # the image is read when the components are defined
            raise RuntimeError("--image must be given before the components are imported")
        os.environ[IMAGE_ENV] = args.image
    if args.pipeline == "all" and args.out:
        parser.error("--out names one file; with --pipeline all each pipeline goes to its committed file")
    for name in PIPELINES if args.pipeline == "all" else [args.pipeline]:
        print(compile_pipeline(args.out, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
