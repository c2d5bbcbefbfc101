"""Object stores under the model registry: a local directory and S3 (AWS, MinIO, moto).

A store maps ``/``-separated keys to bytes. The registry needs only these operations, each
atomic for a single key:

* ``read(key)`` / ``download(key, path)``: the whole object or :class:`KeyNotFoundError`;
* ``write(key, data)`` / ``upload(key, path)``: replace an object; a reader sees the old bytes
  or the new ones, never a mix;
* ``create(key, data)``: create-if-absent, ``False`` when the key exists (a local hard link, or
  an S3 conditional PUT with ``If-None-Match: *``). This is what lets two publishers race for
  the same version number without losing a version;
* ``list(prefix)``: the keys under a prefix;
* ``modified(key)`` (seconds since the epoch) and ``delete(key)``: only for garbage collection
  of uploads that no version references.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from restore_r1.errors import RestoreR1Error

#: Environment variables naming the S3 endpoint (MinIO, moto); the first one set wins.
S3_ENDPOINT_ENVS = ("RESTORE_R1_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
#: botocore connection settings: fail in seconds, not minutes, when the endpoint is gone.
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 60
S3_MAX_ATTEMPTS = 3
#: HTTP statuses of a conditional PUT that lost the race (412 Precondition Failed; 409 is what
#: AWS answers while a competing conditional write is still in flight).
S3_CONFLICT_STATUSES = (409, 412)


class RegistryError(RestoreR1Error):
    """The registry cannot do what was asked; the message says what and where."""


class KeyNotFoundError(RegistryError, LookupError):
    """An object that does not exist in the store."""


class StoreUnavailableError(RegistryError, ConnectionError):
    """The store's endpoint cannot be reached or broke off a transfer."""


