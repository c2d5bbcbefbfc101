"""Tool weights in the model registry: a verified file published with its sha256, so that pods
install exactly it.

:func:`publish_tool_weights` verifies the tool's installed file (as ``restore-r1 weights add``
does) and publishes those bytes as the next version of ``tool-<TOOL>``, with the tool, the
weights-folder path, the authors' file, source, licence, detected architecture and sha256 as
the version's parameters. :func:`pull_tool_weights` downloads a version (the registry checks
every file against the manifest's sha256), checks the digest against the published one,
verifies the file for its tool and installs it into the weights folder; the place is the one
the catalogue gives for the tool, never a path read from the manifest.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from restore_r1.errors import ChecksumError
from restore_r1.registry.core import ModelVersion, Registry
from restore_r1.registry.stores import RegistryError

#: ``ModelVersion.format`` of a tool's weights file.
TOOL_WEIGHTS_FORMAT = "restore_r1.tool_weights"
#: Default model name of a tool's weights: ``tool-<TOOL>``.
TOOL_MODEL_PREFIX = "tool-"
#: The reference a bare tool name pulls.
DEFAULT_TOOL_REF = "production"


def tool_model_name(tool: str) -> str:
    """The registry model name of ``tool``'s weights."""
    return f"{TOOL_MODEL_PREFIX}{tool}"


def _neural_tool(name: str):
    from restore_r1.tools import get_tool

    tool = get_tool(name)
    if tool.model is None:
        raise ValueError(f"tool {tool.name!r} needs no weights file ({tool.backend}): nothing to publish")
    return tool


def publish_tool_weights(registry: Registry, tool: str, name: str | None = None, stage: str | None = None, description: str = "") -> ModelVersion:
    """Verifies ``tool``'s installed weights file and publishes it as the next version of ``name``
    (default ``tool-<TOOL>``).

    Raises:
        KeyError: unknown tool.
        WeightsNotFoundError: the tool's file is not installed.
        CheckpointError / ChecksumError: the installed file does not serve the tool.
    """
    from restore_r1.tools.checkpoints import read_file, verify_checkpoint
    from restore_r1.weights import resolve_weights

    t = _neural_tool(tool)
    data, label = read_file(resolve_weights(t.weights))
    verified = verify_checkpoint(data, t.model, label)
    parameters = {
        "tool": t.name,
        "filename": t.weights.filename,
        "file": t.model.file,
        "source": t.model.url,
        "licence": t.model.licence,
        "loader": t.model.loader,
        "architecture": verified.architecture,
        "sha256": verified.sha256,
    }
    with tempfile.TemporaryDirectory(prefix="restore-r1-tool-") as tmp:
        # publish the bytes that were verified, not whatever the path holds a moment later
        source = Path(tmp) / Path(t.weights.filename).name
        source.write_bytes(verified.data)
        return registry.publish(
            name or tool_model_name(t.name),
            source,
            TOOL_WEIGHTS_FORMAT,
            parameters=parameters,
            description=description or f"weights of tool {t.name}: {t.model.model}",
            stage=stage,
        )


def pull_tool_weights(ref: str, registry: Registry):
    """Installs the tool weights that ``ref`` names: a tool name (its ``production`` version) or
    ``registry://NAME@REF``.

    Returns:
        ``(installed path, the tools that now have their file, the VerifiedFile)``, as
        :func:`restore_r1.tools.add_weights`.

    Raises:
        VersionNotFoundError: no such version.
        RegistryError: the version is not a tool's weights.
        ChecksumError: the file differs from the published sha256.
        CheckpointError: it does not serve its tool.
    """
    from restore_r1.registry import parse_registry_uri
    from restore_r1.tools import list_tools
    from restore_r1.tools.checkpoints import install_checkpoint, read_file, verify_checkpoint

    if ref.startswith("registry://") or "@" in ref:
        name, version_ref = parse_registry_uri(ref)
    else:
        name, version_ref = tool_model_name(_neural_tool(ref).name), DEFAULT_TOOL_REF
    version = registry.get(name, version_ref)
    if version.format != TOOL_WEIGHTS_FORMAT or len(version.files) != 1:
        raise RegistryError(f"{version.uri} holds {version.format!r} ({len(version.files)} file(s)), not one tool's weights ({TOOL_WEIGHTS_FORMAT!r})")
    tool = _neural_tool(str(version.parameters.get("tool")))
    folder = registry.pull(name, version.version)
    data, label = read_file(folder / version.files[0].path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != version.parameters.get("sha256"):
        raise ChecksumError(f"{version.uri}: sha256 {digest} differs from the published {version.parameters.get('sha256')}")
    verified = verify_checkpoint(data, tool.model, f"{version.uri} ({label})")
    target = install_checkpoint(verified)
    served = [t for t in list_tools() if t.model is not None and t.weights.filename == tool.weights.filename]
    return target, served, verified
