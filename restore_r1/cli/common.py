"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BatchFailures:
    """Collects per-item failures so a batch command goes on and lists them at the end."""

    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, item: str, exc: BaseException) -> None:
        from restore_r1.cli import one_line

        message = one_line(exc)
        # ImageError messages already start with the path; avoid "x.png: x.png: ...".
        if not message.startswith(item):
            message = f"{item}: {message}"
        self.failures.append((item, message))
        print(f"error: {message}", file=sys.stderr)

    def report(self, total: int) -> int:
        """Prints the summary of failed items; returns the exit code (0 when none failed)."""
        if not self.failures:
            return 0
        print(f"{len(self.failures)} of {total} item(s) failed:", file=sys.stderr)
        for _, message in self.failures:
            print(f"  {message}", file=sys.stderr)
        return 1


def image_batch(paths, targets, max_pixels, work) -> BatchFailures:
    """Runs ``work(path, target, img)`` on each readable input; a failing item is reported and
    the batch goes on. Two inputs that would write the same target are refused.

    Returns:
        The failures (call ``.report(len(paths))`` for the exit code).
    """
    from restore_r1.images import read_image

    failures = BatchFailures()
    used: set = set()
    for path, target in zip(paths, targets, strict=True):
        try:
            img = read_image(path, max_pixels=max_pixels)
            if target in used:
                raise ValueError(f"another input already wrote {target}; rename one of them")
            used.add(target)
            work(path, target, img)
        except Exception as exc:  # batch edge: report, go on with the next image
            failures.add(str(path), exc)
    return failures


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be ≥ {low}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = _int_at_least(text, 1)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def name_list(text: str) -> list[str]:
    """argparse type: comma-separated names, blanks dropped."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing")
    return names


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given (a missing one is reported when it is read); folders replaced by their
    image files, sorted by name.

    Raises:
        ValueError: the items name no image at all (e.g. only empty folders).
    """
    from restore_r1.images import IMAGE_SUFFIXES, list_images

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        paths.extend(list_images(path) if path.is_dir() else [path])
    if not paths:
        raise ValueError(f"no images found in {', '.join(items)} (suffixes {', '.join(IMAGE_SUFFIXES)})")
    return paths


def add_output_arguments(parser: argparse.ArgumentParser, what: str = "results") -> None:
    """``-o OUT`` and ``--overwrite`` with the semantics of :func:`output_targets`."""
    parser.add_argument(
        "-o",
        "--out",
        required=True,
        metavar="OUT",
        help=f"where the {what} go: a file when OUT ends in an image suffix (.png, .jpg, ...; the format follows it) "
        "and exactly one image is given, else a folder of <input stem>.png files; "
        "an image suffix with several images is an error",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")


def output_targets(inputs: list[Path], out: str, overwrite: bool = False) -> list[Path]:
    """Where each input's result is written, checked before any work is done.

    ``out`` is a file when it ends in an image suffix (:data:`restore_r1.images.IMAGE_FORMATS`)
    and is not an existing folder; then exactly one input is allowed. Otherwise ``out`` is a
    folder and input ``x/name.jpg`` goes to ``out/name.png``.

    Args:
        inputs: the expanded input files (:func:`expand_inputs`).
        out: the ``-o`` value.
        overwrite: allow targets that exist already.

    Returns:
        One target per input, in order (two inputs with the same stem share a target; the
        command refuses the second).

    Raises:
        ValueError: a file ``out`` with several inputs, or a folder ``out`` that is a file.
        FileExistsError: a target exists and ``overwrite`` is False; the message names it.
    """
    from restore_r1.images import IMAGE_FORMATS

    out_path = Path(out)
    if out_path.suffix.lower() in IMAGE_FORMATS and not out_path.is_dir():
        if len(inputs) != 1:
            raise ValueError(f"-o {out} names one image file but {len(inputs)} images were given; give a folder instead (e.g. -o {out_path.with_suffix('')})")
        targets = [out_path]
    else:
        if out_path.exists() and not out_path.is_dir():
            raise ValueError(f"-o {out} is an existing file without an image suffix ({', '.join(IMAGE_FORMATS)}); give a folder")
        targets = [out_path / f"{p.stem}.png" for p in inputs]
    if not overwrite:
        existing = list(dict.fromkeys(t for t in targets if os.path.lexists(t)))
        if existing:
            more = f" (and {len(existing) - 1} more output(s))" if len(existing) > 1 else ""
            raise FileExistsError(f"{existing[0]} already exists{more}; pass --overwrite to replace")
    return targets
