"""Batch restoration: a prefix of photos (``s3://bucket/prefix`` or a folder, e.g. a PVC mount)
-> restored PNGs and one manifest record per photo beside them, resumable.

    plan = plan_batch("s3://photos/2024", "s3://photos/2024-restored", shards=8, policy="registry://restore-r1-policy@production")
    for i in range(plan.shards):               # one KFP ParallelFor iteration (or one pod) each
        restore_shard(plan, i, triton_url="triton:8001", protocol="grpc")
    summary = finish_batch(plan, results)      # manifest.jsonl, summary.json, the counts

Layout under the output prefix ``OUT`` (for an input key ``REL``, relative to the input prefix):

* ``OUT/REL`` with its suffix replaced by ``.png``: the restored photo;
* ``OUT/_records/REL.json``: its manifest record (:data:`RECORD_FIELDS`), written only after the
  photo. A photo is *done* once its record exists: a rerun lists ``_records/`` once and skips
  those photos, so a killed shard resumes where it stopped;
* ``OUT/_manifests/shard-I-of-N.jsonl``: the records of shard I, written when it ends;
* ``OUT/manifest.jsonl`` (every record, one line per photo, sorted by input) and
  ``OUT/summary.json`` (:func:`finish_batch`).

Nothing truncated ever sits at a final name: every object is written whole (an S3 PUT stores all
of an object or nothing; a folder write goes to a temporary file that is renamed into place,
:class:`restore_r1.registry.LocalStore`). A photo killed between its image and its record is
simply restored again by the rerun.

The restoring is the agent's, never re-implemented here: through Triton
(:class:`restore_r1.serving.client.TritonAgentClient`) or in-process
(:func:`restore_r1.agent.inference.load_agent`, on the step's own CPU or GPU). The policy is
pinned once by :func:`plan_batch` (``registry://NAME@production`` -> ``@7``), so every shard uses
the same version even if the alias moves; through Triton the served policy version must match
it, or the photo fails (and a rerun retries it).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: Folders of the output prefix that hold the batch's bookkeeping, not restored photos.
RECORDS_DIR = "_records"
MANIFESTS_DIR = "_manifests"
MANIFEST_FILE = "manifest.jsonl"
SUMMARY_FILE = "summary.json"
#: What each manifest record holds.
#: ``timings``: where ``seconds`` went in process (``encoder``, ``policy``, ``judge``, ``tool:NAME``); empty when served.
RECORD_FIELDS = ("input", "output", "tools", "scores", "seconds", "timings", "partial", "failed", "policy_version", "width", "height", "shard")
#: Failure messages a shard result and the summary carry at most (the counts are always whole).
MAX_LISTED_FAILURES = 50
#: The photo suffix of every output (lossless).
OUTPUT_SUFFIX = ".png"


def _check_location(uri: str, what: str) -> str:
    text = str(uri or "").strip()
    if not text:
        raise ValueError(f"{what} is empty; give s3://BUCKET/PREFIX or a folder")
    if "://" in text and not text.startswith("s3://"):
        raise ValueError(f"{what} {text!r}: use s3://BUCKET/PREFIX or a folder")
    if text.startswith("s3://"):
        from restore_r1.registry.stores import parse_s3_uri

        parse_s3_uri(text)  # raises on a missing bucket
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def _open(location: str, endpoint: str | None):
    from restore_r1.registry.stores import open_store

    return open_store(location, endpoint_url=endpoint or None)


def output_key(key: str) -> str:
    """The restored photo's key for input key ``key``: ``a/b.jpg`` -> ``a/b.png``."""
    return str(PurePosixPath(key).with_suffix(OUTPUT_SUFFIX))


def record_key(key: str) -> str:
    """The manifest record's key for input key ``key`` (the input suffix is kept: ``a.jpg`` and ``a.tif`` never share one)."""
    return f"{RECORDS_DIR}/{key}.json"


def shard_manifest_key(index: int, shards: int) -> str:
    return f"{MANIFESTS_DIR}/shard-{index:05d}-of-{shards:05d}.jsonl"


@dataclass(frozen=True)
class BatchPlan:
    """What a batch restores, fixed once so that every shard sees the same list.

    Attributes:
        input_uri, output_uri: ``s3://bucket/prefix`` or absolute folders.
        keys: the photos' keys relative to ``input_uri``, sorted.
        shards: how many shards; shard ``i`` is ``keys[i::shards]``.
        policy: the pinned policy (``registry://NAME@N``, a folder or an ``s3://`` folder), or ""
            for the Triton server's own.
        policy_version: the pinned registry version (``"7"``) or None when not from the registry.
        started: when the plan was made (seconds since the epoch): the batch's throughput clock.
    """

    input_uri: str
    output_uri: str
    keys: tuple[str, ...]
    shards: int
    policy: str = ""
    policy_version: str | None = None
    started: float = 0.0

    def shard_keys(self, index: int) -> tuple[str, ...]:
        if not 0 <= index < self.shards:
            raise ValueError(f"shard {index} out of range: the plan has {self.shards} shard(s) (0-{self.shards - 1})")
        return self.keys[index :: self.shards]

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "keys": list(self.keys)})

    @classmethod
    def from_json(cls, text: str) -> BatchPlan:
        data = json.loads(text)
        return cls(**{**data, "keys": tuple(data["keys"])})


