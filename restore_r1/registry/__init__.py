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

A policy version records its planner kind in its format: :data:`POLICY_FORMAT` for an MLP policy
folder, :data:`VLM_PLANNER_FORMAT` for a VLM planner folder (:data:`POLICY_FORMATS`); both are
pulled by :func:`pull_policy`. A base vision-language model to train a planner from is published as
:data:`VLM_BASE_FORMAT` (:func:`publish_vlm_model`) and pulled by :func:`pull_vlm_model`.
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
    "POLICY_FORMATS",
    "Registry",
    "RegistryError",
    "S3Store",
    "STAGES",
    "StoreUnavailableError",
    "TOOL_WEIGHTS_FORMAT",
    "VLM_BASE_FORMAT",
    "VLM_PLANNER_FORMAT",
    "VersionNotFoundError",
    "check_name",
    "check_stage",
    "default_cache_dir",
    "local_policy",
    "local_vlm_model",
    "open_registry",
    "parse_registry_uri",
    "publish_policy",
    "publish_tool_weights",
    "publish_vlm_model",
    "pull_policy",
    "pull_tool_weights",
    "pull_vlm_model",
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
#: ``ModelVersion.format`` of a VLM planner folder written by :func:`restore_r1.agent.vlm.save_vlm_planner`.
VLM_PLANNER_FORMAT = "restore_r1.vlm_planner"
#: Planner kind (restore_r1.agent.inference.PLANNER_KINDS) -> the format its versions record.
POLICY_FORMATS = {"mlp": POLICY_FORMAT, "vlm": VLM_PLANNER_FORMAT}
#: ``ModelVersion.format`` of a base transformers vision-language model folder (not yet a planner).
VLM_BASE_FORMAT = "transformers.image_text_to_text"
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
        a policy folder of either planner kind: ``policy.json`` + ``policy.safetensors`` (MLP), or
        ``planner.json`` beside the model's files (VLM).

    Raises:
        VersionNotFoundError: no such version or alias.
        ChecksumError: a downloaded file is corrupt.
        RegistryError: the version is not a policy, or the store cannot be read.
    """
    if uri.startswith("s3://"):
        return _pull_s3_folder(uri)
    return _pull_checked(uri, tuple(POLICY_FORMATS.values()), "a policy", registry)


def local_policy(spec: str | os.PathLike | None = None) -> Path:
    """The local policy folder ``spec`` stands for: a registry or ``s3://`` URI is pulled
    (:func:`pull_policy`), anything else goes to :func:`restore_r1.agent.inference.resolve_policy`
    (a folder, ``$RESTORE_R1_POLICY`` — which may hold a URI too — or the packaged default).
    Every entry point that takes a user's ``--policy`` calls this."""
    from restore_r1.agent.inference import POLICY_ENV, resolve_policy
    from restore_r1.weights import REGISTRY_SCHEMES

    raw = str(spec) if spec is not None else os.environ.get(POLICY_ENV, "")
    return pull_policy(raw) if raw.startswith(REGISTRY_SCHEMES) else resolve_policy(spec)


def local_vlm_model(spec: str | os.PathLike | None = None) -> Path:
    """The local folder of the VLM ``spec`` names (a URI is pulled by :func:`pull_vlm_model`),
    else :func:`restore_r1.agent.vlm.resolve_vlm_model` (folder or ``$RESTORE_R1_VLM_MODEL``)."""
    from restore_r1.agent.vlm import VLM_MODEL_ENV, resolve_vlm_model
    from restore_r1.weights import REGISTRY_SCHEMES

    raw = str(spec) if spec else os.environ.get(VLM_MODEL_ENV, "")
    return pull_vlm_model(raw) if raw.startswith(REGISTRY_SCHEMES) else resolve_vlm_model(spec)


def pull_vlm_model(uri: str, registry: Registry | None = None) -> Path:
    """A verified local copy of the vision-language model ``uri`` names: a base model
    (:data:`VLM_BASE_FORMAT`) or a trained planner, whose weights can be trained further.

    Raises:
        as :func:`pull_policy`; RegistryError when the version is neither.
    """
    if uri.startswith("s3://"):
        return _pull_s3_folder(uri, everything=True)
    return _pull_checked(uri, (VLM_BASE_FORMAT, VLM_PLANNER_FORMAT), "a vision-language model", registry)


