"""The model registry that training publishes to and serving reads from.

Where it is: ``$RESTORE_R1_REGISTRY``, a local folder or ``s3://bucket/prefix`` (for MinIO set
``RESTORE_R1_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``, plus ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``). Unset, it is the local folder ``~/.cache/restore-r1/registry``.

Policies are named by URI::

    registry://NAME@production    the version the production alias points at
    registry://NAME@staging
    registry://NAME@7             version 7
    registry://NAME@latest        the highest version number
    registry://NAME               same as @production
    s3://bucket/path/to/policy/   a bare policy folder (policy.json + policy.safetensors) in S3

A tool's verified weights file is published as ``tool-<TOOL>`` (:mod:`restore_r1.registry.tool_weights`).

:func:`pull_policy` downloads into ``$RESTORE_R1_REGISTRY_CACHE`` (default
``~/.cache/restore-r1/registry-cache``), checks every file's sha256 against the version's
manifest, and returns the local folder. See :mod:`restore_r1.registry.core` for the layout and
the atomicity rules.
"""

from __future__ import annotations

import os
from pathlib import Path

from restore_r1.images import atomic_directory
from restore_r1.registry.core import (
    LATEST,
    STAGES,
    ArtifactFile,
    ModelVersion,
    OrphanedUpload,
    Registry,
    VersionNotFoundError,
    check_name,
    check_stage,
)
from restore_r1.registry.stores import (
    KeyNotFoundError,
    LocalStore,
    RegistryError,
    S3Store,
    StoreUnavailableError,
    open_store,
    parse_s3_uri,
)
from restore_r1.registry.tool_weights import TOOL_WEIGHTS_FORMAT, publish_tool_weights, pull_tool_weights, tool_model_name

__all__ = [
    "ArtifactFile",
    "KeyNotFoundError",
    "LATEST",
    "LocalStore",
    "ModelVersion",
    "OrphanedUpload",
    "POLICY_FORMAT",
    "Registry",
    "RegistryError",
    "S3Store",
    "STAGES",
    "StoreUnavailableError",
    "TOOL_WEIGHTS_FORMAT",
    "VersionNotFoundError",
    "check_name",
    "check_stage",
    "default_cache_dir",
    "open_registry",
    "parse_registry_uri",
    "publish_policy",
    "publish_tool_weights",
    "pull_policy",
    "pull_tool_weights",
    "registry_location",
    "tool_model_name",
]

#: Environment variable: the registry's location (folder or s3://bucket/prefix).
REGISTRY_ENV = "RESTORE_R1_REGISTRY"
#: Environment variable: where pulled versions are cached.
CACHE_ENV = "RESTORE_R1_REGISTRY_CACHE"
DEFAULT_REGISTRY_DIR = Path.home() / ".cache" / "restore-r1" / "registry"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "restore-r1" / "registry-cache"
URI_SCHEME = "registry://"
#: The reference a URI without ``@REF`` means.
DEFAULT_REF = "production"
#: ``ModelVersion.format`` of a policy folder written by :func:`restore_r1.agent.policy.save_policy`.
POLICY_FORMAT = "restore_r1.policy"
#: The model name the pipeline publishes under by default.
DEFAULT_MODEL_NAME = "restore-r1-policy"


def registry_location(location: str | os.PathLike | None = None) -> str:
    """``location``, else ``$RESTORE_R1_REGISTRY``, else :data:`DEFAULT_REGISTRY_DIR`."""
    if location:
        return str(location)
    return os.environ.get(REGISTRY_ENV) or str(DEFAULT_REGISTRY_DIR)


def default_cache_dir() -> Path:
    """``$RESTORE_R1_REGISTRY_CACHE`` or :data:`DEFAULT_CACHE_DIR`."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def open_registry(location: str | os.PathLike | None = None, endpoint_url: str | None = None, cache_dir: str | os.PathLike | None = None) -> Registry:
    """The registry at ``location`` (see :func:`registry_location`)."""
    return Registry(open_store(registry_location(location), endpoint_url=endpoint_url), cache_dir=cache_dir)


def parse_registry_uri(uri: str) -> tuple[str, str]:
    """``registry://NAME@REF`` (or ``NAME@REF``, or ``NAME``) -> ``(NAME, REF)``; REF defaults to production.

    Raises:
        ValueError: a bad name or reference.
    """
    text = uri[len(URI_SCHEME) :] if uri.startswith(URI_SCHEME) else uri
    name, sep, ref = text.partition("@")
    if "/" in name or (sep and not ref):
        raise ValueError(f"bad registry URI {uri!r}; expected registry://NAME@STAGE_OR_VERSION (e.g. registry://{DEFAULT_MODEL_NAME}@production)")
    ref = ref or DEFAULT_REF
    check_name(name)
    if not (ref.isdigit() or ref == LATEST):
        check_stage(ref)
    return name, ref


def pull_policy(uri: str, registry: Registry | None = None) -> Path:
    """A verified local copy of the policy that ``uri`` names (``registry://...`` or ``s3://...``).

    Returns:
        a folder holding ``policy.json`` and ``policy.safetensors``.

    Raises:
        VersionNotFoundError: no such version or alias.
        ChecksumError: a downloaded file is corrupt.
        RegistryError: the version is not a policy, or the store cannot be read.
    """
    if uri.startswith("s3://"):
        return _pull_s3_folder(uri)
    name, ref = parse_registry_uri(uri)
    reg = registry or open_registry()
    version = reg.get(name, ref)
    if version.format != POLICY_FORMAT:
        raise RegistryError(f"{uri} ({version.uri}) holds {version.format!r}, not a policy ({POLICY_FORMAT!r})")
    return reg.pull(name, version.version)


def publish_policy(registry: Registry, name: str, policy_dir: str | os.PathLike, **kwargs) -> ModelVersion:
    """Publishes a :func:`~restore_r1.agent.policy.save_policy` folder after loading it once.

    ``kwargs`` go to :meth:`Registry.publish` (metrics, parameters, dataset, run, description, stage).

    Raises:
        WeightsNotFoundError / ChecksumError / ValueError: the folder is not a loadable policy.
    """
    from restore_r1.agent.policy import load_policy

    load_policy(policy_dir)  # refuses a missing, corrupt or mismatched checkpoint before upload
    return registry.publish(name, policy_dir, POLICY_FORMAT, **kwargs)


def _pull_s3_folder(uri: str) -> Path:
    """Downloads a bare policy folder from S3 into the cache (load_policy checks the weights' sha256)."""
    import hashlib

    from restore_r1.agent.policy import CONFIG_FILE, WEIGHTS_FILE

    parse_s3_uri(uri)
    store = S3Store(uri)
    target = default_cache_dir() / "s3" / hashlib.sha256(store.location.encode()).hexdigest()[:16]
    with atomic_directory(target) as tmp:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            store.download(name, tmp / name)
    return target
