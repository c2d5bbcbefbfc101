"""Helpers shared by the command modules."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


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
