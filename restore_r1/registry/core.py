"""The model registry: immutable, numbered versions of a model, with aliases, over a store.

Layout under the registry's root (a local folder or ``s3://bucket/prefix``)::

    NAME/artifacts/UPLOAD_ID/...      the files of one publish (UPLOAD_ID is random)
    NAME/versions/00000007.json       version 7's manifest: written last, create-if-absent
    NAME/aliases/production.json      {"version": 7, ...}: one small object, replaced whole

Publishing uploads the files under a fresh ``UPLOAD_ID``, re-reads what was stored and checks
its sha256, and only then creates the manifest with a create-if-absent write. A version exists
exactly when its manifest does, so a reader never sees a half-written version, and files left by a
publisher that died are never referenced. Two publishers that pick the same number race on that
create: the loser takes the next number and tries again, so neither loses its version.

Aliases (:data:`STAGES`) point at versions; moving one is a single whole-object write.
Downloads are verified against the manifest's sha256 before they are handed out.

:meth:`Registry.collect_garbage` deletes the uploads that no version references (a publisher
that died, or lost a checksum check) once they are older than a grace period, so that a publish
still in flight is never touched. Versions themselves are immutable and never deleted.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import os
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from restore_r1.errors import ChecksumError
from restore_r1.images import atomic_directory, sha256_file
from restore_r1.registry.stores import KeyNotFoundError, RegistryError, Store

#: Version of the manifest layout.
MANIFEST_FORMAT_VERSION = 1
#: Aliases a version can be promoted to.
STAGES: tuple[str, ...] = ("production", "staging")
#: A model name: letters, digits, ``.``, ``_``, ``-``; starts with a letter or digit.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: The reference meaning "the highest version number".
LATEST = "latest"
#: Width of the zero-padded version number in manifest keys (sorts as text).
VERSION_DIGITS = 8
#: How many version numbers a publisher tries before giving up (each lost race costs one).
MAX_PUBLISH_ATTEMPTS = 50
VERSIONS_DIR, ARTIFACTS_DIR, ALIASES_DIR = "versions", "artifacts", "aliases"
#: Uploads younger than this are left alone by garbage collection (a publish may be in flight).
GC_MIN_AGE_S = 24 * 3600.0


class VersionNotFoundError(RegistryError, LookupError):
    """No such model, version or alias in the registry."""


@dataclass
class ArtifactFile:
    """One stored file of a version: its path relative to the version's folder, sha256, size."""

    path: str
    sha256: str
    size: int


@dataclass
class ModelVersion:
    """One registered version (the manifest, plus the aliases that point at it when read).

    Attributes:
        name: the model's name.
        version: 1, 2, ... in publishing order.
        format: what the files are, e.g. ``"restore_r1.policy"``.
        artifact_uri: where the files are (folder URI: local path or ``s3://...``).
        artifact_key: the same folder as a key relative to the registry root.
        files: every file with its sha256 and size.
        metrics: numbers to compare versions by (e.g. ``policy_psnr``).
        parameters: the settings that produced it (training hyper-parameters, ...).
        dataset: the data set it was trained on (URI, manifest sha256, size).
        run: the run that made it (pipeline run id and name, ...).
        created: ISO 8601 UTC time of publishing.
        description: free text.
        aliases: the aliases pointing at this version when it was read (not stored in it).
    """

    name: str
    version: int
    format: str
    artifact_uri: str
    artifact_key: str
    files: list[ArtifactFile]
    metrics: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    description: str = ""
    aliases: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        """``registry://NAME@VERSION``."""
        return f"registry://{self.name}@{self.version}"

    def to_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("aliases")
        return {"manifest_format_version": MANIFEST_FORMAT_VERSION, **data}

    @classmethod
    def from_manifest(cls, data: dict[str, Any], aliases: list[str] | None = None) -> ModelVersion:
        if data.get("manifest_format_version") != MANIFEST_FORMAT_VERSION:
            raise RegistryError(f"manifest format {data.get('manifest_format_version')!r} is not supported (expected {MANIFEST_FORMAT_VERSION})")
        fields = {k: v for k, v in data.items() if k != "manifest_format_version"}
        fields["files"] = [ArtifactFile(**f) for f in fields.get("files", [])]
        return cls(**fields, aliases=list(aliases or []))


