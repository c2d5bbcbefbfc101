"""Export a registered policy as a versioned entry of a Triton model repository.

Layout written (Triton's, with the python backend loading ``<model_dir>/<version>/policy/``)::

    REPO/restore_r1_policy/config.pbtxt              copied from triton_models/restore_r1_policy/ if present
    REPO/restore_r1_policy/VERSION/model.py          copied likewise
    REPO/restore_r1_policy/VERSION/policy/policy.safetensors
    REPO/restore_r1_policy/VERSION/policy/policy.json

VERSION is the registry's version number. This module does not import the Triton model code:
it copies those files when the source folder has them, and otherwise writes only the policy
files and says so in :attr:`ExportResult.notes`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: The Triton model that serves policies.
TRITON_MODEL_NAME = "restore_r1_policy"
#: Environment variable naming the Triton model source folder (holding config.pbtxt / model.py).
TRITON_SOURCE_ENV = "RESTORE_R1_TRITON_MODELS"
#: Default source: ``triton_models/`` of the source tree (also copied into the project image).
DEFAULT_TRITON_SOURCE = Path(__file__).resolve().parents[2] / "triton_models"
CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.py"
POLICY_SUBDIR = "policy"


@dataclass
class ExportResult:
    """What :func:`export_triton_entry` wrote.

    Attributes:
        model_dir: ``REPO/restore_r1_policy``.
        version_dir: ``REPO/restore_r1_policy/VERSION``.
        files: every file written, relative to the repository root.
        notes: what was left out and why.
    """

    model_dir: Path
    version_dir: Path
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def triton_source_dir(source: str | os.PathLike | None = None) -> Path:
    """``source``, else ``$RESTORE_R1_TRITON_MODELS``, else :data:`DEFAULT_TRITON_SOURCE`; then ``/restore_r1_policy``."""
    root = Path(source or os.environ.get(TRITON_SOURCE_ENV) or DEFAULT_TRITON_SOURCE)
    return root / TRITON_MODEL_NAME


def _find_model_py(src: Path) -> Path | None:
    if (src / MODEL_FILE).is_file():
        return src / MODEL_FILE
    versions = sorted((p for p in src.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) if src.is_dir() else []
    for version in versions:
        if (version / MODEL_FILE).is_file():
            return version / MODEL_FILE
    return None


def export_triton_entry(
    policy_dir: str | os.PathLike, repository: str | os.PathLike, version: int, triton_source: str | os.PathLike | None = None
) -> ExportResult:
    """Writes version ``version`` of the ``restore_r1_policy`` model into a local Triton model repository.

    The version folder is assembled in a temporary folder and renamed into place, so Triton
    never sees a partial version; an existing folder of that version is replaced.

    Args:
        policy_dir: a policy folder (``policy.json`` + ``policy.safetensors``).
        repository: the model repository's root folder (created).
        version: Triton version number, ≥ 1 (the registry version).
        triton_source: folder holding ``restore_r1_policy/`` (see :func:`triton_source_dir`).

    Raises:
        ValueError: ``version`` < 1, or ``policy_dir`` is a VLM planner (served in-process only).
        WeightsNotFoundError / ChecksumError: ``policy_dir`` is not a valid policy.
    """
    from restore_r1.agent.inference import planner_kind
    from restore_r1.agent.policy import CONFIG_FILE as POLICY_JSON
    from restore_r1.agent.policy import WEIGHTS_FILE, load_policy

    if isinstance(version, bool) or int(version) != version or version < 1:
        raise ValueError(f"Triton version {version!r} must be an integer >= 1")
    if planner_kind(policy_dir) != "mlp":
        raise ValueError(f"{policy_dir} is a VLM planner; the Triton repository serves MLP policies only (docs/vlm.md: restore in-process)")
    load_policy(policy_dir)  # refuse a corrupt policy before it reaches serving
    repo = Path(repository)
    model_dir = repo / TRITON_MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    src = triton_source_dir(triton_source)
    result = ExportResult(model_dir=model_dir, version_dir=model_dir / str(int(version)))
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=model_dir))
    try:
        (tmp / POLICY_SUBDIR).mkdir()
        for name in (WEIGHTS_FILE, POLICY_JSON):
            shutil.copyfile(Path(policy_dir) / name, tmp / POLICY_SUBDIR / name)
        model_py = _find_model_py(src)
        if model_py is not None:
            shutil.copyfile(model_py, tmp / MODEL_FILE)
        else:
            result.notes.append(f"no {MODEL_FILE} under {src}: only the policy files were written; add the Triton model code")
        if result.version_dir.exists():
            shutil.rmtree(result.version_dir)
        os.replace(tmp, result.version_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if (src / CONFIG_FILE).is_file():
        from restore_r1.images import atomic_write_bytes

        atomic_write_bytes(model_dir / CONFIG_FILE, (src / CONFIG_FILE).read_bytes())
    elif not (model_dir / CONFIG_FILE).is_file():
        result.notes.append(f"no {CONFIG_FILE} under {src}: the entry has none (Triton needs one unless it auto-completes the config)")
    result.files = sorted(p.relative_to(repo).as_posix() for p in model_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    return result


def upload_repository_entry(local_repo: str | os.PathLike, destination: str, version: int, endpoint_url: str | None = None) -> list[str]:
    """Copies ``restore_r1_policy/`` (config + that version) from a local repository to ``destination``.

    ``destination`` is a local folder or ``s3://bucket/prefix``. On S3 the policy files go first,
    ``model.py`` after them and ``config.pbtxt`` last, so a polling Triton finds a loadable version.

    Returns:
        the destination URIs written.
    """
    from restore_r1.registry.stores import open_store

    local = Path(local_repo) / TRITON_MODEL_NAME
    store = open_store(destination, endpoint_url=endpoint_url)
    version_files = sorted(p for p in (local / str(version)).rglob("*") if p.is_file())
    ordered = [p for p in version_files if p.name != MODEL_FILE] + [p for p in version_files if p.name == MODEL_FILE]
    if (local / CONFIG_FILE).is_file():
        ordered.append(local / CONFIG_FILE)
    written = []
    for path in ordered:
        key = path.relative_to(local.parent).as_posix()
        store.upload(key, path)
        written.append(store.uri(key))
    return written
