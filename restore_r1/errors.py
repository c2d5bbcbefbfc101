"""Typed errors. Each carries the bad value in its message; the CLI prints it as one line."""

from __future__ import annotations


class RestoreR1Error(Exception):
    """Base class of every error this library raises on purpose."""


class ImageError(RestoreR1Error, ValueError):
    """An input image that cannot be used (unreadable, truncated, wrong depth, too small/large)."""


class WeightsNotFoundError(RestoreR1Error, FileNotFoundError):
    """A model's weights file is absent. The message names the path and how to supply it."""


class ChecksumError(RestoreR1Error, ValueError):
    """A file's sha256 differs from the one recorded for it."""


class UnavailableError(RestoreR1Error, RuntimeError):
    """A catalogue entry (tool, metric, judge) that cannot run here; the message says why."""


class CheckpointError(RestoreR1Error, ValueError):
    """A weights file that cannot serve a tool: not a checkpoint, a pickle that would run code,
    an architecture no loader knows or another tool's network. The message names the file."""
