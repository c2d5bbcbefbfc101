"""Model registry on S3: against a real S3 HTTP endpoint (moto's server on 127.0.0.1).

Covers the round trip, two concurrent publishers, a corrupt stored object, and the endpoint
going away in the middle of an upload (a local TCP proxy that cuts the connection).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

pytest.importorskip("moto", reason="moto[server] is a dev dependency")
boto3 = pytest.importorskip("boto3")

from restore_r1.errors import ChecksumError  # noqa: E402
from restore_r1.registry import S3Store, StoreUnavailableError, open_registry, publish_policy, pull_policy  # noqa: E402
from tests.test_registry import make_policy  # noqa: E402

pytestmark = pytest.mark.slow
BUCKET = "restore-r1-test"
#: Bytes the proxy forwards before it cuts every connection (well inside a 2 MB upload).
CUT_AFTER_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(moto_endpoint, monkeypatch, request):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("RESTORE_R1_S3_ENDPOINT", moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    prefix = f"s3://{BUCKET}/{request.node.name.replace('[', '_').replace(']', '')}"
    return prefix, client


def test_s3_round_trip_and_registry_uri(s3, tmp_path, monkeypatch):
    location, client = s3
    registry = open_registry(location, cache_dir=tmp_path / "cache")
    policy = make_policy(tmp_path / "p")
    v1 = publish_policy(registry, "pol", policy, metrics={"policy_psnr": 19.0}, stage="production")
    v2 = publish_policy(registry, "pol", make_policy(tmp_path / "q", seed=3))
    assert (v1.version, v2.version) == (1, 2) and v1.artifact_uri.startswith(f"{location}/pol/artifacts/")
    assert registry.aliases("pol") == {"production": 1}
    registry.promote("pol", 2, "staging")
    assert [(v.version, v.aliases) for v in registry.list_versions("pol")] == [(1, ["production"]), (2, ["staging"])]
    monkeypatch.setenv("RESTORE_R1_REGISTRY", location)
    monkeypatch.setenv("RESTORE_R1_REGISTRY_CACHE", str(tmp_path / "cache2"))
    pulled = pull_policy("registry://pol@production")
    assert (pulled / "policy.safetensors").read_bytes() == (policy / "policy.safetensors").read_bytes()
    # A bare policy folder in S3 (s3:// URI) resolves too.
    bare = S3Store(f"{location}/bare")
    for f in policy.iterdir():
        bare.upload(f.name, f)
    assert (pull_policy(f"{location}/bare") / "policy.json").read_bytes() == (policy / "policy.json").read_bytes()


def test_s3_concurrent_publishers_get_distinct_versions(s3, tmp_path):
    location, _ = s3
    n = 4
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            src = tmp_path / f"src{i}.bin"
            src.write_bytes(bytes([i]) * 5000)
            registry = open_registry(location, cache_dir=tmp_path / f"c{i}")
            barrier.wait()
            registry.publish("m", src, "raw", metrics={"index": i})
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    registry = open_registry(location, cache_dir=tmp_path / "cache")
    versions = registry.list_versions("m")
    assert [v.version for v in versions] == list(range(1, n + 1))
    for v in versions:
        i = int(v.metrics["index"])
        assert (registry.pull("m", v.version) / f"src{i}.bin").read_bytes() == bytes([i]) * 5000


def test_s3_conditional_create_refuses_an_existing_key(s3):
    location, _ = s3
    store = S3Store(location)
    assert store.create("k.json", b"1") is True
    assert store.create("k.json", b"2") is False
    assert store.read("k.json") == b"1"


def test_s3_corrupt_object_is_refused(s3, tmp_path):
    location, client = s3
    registry = open_registry(location, cache_dir=tmp_path / "cache")
    version = publish_policy(registry, "pol", make_policy(tmp_path / "p"))
    bucket, key = version.artifact_uri[len("s3://") :].split("/", 1)
    client.put_object(Bucket=bucket, Key=f"{key}/policy.safetensors", Body=b"tampered")
    with pytest.raises(ChecksumError, match="policy.safetensors is corrupt"):
        registry.pull("pol", 1)
    assert not registry.cache_path("pol", 1).exists()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` and, once ``cut_after`` bytes went
    upstream in total, closes every connection and stops accepting: the endpoint goes away."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.sent = 0
        self.gone = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.gone.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.gone.is_set():  # accepted while going away: refuse it
                client.close()
                break
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self.listener.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while not self.gone.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    self.sent += len(data)
                    if self.sent >= self.cut_after:
                        self.close()
                        return
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.gone.set()
        try:
            self.listener.close()  # new connections are refused from now on
        except OSError:
            pass
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_s3_endpoint_going_away_mid_upload_publishes_nothing(s3, tmp_path, moto_endpoint):
    location, _ = s3
    src = tmp_path / "big"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (src / "b.json").write_text("{}")
    proxy = CuttingProxy(int(moto_endpoint.rsplit(":", 1)[1]), CUT_AFTER_BYTES)
    try:
        broken = open_registry(location, endpoint_url=f"http://127.0.0.1:{proxy.port}", cache_dir=tmp_path / "c1")
        with pytest.raises(StoreUnavailableError, match="unreachable or broke off"):
            broken.publish("m", src, "raw")
        assert proxy.gone.is_set() and proxy.sent >= CUT_AFTER_BYTES
    finally:
        proxy.close()
    direct = open_registry(location, cache_dir=tmp_path / "c2")
    assert direct.version_numbers("m") == []  # no reader sees any version of it
    version = direct.publish("m", src, "raw")  # and the next publish is version 1, intact
    assert version.version == 1
    assert (direct.pull("m", 1) / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert isinstance(Path(direct.cache_path("m", 1)), Path)
    # one PUT per file: the cut upload stored no object, so there is no garbage either
    assert direct.collect_garbage("m", min_age_s=0) == []


def test_s3_garbage_collection_after_a_publisher_died(s3, tmp_path):
    location, _ = s3
    registry = open_registry(location, cache_dir=tmp_path / "cache")
    policy = make_policy(tmp_path / "p")
    original = registry.store.create

    def create(key, data):
        raise RuntimeError("publisher died")

    registry.store.create = create
    with pytest.raises(RuntimeError):
        publish_policy(registry, "pol", policy)
    registry.store.create = original
    kept = publish_policy(registry, "pol", policy)
    assert [o.deleted for o in registry.collect_garbage("pol")] == [False]  # too young for the default grace
    orphans = registry.collect_garbage("pol", min_age_s=0)
    assert len(orphans) == 1 and orphans[0].deleted and orphans[0].uri.startswith(f"{location}/pol/artifacts/")
    assert {k.rsplit("/", 1)[0] for k in registry.store.list("pol/artifacts")} == {kept.artifact_key}
    assert (registry.pull("pol", 1) / "policy.json").read_bytes() == (policy / "policy.json").read_bytes()
