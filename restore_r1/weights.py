"""Finding model weights: explicit path -> cache directory from an env var -> default cache ->
the copy shipped inside the package, when there is one.

Nothing is ever downloaded here and nothing is replaced by random weights: a missing file is a
:class:`WeightsNotFoundError` that names every place looked at and how to supply the file.
Registry and S3 URIs are resolved by :mod:`restore_r1.registry` once it exists (pipeline issue).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from restore_r1.errors import ChecksumError, WeightsNotFoundError
from restore_r1.images import sha256_file

#: Folder holding weights files, laid out as ``<dir>/<WeightSpec.filename>``.
WEIGHTS_DIR_ENV = "RESTORE_R1_WEIGHTS"
#: Used when ``$RESTORE_R1_WEIGHTS`` is unset.
DEFAULT_WEIGHTS_DIR = Path.home() / ".cache" / "restore-r1" / "weights"


@dataclass(frozen=True)
class WeightSpec:
    """One weights file a model needs.

    Attributes:
        filename: path relative to the weights folder, e.g. ``"restormer/deraining.pt"``.
        source: where its authors publish it (for the error message), or how to produce it.
        sha256: expected hex digest, or ``None`` when releases differ (user exports).
        licence: the weights' licence as published by their authors.
        packaged: the copy shipped inside this package (looked at last), if any.
    """

    filename: str
    source: str
    sha256: str | None = None
    licence: str = "see source"
    packaged: Path | None = None


def weights_dir() -> Path:
    """``$RESTORE_R1_WEIGHTS`` when set, else ``~/.cache/restore-r1/weights``."""
    raw = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(raw).expanduser() if raw else DEFAULT_WEIGHTS_DIR


def candidate_paths(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> list[Path]:
    """Where ``spec`` is looked for, in order."""
    paths = [Path(explicit).expanduser()] if explicit else []
    paths.append(weights_dir() / spec.filename)
    if spec.packaged is not None:
        paths.append(Path(spec.packaged))
    return paths


def find_weights(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> Path | None:
    """The first existing candidate path, or ``None``."""
    for path in candidate_paths(spec, explicit):
        if path.is_file():
            return path
    return None


def missing_message(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> str:
    """One line saying which file is missing, where it was looked for and how to supply it."""
    looked = ", ".join(str(p) for p in candidate_paths(spec, explicit))
    return (
        f"weights file {spec.filename!r} not found (looked in {looked}); "
        f"put it at {weights_dir() / spec.filename} or set ${WEIGHTS_DIR_ENV} to the folder holding it "
        f"(source: {spec.source})"
    )


def resolve_weights(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> Path:
    """Returns the weights file for ``spec``, checked against its sha256 when one is recorded.

    Raises:
        WeightsNotFoundError: no candidate exists.
        ChecksumError: the file's digest differs from ``spec.sha256``.
    """
    path = find_weights(spec, explicit)
    if path is None:
        raise WeightsNotFoundError(missing_message(spec, explicit))
    if spec.sha256 is not None:
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise ChecksumError(f"{path}: sha256 {digest} differs from the expected {spec.sha256}; the file is corrupt or a different release")
    return path