def list_photos(input_uri: str, endpoint: str | None = None) -> list[str]:
    """The image files under ``input_uri`` (any depth; hidden files and folders skipped), as keys relative to it, sorted.

    Raises:
        ValueError: a bad URI, or no image there.
        FileNotFoundError: a folder that does not exist.
        RegistryError / StoreUnavailableError: the bucket is missing or S3 cannot be reached.
    """
    from restore_r1.images import IMAGE_SUFFIXES

    location = _check_location(input_uri, "input")
    if not location.startswith("s3://") and not Path(location).is_dir():
        if Path(location).exists():
            raise ValueError(f"input {location} is a file; a batch takes a folder or s3://BUCKET/PREFIX of photos")
        raise FileNotFoundError(f"input folder {location} does not exist")
    keys = [
        k
        for k in _open(location, endpoint).list("")
        if PurePosixPath(k).suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in PurePosixPath(k).parts)
    ]
    if not keys:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {location}")
    return keys


def pin_policy(policy: str, registry: str | None = None, endpoint: str | None = None) -> tuple[str, str | None]:
    """``(pinned spec, registry version or None)``: a ``registry://NAME@REF`` becomes ``registry://NAME@N``
    (the version the reference names now); folders and ``s3://`` folders are kept as they are; "" stays ""."""
    text = str(policy or "").strip()
    if not text.startswith("registry://"):
        return text, None
    from restore_r1.registry import URI_SCHEME, open_registry, parse_registry_uri

    name, ref = parse_registry_uri(text)
    number = open_registry(registry, endpoint_url=endpoint or None).resolve(name, ref)
    return f"{URI_SCHEME}{name}@{number}", str(number)


def plan_batch(
    input_uri: str, output_uri: str, shards: int = 1, policy: str = "", registry: str | None = None, endpoint: str | None = None, now: float | None = None
) -> BatchPlan:
    """Lists the photos, checks where their results go and pins the policy.

    Args:
        input_uri, output_uri: ``s3://bucket/prefix`` or folders; the output may not lie inside the input.
        shards: at least 1; more shards than photos are cut to one photo each.
        policy: registry URI, folder or ``s3://`` folder of the policy; "" for Triton's own
            (through Triton a registry URI is what the served version must equal).
        registry: where ``registry://`` URIs live (default ``$RESTORE_R1_REGISTRY``).
        endpoint: the S3 endpoint (MinIO, moto); None reads ``$RESTORE_R1_S3_ENDPOINT``.

    Raises:
        ValueError: bad URIs, no images, shards < 1, or two inputs that would write one output.
    """
    if isinstance(shards, bool) or int(shards) != shards or shards < 1:
        raise ValueError(f"shards {shards!r} must be an integer >= 1")
    source = _check_location(input_uri, "input")
    target = _check_location(output_uri, "output")
    if target == source or target.startswith(source.rstrip("/") + "/"):
        raise ValueError(f"output {target} lies inside the input {source}; choose a prefix outside it")
    keys = list_photos(source, endpoint)
    seen: dict[str, str] = {}
    for key in keys:
        out = output_key(key)
        if out in seen:
            raise ValueError(f"{seen[out]} and {key} would both be restored to {out}; rename one of them")
        seen[out] = key
    pinned, version = pin_policy(policy, registry, endpoint)
    return BatchPlan(source, target, tuple(keys), min(int(shards), len(keys)), pinned, version, time.time() if now is None else now)


@dataclass
class ShardResult:
    """What one shard did (JSON-able: KFP passes it to the summary step as a string).

    Attributes:
        index, shards: which shard of how many.
        photos: the shard's photos; restored + skipped + failed == photos.
        restored: restored in this run (``partial`` of them cut short by a failing tool).
        skipped: done by an earlier run (their record existed).
        failed: not restored; ``failures`` lists the first :data:`MAX_LISTED_FAILURES` as ``"key: reason"``.
        seconds: the shard's wall-clock time; ``restore_seconds``: the agent's time over its photos.
        megapixels: pixels restored in this run, in millions.
    """

    index: int
    shards: int
    photos: int = 0
    restored: int = 0
    partial: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    restore_seconds: float = 0.0
    megapixels: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardResult:
        return cls(**json.loads(text))


