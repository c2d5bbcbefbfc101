"""Adapter to the Kubeflow Model Registry, for clusters that run one.

Our registry (:mod:`restore_r1.registry`) stays the source of truth: it holds the files, their
sha256 and the aliases. :class:`KubeflowModelRegistry` mirrors a published version into the
Kubeflow Model Registry (``pip install model-registry``) so it shows up in the Kubeflow UI and
KServe can deploy it from its URI. Metrics, sha256s, the data set, the run and the aliases go
into the version's metadata (custom properties), flattened to strings and numbers.
"""

from __future__ import annotations

import json
from typing import Any

from restore_r1.registry.core import ModelVersion
from restore_r1.registry.stores import RegistryError

#: Value types that Model Registry custom properties accept as they are.
_SCALARS = (str, int, float, bool)
#: Prefix of our keys in the Model Registry's metadata.
META_PREFIX = "restore_r1"


def flatten_metadata(version: ModelVersion) -> dict[str, Any]:
    """The metadata mirrored for ``version``: ``metric.<k>`` numbers, ``sha256.<file>``, JSON strings for the rest."""
    meta: dict[str, Any] = {f"{META_PREFIX}.metric.{k}": float(v) for k, v in version.metrics.items()}
    meta.update({f"{META_PREFIX}.sha256.{f.path}": f.sha256 for f in version.files})
    for key in ("parameters", "dataset", "run"):
        value = getattr(version, key)
        if value:
            meta[f"{META_PREFIX}.{key}"] = json.dumps(value, sort_keys=True, default=str)
    meta[f"{META_PREFIX}.registry_uri"] = version.uri
    meta[f"{META_PREFIX}.created"] = version.created
    if version.aliases:
        meta[f"{META_PREFIX}.aliases"] = ",".join(sorted(version.aliases))
    return {k: v for k, v in meta.items() if isinstance(v, _SCALARS)}


class KubeflowModelRegistry:
    """Mirrors registry versions into a Kubeflow Model Registry.

    Args:
        client: a ``model_registry.ModelRegistry`` (or anything with its ``register_model``,
            ``get_model_version`` and ``update`` methods); see :meth:`connect`.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def connect(
        cls, server_address: str, port: int | None = None, author: str = "restore-r1", is_secure: bool | None = None, user_token_envvar: str | None = None
    ) -> KubeflowModelRegistry:
        """Connects with the ``model-registry`` client (imported here: it is optional).

        Raises:
            RegistryError: the ``model-registry`` package is not installed.
        """
        try:
            from model_registry import ModelRegistry
        except ImportError:
            raise RegistryError("the Kubeflow Model Registry adapter needs `pip install model-registry`") from None
        kwargs: dict[str, Any] = {"author": author, "is_secure": is_secure}
        if user_token_envvar:
            kwargs["user_token_envvar"] = user_token_envvar
        return cls(ModelRegistry(server_address, port, **kwargs))

    def mirror(self, version: ModelVersion, description: str = "") -> Any:
        """Registers ``version`` (same name, version number as text, artifact URI, metadata).

        Returns:
            what the client returns (the registered model).
        """
        run = version.run or {}
        return self.client.register_model(
            version.name,
            version.artifact_uri,
            model_format_name=version.format,
            model_format_version="1",
            version=str(version.version),
            version_description=version.description or f"restore-r1 {version.uri}",
            description=description or "Restore-R1 tool-selection policy",
            model_source_kind="kfp" if run.get("id") else None,
            model_source_class="pipelinerun" if run.get("id") else None,
            model_source_id=str(run["id"]) if run.get("id") else None,
            model_source_name=str(run["name"]) if run.get("name") else None,
            metadata=flatten_metadata(version),
        )

    def set_stage(self, name: str, version: int, stage: str) -> Any:
        """Records an alias on the mirrored version (custom property ``restore_r1.stage``)."""
        found = self.client.get_model_version(name, str(version))
        if found is None:
            raise RegistryError(f"Kubeflow Model Registry: {name} has no version {version}; mirror it first")
        found.custom_properties = {**(found.custom_properties or {}), f"{META_PREFIX}.stage": stage}
        return self.client.update(found)
