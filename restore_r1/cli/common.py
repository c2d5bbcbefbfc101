"""Helpers shared by the command modules."""

from __future__ import annotations

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


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be ≥ {low}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    import argparse

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
        import argparse

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