def make_restorer(
    policy: str = "", triton_url: str = "", protocol: str = "http", judge: str = "default", max_steps: int | None = None, device: str = "cpu"
) -> Callable:
    """``img -> RestoreResult``: the served agent when ``triton_url`` is given, else the policy in-process.

    Raises:
        RemoteError: the Triton server or its agent model is not ready.
        WeightsNotFoundError / VersionNotFoundError / ...: the policy cannot be loaded.
    """
    if triton_url:
        from restore_r1.serving.client import TritonAgentClient

        client = TritonAgentClient(triton_url, protocol=protocol)
        client.check_ready()
        return lambda img: client.restore(img, max_steps=max_steps)
    from restore_r1.agent.inference import load_agent
    from restore_r1.registry import local_policy

    return load_agent(local_policy(policy or None), judge=judge, max_steps=max_steps, device=device).restore


def restore_shard(
    plan: BatchPlan,
    index: int,
    restore: Callable | None = None,
    triton_url: str = "",
    protocol: str = "http",
    judge: str = "default",
    max_steps: int | None = None,
    device: str = "cpu",
    max_pixels: int | None = None,
    overwrite: bool = False,
    endpoint: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_failure: Callable[[str, str], None] | None = None,
) -> ShardResult:
    """Restores shard ``index`` of ``plan``; photos with a record are skipped unless ``overwrite``.

    A photo that cannot be read, restored or written fails alone (counted and listed; a rerun
    retries it); the shard goes on. At its end the shard writes its records as one
    ``_manifests`` file.

    Args:
        restore: ``img -> RestoreResult``; None builds it with :func:`make_restorer` (through
            ``triton_url``, else in-process with ``plan.policy``).
        max_steps: tool calls per photo at most (None: the policy's own).
        max_pixels: refuse larger photos (None: ``$RESTORE_R1_MAX_PIXELS`` or 64 MP).
        on_record / on_failure: called with each new record / ``(key, message)`` as it happens.

    Raises:
        ValueError: ``index`` out of range. Errors reaching the stores or loading the agent
        propagate (nothing can be done without them).
    """
    from restore_r1.images import encode_image, read_image

    start = time.perf_counter()
    keys = plan.shard_keys(index)
    result = ShardResult(index=index, shards=plan.shards, photos=len(keys))
    source, target = _open(plan.input_uri, endpoint), _open(plan.output_uri, endpoint)
    done = set() if overwrite else set(target.list(RECORDS_DIR))
    todo = [k for k in keys if record_key(k) not in done]
    result.skipped = len(keys) - len(todo)
    records: dict[str, dict[str, Any]] = {}
    if todo and restore is None:
        restore = make_restorer(plan.policy, triton_url, protocol, judge, max_steps, device)
    with tempfile.TemporaryDirectory(prefix="restore-r1-batch-") as work:
        for key in todo:
            try:
                local = Path(work) / f"photo{PurePosixPath(key).suffix.lower()}"
                source.download(key, local)
                img = read_image(local, max_pixels=max_pixels)
                restored = restore(img)
                served = restored.policy_version
                if triton_url and plan.policy_version is not None and served != plan.policy_version:
                    raise ValueError(f"the server answered with policy version {served}, the batch is pinned to {plan.policy} (version {plan.policy_version})")
                target.write(output_key(key), encode_image(restored.image, OUTPUT_SUFFIX))
                record = {
                    "input": source.uri(key),
                    "output": target.uri(output_key(key)),
                    "tools": list(restored.tools),
                    "scores": [float(s) for s in restored.scores],
                    "seconds": float(restored.seconds),
                    "timings": {k: float(v) for k, v in restored.timings.items()},
                    "partial": bool(restored.partial),
                    "failed": restored.failed,
                    "policy_version": served if served is not None else plan.policy_version,
                    "width": int(img.shape[1]),
                    "height": int(img.shape[0]),
                    "shard": index,
                }
                target.write(record_key(key), json.dumps(record, sort_keys=True).encode())  # the photo is done from here on
            except Exception as exc:  # one photo's failure: counted, listed, retried by a rerun
                message = " ".join(str(exc).split()) or type(exc).__name__
                result.failed += 1
                if len(result.failures) < MAX_LISTED_FAILURES:
                    result.failures.append(f"{key}: {message}")
                if on_failure is not None:
                    on_failure(key, message)
                continue
            records[key] = record
            result.restored += 1
            result.partial += int(record["partial"])
            result.restore_seconds += record["seconds"]
            result.megapixels += record["width"] * record["height"] / 1e6
            if on_record is not None:
                on_record(record)
    lines = []
    for key in keys:
        if key in records:
            lines.append(records[key])
        elif record_key(key) in done:
            lines.append(json.loads(target.read(record_key(key))))
    target.write(shard_manifest_key(index, plan.shards), "".join(json.dumps(r, sort_keys=True) + "\n" for r in lines).encode())
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class BatchSummary:
    """The whole batch, as the summary step and the command report it.

    Attributes:
        photos: in the plan; ``done`` of them have a record now (restored now or before).
        restored, partial, skipped, failed: summed over the shards of this run.
        seconds: since the plan was made; ``photos_per_second`` and ``megapixels_per_second``
            are this run's restored photos and pixels over it.
        seconds_per_photo: the agent's mean time per restored photo.
    """

    photos: int
    done: int
    restored: int
    partial: int
    skipped: int
    failed: int
    failures: list[str]
    seconds: float
    photos_per_second: float
    megapixels_per_second: float
    seconds_per_photo: float
    policy: str
    output_uri: str

    def metrics(self) -> dict[str, float]:
        """The numbers KFP logs as metrics."""
        keys = ("photos", "done", "restored", "partial", "skipped", "failed", "seconds", "photos_per_second", "megapixels_per_second", "seconds_per_photo")
        return {f"batch_{k}": float(getattr(self, k)) for k in keys}