def _pull_checked(uri: str, formats: tuple[str, ...], what: str, registry: Registry | None) -> Path:
    name, ref = parse_registry_uri(uri)
    reg = registry or open_registry()
    version = reg.get(name, ref)
    if version.format not in formats:
        raise RegistryError(f"{uri} ({version.uri}) holds {version.format!r}, not {what} ({', '.join(map(repr, formats))})")
    return reg.pull(name, version.version)


def publish_policy(registry: Registry, name: str, policy_dir: str | os.PathLike, **kwargs) -> ModelVersion:
    """Publishes a policy folder of either planner kind after checking it once; the kind is
    recorded as the version's format (:data:`POLICY_FORMATS`).

    An MLP policy is loaded (:func:`~restore_r1.agent.policy.load_policy`); a VLM planner has every
    file checked against the sha256 in its ``planner.json`` (its weights are not loaded).
    ``kwargs`` go to :meth:`Registry.publish` (metrics, parameters, dataset, run, description, stage).

    Raises:
        WeightsNotFoundError / ChecksumError / ValueError: the folder is not a loadable policy.
    """
    from restore_r1.agent.inference import planner_kind
    from restore_r1.agent.policy import load_policy
    from restore_r1.agent.vlm import verify_vlm_planner

    kind = planner_kind(policy_dir)
    if kind == "mlp":
        load_policy(policy_dir)  # refuses a missing, corrupt or mismatched checkpoint before upload
    elif kind == "vlm":
        verify_vlm_planner(policy_dir)
    else:
        raise ValueError(f"unknown planner kind {kind!r}")
    return registry.publish(name, policy_dir, POLICY_FORMATS[kind], **kwargs)


def publish_vlm_model(registry: Registry, name: str, model_dir: str | os.PathLike, **kwargs) -> ModelVersion:
    """Publishes a local transformers vision-language model folder (a base to train a planner from).

    Its config and processor are read once (no weights loaded) to refuse a folder that
    ``AutoModelForImageTextToText`` / ``AutoProcessor`` cannot load.

    Raises:
        WeightsNotFoundError: the folder or its config.json is missing.
        ValueError: the folder is not an image-text-to-text model with a processor.
    """
    import transformers

    from restore_r1.agent.vlm import VLM_HOW_TO
    from restore_r1.weights import resolve_model_dir

    path = resolve_model_dir(model_dir, "", "VLM model", VLM_HOW_TO)
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    if type(config) not in transformers.AutoModelForImageTextToText._model_mapping:
        raise ValueError(f"{path}: a {config.model_type!r} model, which AutoModelForImageTextToText does not load")
    if not isinstance(transformers.AutoProcessor.from_pretrained(path, local_files_only=True), transformers.ProcessorMixin):
        raise ValueError(f"{path}: no image processor (AutoProcessor gives a tokenizer only); the folder needs the processor files")
    return registry.publish(name, path, VLM_BASE_FORMAT, **kwargs)


def _pull_s3_folder(uri: str, everything: bool = False) -> Path:
    """Downloads a bare policy folder from S3 into the cache; the loader checks the sha256 (of the
    MLP weights in ``policy.json``, of every file in a VLM planner's ``planner.json``).

    With ``everything``, or for a VLM planner (a prefix holding ``planner.json``), every file
    under the prefix is downloaded; otherwise the MLP policy's two files.
    """
    import hashlib

    from restore_r1.agent.policy import CONFIG_FILE, WEIGHTS_FILE
    from restore_r1.agent.vlm import PLANNER_FILE

    parse_s3_uri(uri)
    store = S3Store(uri)
    target = default_cache_dir() / "s3" / hashlib.sha256(store.location.encode()).hexdigest()[:16]
    with atomic_directory(target) as tmp:
        names = None if everything else [CONFIG_FILE, WEIGHTS_FILE]
        if names is not None:
            try:
                store.download(CONFIG_FILE, tmp / CONFIG_FILE)
                names = [WEIGHTS_FILE]
            except KeyNotFoundError:  # not an MLP policy: a VLM planner has its planner.json
                names = None
        if names is None:
            names = store.list("")
            if not everything and PLANNER_FILE not in names:
                raise KeyNotFoundError(f"{uri}: neither {CONFIG_FILE} (an MLP policy) nor {PLANNER_FILE} (a VLM planner) under this prefix")
            if not names:
                raise KeyNotFoundError(f"{uri}: no files under this prefix")
        for name in names:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            store.download(name, tmp / name)
    return target