class Store(Protocol):
    """What the registry needs from an object store (see the module docstring)."""

    location: str

    def uri(self, key: str) -> str: ...
    def read(self, key: str) -> bytes: ...
    def write(self, key: str, data: bytes) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def upload(self, key: str, path: Path) -> None: ...
    def download(self, key: str, path: Path) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def modified(self, key: str) -> float: ...
    def delete(self, key: str) -> None: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid store key {key!r}")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """A store in a local (or network-mounted POSIX) directory.

    Writes go to a temporary file in the target's folder, are fsynced, then renamed
    (``write``) or hard-linked (``create``, which fails when the name exists) into place.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFoundError(f"{self.uri(key)}: not found") from None

    def _temp_copy(self, path: Path, data: bytes | None, source: Path | None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                if source is not None:
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, fh)
                else:
                    fh.write(data or b"")
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def _replace(self, key: str, data: bytes | None = None, source: Path | None = None) -> None:
        path = self._path(key)
        tmp = self._temp_copy(path, data, source)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def write(self, key: str, data: bytes) -> None:
        self._replace(key, data=data)

    def upload(self, key: str, path: Path) -> None:
        self._replace(key, source=Path(path))

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._temp_copy(path, data, None)
        try:
            os.link(tmp, path)  # atomic, and fails if ``path`` exists
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        try:
            shutil.copyfile(src, path)
        except (FileNotFoundError, NotADirectoryError):
            if not src.is_file():
                raise KeyNotFoundError(f"{self.uri(key)}: not found") from None
            raise

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if name.startswith("."):  # temporary files of writers in progress
                    continue
                keys.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(keys)

    def modified(self, key: str) -> float:
        try:
            return self._path(key).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFoundError(f"{self.uri(key)}: not found") from None

    def delete(self, key: str) -> None:
        """Removes ``key`` (absent is fine), then the folders it leaves empty."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        for folder in path.parents:
            if folder == self.root or self.root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                break


def s3_endpoint() -> str | None:
    """The S3 endpoint URL from the environment (:data:`S3_ENDPOINT_ENVS`), or None for AWS."""
    for name in S3_ENDPOINT_ENVS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix without slashes at the ends).

    Raises:
        ValueError: not an ``s3://`` URI, or no bucket.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; expected s3://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


class S3Store:
    """A store under ``s3://bucket/prefix`` (AWS S3, MinIO or any S3-compatible endpoint).

    Args:
        uri: ``s3://bucket[/prefix]``.
        endpoint_url: the endpoint (e.g. ``http://minio-service.kubeflow:9000``); None reads
            :data:`S3_ENDPOINT_ENVS`, then boto3's own configuration.
        client: a ready boto3 S3 client (tests); overrides ``endpoint_url``.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    profiles, instance roles).
    """

    def __init__(self, uri: str, endpoint_url: str | None = None, client: object | None = None) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.location = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.endpoint_url = endpoint_url or s3_endpoint()
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=S3_CONNECT_TIMEOUT_S,
                read_timeout=S3_READ_TIMEOUT_S,
                retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
                # Checksums only when the operation requires one: MinIO and moto then see
                # plain PUTs, as older boto3 sent them.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.client("s3", endpoint_url=self.endpoint_url, config=config)
        self.client = client

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _display(self, key: str) -> str:
        """The URI of ``key`` for messages (no validation)."""
        return f"{self.location}/{key}" if key else self.location

    def _call(self, what: str, key: str, fn, *args, **kwargs):
        """Runs one boto3 call; turns connection failures and missing keys into typed errors."""
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyNotFoundError(f"{self._display(key)}: not found") from None
            if code == "NoSuchBucket":
                raise RegistryError(f"{what} {self._display(key)}: bucket {self.bucket!r} does not exist") from None
            if status in S3_CONFLICT_STATUSES and kwargs.get("IfNoneMatch") == "*":
                raise _Conflict() from None
            raise RegistryError(f"{what} {self._display(key)}: {code or status}: {exc.response.get('Error', {}).get('Message', exc)}") from None
        except BotoConnectionError as exc:
            raise StoreUnavailableError(
                f"{what} {self._display(key)}: S3 endpoint {self.endpoint_url or '(AWS default)'} unreachable or broke off: {exc}"
            ) from None
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"{what} {self._display(key)}: {exc}") from None

    def read(self, key: str) -> bytes:
        response = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return self._call("read", key, response["Body"].read)

    def write(self, key: str, data: bytes) -> None:
        self._call("write", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def create(self, key: str, data: bytes) -> bool:
        try:
            self._call("create", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except _Conflict:
            return False
        return True

    def upload(self, key: str, path: Path) -> None:
        # One PUT per artifact: S3 stores an object whole or not at all. (Policies are a few
        # MB; multipart uploads would add parts that a dead endpoint leaves behind.)
        with open(path, "rb") as fh:
            self._call("upload", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=fh)

    def download(self, key: str, path: Path) -> None:
        response = self._call("download", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        body = response["Body"]
        with open(path, "wb") as fh:
            while True:
                block = self._call("download", key, body.read, 1 << 20)
                if not block:
                    break
                fh.write(block)

    def list(self, prefix: str) -> list[str]:
        if prefix.strip("/"):
            full = self._key(prefix.rstrip("/")) + "/"
        else:
            full = f"{self.prefix}/" if self.prefix else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list", prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)))
        for page in pages:
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def modified(self, key: str) -> float:
        response = self._call("stat", key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        return response["LastModified"].timestamp()

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))


class _Conflict(Exception):
    """A conditional create lost the race (internal)."""


def open_store(location: str | os.PathLike, endpoint_url: str | None = None) -> LocalStore | S3Store:
    """A store for ``s3://bucket/prefix`` or a local directory path.

    Raises:
        ValueError: another URI scheme.
    """
    text = str(location)
    if text.startswith("s3://"):
        return S3Store(text, endpoint_url=endpoint_url)
    if "://" in text:
        raise ValueError(f"registry location {text!r}: use a local directory or s3://BUCKET/PREFIX")
    return LocalStore(text)