@dataclass
class OrphanedUpload:
    """Files under ``NAME/artifacts/UPLOAD_ID`` that no version's manifest references."""

    uri: str
    keys: list[str]
    age_s: float
    deleted: bool = False


def check_name(name: str) -> str:
    """Returns ``name`` if it is a valid model name, else raises ValueError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-' (max 128), starting with a letter or digit")
    return name


def check_stage(stage: str) -> str:
    """Returns ``stage`` if it is one of :data:`STAGES`, else raises ValueError with close matches."""
    if stage in STAGES:
        return stage
    close = difflib.get_close_matches(str(stage), STAGES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ValueError(f"unknown stage {stage!r}{hint} (stages: {', '.join(STAGES)})")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version_key(name: str, version: int) -> str:
    return f"{name}/{VERSIONS_DIR}/{version:0{VERSION_DIGITS}d}.json"


def _files_of(source: Path) -> list[tuple[str, Path]]:
    """(relative posix path, file) for a file or every file under a folder (hidden ones skipped)."""
    if source.is_file():
        return [(source.name, source)]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder to publish")
    files = sorted(
        (p.relative_to(source).as_posix(), p)
        for p in source.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )
    if not files:
        raise ValueError(f"{source}: folder holds no files to publish")
    return files


class Registry:
    """Versions of named models in a :class:`~restore_r1.registry.stores.Store`.

    Args:
        store: where everything lives.
        cache_dir: where :meth:`pull` puts verified copies (default: ``$RESTORE_R1_REGISTRY_CACHE``
            or ``~/.cache/restore-r1/registry-cache``).
    """

    def __init__(self, store: Store, cache_dir: str | os.PathLike | None = None) -> None:
        from restore_r1.registry import default_cache_dir

        self.store = store
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    @property
    def location(self) -> str:
        return self.store.location

    # ------------------------------------------------------------------ reading
    def models(self) -> list[str]:
        """Names of the models that have at least one version."""
        return sorted({k.split("/")[0] for k in self.store.list("") if k.split("/")[1:2] == [VERSIONS_DIR]})

    def version_numbers(self, name: str) -> list[int]:
        """The published version numbers of ``name``, ascending (empty if none)."""
        check_name(name)
        numbers = []
        for key in self.store.list(f"{name}/{VERSIONS_DIR}"):
            stem = key.rsplit("/", 1)[-1]
            if stem.endswith(".json") and stem[:-5].isdigit():
                numbers.append(int(stem[:-5]))
        return sorted(numbers)

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version number, for the aliases of ``name`` that are set."""
        check_name(name)
        out = {}
        for stage in STAGES:
            try:
                out[stage] = int(json.loads(self.store.read(f"{name}/{ALIASES_DIR}/{stage}.json"))["version"])
            except KeyNotFoundError:
                continue
        return out

    def resolve(self, name: str, ref: str | int) -> int:
        """The version number that ``ref`` (a number, a stage or ``latest``) names.

        Raises:
            VersionNotFoundError: no such version, or the alias is not set.
            ValueError: ``ref`` is neither a number, a stage nor ``latest``.
        """
        check_name(name)
        text = str(ref)
        if text.isdigit():
            number = int(text)
            if number not in self.version_numbers(name):
                raise VersionNotFoundError(f"{self.location}: {name} has no version {number} (versions: {self._listing(name)})")
            return number
        if text == LATEST:
            numbers = self.version_numbers(name)
            if not numbers:
                raise VersionNotFoundError(f"{self.location}: no model {name!r} (models: {', '.join(self.models()) or 'none'})")
            return numbers[-1]
        check_stage(text)
        aliases = self.aliases(name)
        if text not in aliases:
            raise VersionNotFoundError(f"{self.location}: {name} has no {text} version (versions: {self._listing(name)})")
        return aliases[text]

    def _listing(self, name: str) -> str:
        numbers = self.version_numbers(name)
        return ", ".join(map(str, numbers)) if numbers else "none"

    def get(self, name: str, ref: str | int = LATEST) -> ModelVersion:
        """The version ``ref`` of ``name`` (see :meth:`resolve`), with its aliases."""
        number = self.resolve(name, ref)
        try:
            data = json.loads(self.store.read(_version_key(name, number)))
        except KeyNotFoundError:
            raise VersionNotFoundError(f"{self.location}: {name} has no version {number}") from None
        aliases = [a for a, v in self.aliases(name).items() if v == number]
        return ModelVersion.from_manifest(data, aliases)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, ascending."""
        aliases = self.aliases(name)
        out = []
        for number in self.version_numbers(name):
            data = json.loads(self.store.read(_version_key(name, number)))
            out.append(ModelVersion.from_manifest(data, [a for a, v in aliases.items() if v == number]))
        return out

    # ------------------------------------------------------------------ writing
    def publish(
        self,
        name: str,
        source: str | os.PathLike,
        format: str,
        metrics: dict[str, float] | None = None,
        parameters: dict[str, Any] | None = None,
        dataset: dict[str, Any] | None = None,
        run: dict[str, Any] | None = None,
        description: str = "",
        stage: str | None = None,
    ) -> ModelVersion:
        """Publishes a file or folder as the next version of ``name``.

        Args:
            source: a file, or a folder whose files (recursively, hidden ones skipped) are stored.
            format: what the files are (``"restore_r1.policy"`` for :func:`save_policy` folders).
            stage: also point this alias (:data:`STAGES`) at the new version.

        Returns:
            the new version.

        Raises:
            StoreUnavailableError: the store broke off; no version was created.
            ChecksumError: the stored bytes differ from the source's (nothing published).
        """
        check_name(name)
        if stage is not None:
            check_stage(stage)
        files = _files_of(Path(source))
        records = [ArtifactFile(rel, sha256_file(path), path.stat().st_size) for rel, path in files]
        artifact_key = f"{name}/{ARTIFACTS_DIR}/{uuid.uuid4().hex}"
        for (rel, path), record in zip(files, records):
            self.store.upload(f"{artifact_key}/{rel}", path)
        self._verify_stored(artifact_key, records)
        version = ModelVersion(
            name=name,
            version=0,
            format=format,
            artifact_uri=self.store.uri(artifact_key),
            artifact_key=artifact_key,
            files=records,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            parameters=dict(parameters or {}),
            dataset=dict(dataset or {}),
            run=dict(run or {}),
            created=_now(),
            description=description,
        )
        existing = self.version_numbers(name)
        number = (existing[-1] if existing else 0) + 1
        for _ in range(MAX_PUBLISH_ATTEMPTS):
            version.version = number
            body = json.dumps(version.to_manifest(), indent=2, sort_keys=True).encode()
            if self.store.create(_version_key(name, number), body):
                # Read back: a server that ignored the create-if-absent condition shows up here.
                if self.store.read(_version_key(name, number)) == body:
                    break
            number += 1
        else:
            raise RegistryError(f"{self.location}: could not allocate a version of {name} after {MAX_PUBLISH_ATTEMPTS} attempts")
        if stage is not None:
            self.promote(name, number, stage)
            version.aliases = [stage]
        return version

    def _download_checked(self, key: str, local: Path, expected: str) -> str | None:
        """Downloads store object ``key`` to ``local``; returns its sha256 when it differs from
        ``expected``, None when it matches (each caller words its own refusal)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        self.store.download(key, local)
        digest = sha256_file(local)
        return None if digest == expected else digest

    def _verify_stored(self, artifact_key: str, records: list[ArtifactFile]) -> None:
        """Downloads each stored file and checks its sha256 (catches truncation in transit)."""
        with tempfile.TemporaryDirectory(prefix="restore-r1-verify-") as tmp:
            for record in records:
                digest = self._download_checked(f"{artifact_key}/{record.path}", Path(tmp) / "file", record.sha256)
                if digest is not None:
                    raise ChecksumError(
                        f"{self.store.uri(artifact_key + '/' + record.path)}: stored sha256 {digest} differs from the "
                        f"source's {record.sha256}; nothing was published"
                    )

    def promote(self, name: str, ref: str | int, stage: str) -> ModelVersion:
        """Points alias ``stage`` at version ``ref`` (one whole-object write); returns that version."""
        check_stage(stage)
        number = self.resolve(name, ref)
        record = {"version": number, "updated": _now()}
        self.store.write(f"{name}/{ALIASES_DIR}/{stage}.json", json.dumps(record, sort_keys=True).encode())
        return self.get(name, number)

    def collect_garbage(self, name: str, min_age_s: float = GC_MIN_AGE_S, dry_run: bool = False, now: float | None = None) -> list[OrphanedUpload]:
        """Finds (and unless ``dry_run`` deletes) the uploads of ``name`` that no version references.

        An upload counts only when its newest file is at least ``min_age_s`` old. The uploads are
        listed before the manifests are read, so a publish that completes in between is seen as
        referenced.

        Returns:
            every unreferenced upload, with ``deleted`` telling what was removed.
        """
        check_name(name)
        if min_age_s < 0:
            raise ValueError(f"min_age_s must be >= 0, got {min_age_s}")
        uploads: dict[str, list[str]] = {}
        for key in self.store.list(f"{name}/{ARTIFACTS_DIR}"):
            parts = key.split("/")
            if len(parts) >= 4:
                uploads.setdefault("/".join(parts[:3]), []).append(key)
        referenced = {v.artifact_key for v in self.list_versions(name)}
        now = _dt.datetime.now(_dt.timezone.utc).timestamp() if now is None else now
        orphans = []
        for upload, keys in sorted(uploads.items()):
            if upload in referenced:
                continue
            try:
                age = now - max(self.store.modified(k) for k in keys)
            except KeyNotFoundError:  # removed meanwhile (another collector)
                continue
            orphan = OrphanedUpload(self.store.uri(upload), keys, age)
            if age >= min_age_s and not dry_run:
                for key in keys:
                    self.store.delete(key)
                orphan.deleted = True
            orphans.append(orphan)
        return orphans

    # ------------------------------------------------------------------ downloading
    def cache_path(self, name: str, number: int) -> Path:
        """The local folder that :meth:`pull` fills for version ``number`` of ``name``."""
        registry_id = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        return self.cache_dir / registry_id / name / str(number)

    def pull(self, name: str, ref: str | int = LATEST, dest: str | os.PathLike | None = None) -> Path:
        """Downloads a version's files into ``dest`` (default: the cache) and verifies their sha256.

        A cached copy is re-verified and reused; a cached copy that fails is downloaded again.
        The files are downloaded into a temporary folder next to ``dest`` and moved into place
        only once every file matches, so ``dest`` never holds a corrupt or partial copy.

        Returns:
            the folder holding the version's files.

        Raises:
            ChecksumError: a stored file differs from the sha256 recorded in the version.
            VersionNotFoundError: no such version.
            StoreUnavailableError: the store broke off.
        """
        version = self.get(name, ref)
        target = Path(dest) if dest is not None else self.cache_path(name, version.version)
        if target.is_dir() and _matches(target, version.files):
            return target
        with atomic_directory(target) as tmp:
            for record in version.files:
                digest = self._download_checked(f"{version.artifact_key}/{record.path}", tmp / record.path, record.sha256)
                if digest is not None:
                    raise ChecksumError(
                        f"{version.uri}: artifact {record.path} is corrupt (sha256 {digest}, the registry recorded "
                        f"{record.sha256}); refusing it. Re-publish the model or restore {self.store.uri(version.artifact_key)}"
                    )
        return target


def _matches(folder: Path, files: list[ArtifactFile]) -> bool:
    for record in files:
        path = folder / record.path
        if not path.is_file() or path.stat().st_size != record.size or sha256_file(path) != record.sha256:
            return False
    return True