def finish_batch(plan: BatchPlan, results: list[ShardResult], endpoint: str | None = None, now: float | None = None) -> BatchSummary:
    """Joins the shards' manifests into ``manifest.jsonl`` (one line per done photo, sorted by
    input) and writes ``summary.json``; returns the summary.

    Raises:
        ValueError: ``results`` is not one result per shard of the plan.
    """
    indices = sorted(r.index for r in results)
    if indices != list(range(plan.shards)):
        raise ValueError(f"finish_batch: shard results {indices}, expected one for each of shards 0-{plan.shards - 1}")
    target = _open(plan.output_uri, endpoint)
    records = []
    for index in range(plan.shards):
        text = target.read(shard_manifest_key(index, plan.shards)).decode()
        records.extend(json.loads(line) for line in text.splitlines() if line.strip())
    records.sort(key=lambda r: r["input"])
    target.write(MANIFEST_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
    seconds = max(1e-9, (time.time() if now is None else now) - plan.started)
    restored = sum(r.restored for r in results)
    failures = [f for r in sorted(results, key=lambda r: r.index) for f in r.failures][:MAX_LISTED_FAILURES]
    summary = BatchSummary(
        photos=len(plan.keys),
        done=len(records),
        restored=restored,
        partial=sum(r.partial for r in results),
        skipped=sum(r.skipped for r in results),
        failed=sum(r.failed for r in results),
        failures=failures,
        seconds=seconds,
        photos_per_second=restored / seconds,
        megapixels_per_second=sum(r.megapixels for r in results) / seconds,
        seconds_per_photo=sum(r.restore_seconds for r in results) / restored if restored else 0.0,
        policy=plan.policy,
        output_uri=plan.output_uri,
    )
    target.write(SUMMARY_FILE, json.dumps(asdict(summary), indent=2, sort_keys=True).encode())
    return summary


def read_manifest(output_uri: str, endpoint: str | None = None) -> list[dict[str, Any]]:
    """The records of a finished batch's ``manifest.jsonl``."""
    text = _open(_check_location(output_uri, "output"), endpoint).read(MANIFEST_FILE).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_manifest_copy(output_uri: str, path: str | Path, endpoint: str | None = None) -> Path:
    """Copies a finished batch's ``manifest.jsonl`` to the local file ``path`` (the KFP artifact)."""
    from restore_r1.images import atomic_write_bytes

    return atomic_write_bytes(path, _open(_check_location(output_uri, "output"), endpoint).read(MANIFEST_FILE))


def summary_markdown(summary: BatchSummary) -> str:
    """The batch's report for the KFP UI and the log."""
    lines = [
        "# Batch restoration",
        "",
        f"- output: `{summary.output_uri}` (`{MANIFEST_FILE}`: one line per photo)",
        f"- policy: `{summary.policy or 'the Triton server'}`",
        f"- photos: {summary.photos}; done {summary.done}: restored in this run {summary.restored} ({summary.partial} partial), "
        f"skipped as done before {summary.skipped}; failed {summary.failed}",
        f"- throughput: {summary.photos_per_second:.2f} photos/s, {summary.megapixels_per_second:.3f} MP/s over {summary.seconds:.1f} s; "
        f"{summary.seconds_per_photo:.3f} s of agent time per photo",
    ]
    if summary.failures:
        more = f" (first {len(summary.failures)})" if summary.failed > len(summary.failures) else ""
        lines += ["", f"## Failed photos{more}: a rerun retries them", ""] + [f"- {f}" for f in summary.failures]
    return "\n".join(lines) + "\n"
