"""Model registry on the local backend: versions, aliases, atomic publishing, verified pulls, URIs, CLI."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from restore_r1.agent.policy import Policy, PolicyConfig, save_policy
from restore_r1.cli import main as cli_main
from restore_r1.errors import ChecksumError, WeightsNotFoundError
from restore_r1.registry import (
    POLICY_FORMAT,
    LocalStore,
    Registry,
    RegistryError,
    VersionNotFoundError,
    open_registry,
    parse_registry_uri,
    publish_policy,
    pull_policy,
)


def make_policy(folder: Path, seed: int = 0) -> Path:
    """A small real policy checkpoint (stats encoder, two embedded tools)."""
    config = PolicyConfig("stats", {"name": "stats"}, 4, ["gamma_correction", "clahe"], hidden_sizes=(8,), max_steps=2)
    return save_policy(Policy(config, generator=torch.Generator().manual_seed(seed)), folder)


@pytest.fixture()
def registry(tmp_path) -> Registry:
    return open_registry(tmp_path / "registry", cache_dir=tmp_path / "cache")


def test_publish_records_everything_and_pull_verifies(registry, tmp_path):
    policy = make_policy(tmp_path / "p")
    version = publish_policy(
        registry,
        "restore-r1-policy",
        policy,
        metrics={"policy_psnr": 20.5},
        parameters={"steps": 3},
        dataset={"uri": "/data/x", "manifest_sha256": "ab"},
        run={"id": "r1", "name": "run-1"},
        stage="staging",
    )
    assert (version.name, version.version, version.format, version.aliases) == ("restore-r1-policy", 1, POLICY_FORMAT, ["staging"])
    got = registry.get("restore-r1-policy", "staging")
    assert got.metrics == {"policy_psnr": 20.5} and got.parameters == {"steps": 3}
    assert got.dataset["uri"] == "/data/x" and got.run == {"id": "r1", "name": "run-1"}
    assert got.created.endswith("+00:00") and Path(got.artifact_uri).is_dir()
    from restore_r1.images import sha256_file

    assert {f.path: f.sha256 for f in got.files} == {p.name: sha256_file(p) for p in policy.iterdir()}
    pulled = registry.pull("restore-r1-policy", 1)
    assert sorted(p.name for p in pulled.iterdir()) == ["policy.json", "policy.safetensors"]
    assert (pulled / "policy.safetensors").read_bytes() == (policy / "policy.safetensors").read_bytes()


def test_versions_aliases_and_lookup_errors(registry, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc")
    assert [registry.publish("m", src, "raw").version for _ in range(3)] == [1, 2, 3]
    assert registry.resolve("m", "latest") == 3
    with pytest.raises(VersionNotFoundError, match="no production version"):
        registry.get("m", "production")
    registry.promote("m", 2, "production")
    registry.promote("m", 3, "staging")
    assert registry.aliases("m") == {"production": 2, "staging": 3}
    assert registry.get("m", "production").aliases == ["production"]
    registry.promote("m", 3, "production")  # moving an alias
    assert registry.resolve("m", "production") == 3
    with pytest.raises(VersionNotFoundError, match=r"no version 9 \(versions: 1, 2, 3\)"):
        registry.get("m", 9)
    with pytest.raises(ValueError, match="did you mean production"):
        registry.promote("m", 1, "prod")
    with pytest.raises(ValueError, match="invalid model name"):
        registry.publish("../evil", src, "raw")
    assert registry.models() == ["m"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("registry://restore-r1-policy@production", ("restore-r1-policy", "production")),
        ("registry://p@7", ("p", "7")),
        ("registry://p", ("p", "production")),
        ("p@latest", ("p", "latest")),
    ],
)
def test_parse_registry_uri(uri, expected):
    assert parse_registry_uri(uri) == expected


@pytest.mark.parametrize("uri", ["registry://p@", "registry://a/b@1", "registry://p@prod", "registry://@1"])
def test_parse_registry_uri_rejects(uri):
    with pytest.raises(ValueError):
        parse_registry_uri(uri)


def test_corrupt_artifact_is_refused_and_cache_never_holds_it(registry, tmp_path):
    version = publish_policy(registry, "p", make_policy(tmp_path / "p"))
    stored = Path(version.artifact_uri) / "policy.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="policy.safetensors is corrupt"):
        registry.pull("p", 1)
    target = registry.cache_path("p", 1)
    assert not target.exists() and not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_tampered_cache_is_downloaded_again(registry, tmp_path):
    publish_policy(registry, "p", make_policy(tmp_path / "p"))
    pulled = registry.pull("p", 1)
    (pulled / "policy.json").write_text("{}")
    again = registry.pull("p", 1)
    assert again == pulled and json.loads((again / "policy.json").read_text())["kind"] == "restore_r1.policy"


def test_publisher_dying_before_manifest_leaves_no_version(registry, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)

    class Dies(Exception):
        pass

    def create(key, data):
        raise Dies()

    original = registry.store.create
    registry.store.create = create
    with pytest.raises(Dies):
        registry.publish("m", src, "raw")
    registry.store.create = original
    assert registry.version_numbers("m") == [] and registry.models() == []
    assert registry.publish("m", src, "raw").version == 1


def test_garbage_collection_removes_only_old_unreferenced_uploads(registry, tmp_path, capsys):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    original = registry.store.create

    def create(key, data):
        raise RuntimeError("publisher died")

    registry.store.create = create
    with pytest.raises(RuntimeError):
        registry.publish("m", src, "raw")  # leaves an upload that no version references
    registry.store.create = original
    kept = registry.publish("m", src, "raw")
    uploads = {k.split("/")[2] for k in registry.store.list("m/artifacts")}
    assert len(uploads) == 2

    fresh = registry.collect_garbage("m")  # default grace period: the orphan is too young
    assert [o.deleted for o in fresh] == [False] and len(registry.store.list("m/artifacts")) == 2
    later = time.time() + 25 * 3600
    dry = registry.collect_garbage("m", dry_run=True, now=later)
    assert [o.deleted for o in dry] == [False] and len(registry.store.list("m/artifacts")) == 2
    done = registry.collect_garbage("m", now=later)
    assert len(done) == 1 and done[0].deleted and done[0].age_s >= 25 * 3600
    assert {k.split("/")[2] for k in registry.store.list("m/artifacts")} == {kept.artifact_key.split("/")[2]}
    assert not Path(done[0].uri).exists()  # the emptied upload folder is gone too
    assert (registry.pull("m", 1) / "f.bin").read_bytes() == src.read_bytes()  # the version is intact
    assert registry.collect_garbage("m", min_age_s=0) == []

    assert cli_main(["registry", "gc", "m", "--registry", registry.location, "--min-age-hours", "0"]) == 0
    assert "0 of 0 unreferenced upload(s) of m deleted" in capsys.readouterr().out


def test_stale_listing_loses_race_and_takes_next_number(tmp_path):
    """Two publishers that both saw version 1 as free: the second takes 2, nothing is overwritten."""
    store = LocalStore(tmp_path / "reg")
    registry = Registry(store, cache_dir=tmp_path / "cache")
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    registry.publish("m", a, "raw")
    registry.version_numbers = lambda name: []  # a listing taken before the first publish
    assert registry.publish("m", b, "raw").version == 2
    del registry.version_numbers
    assert (registry.pull("m", 1) / "a.bin").read_bytes() == b"first"
    assert (registry.pull("m", 2) / "b.bin").read_bytes() == b"second"


def _publish_in_process(root: str, cache: str, index: int, barrier) -> None:
    src = Path(cache) / f"src{index}.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(f"payload {index}".encode() * 100)
    registry = open_registry(root, cache_dir=cache)
    barrier.wait()
    registry.publish("m", src, "raw", metrics={"index": index})


def test_concurrent_publishers_in_processes_all_get_distinct_versions(tmp_path):
    n = 4
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_publish_in_process, args=(str(tmp_path / "reg"), str(tmp_path / f"c{i}"), i, barrier)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n
    registry = open_registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    versions = registry.list_versions("m")
    assert [v.version for v in versions] == list(range(1, n + 1))
    assert sorted(int(v.metrics["index"]) for v in versions) == list(range(n))
    for v in versions:
        payload = (registry.pull("m", v.version) / f"src{int(v.metrics['index'])}.bin").read_bytes()
        assert payload == f"payload {int(v.metrics['index'])}".encode() * 100


def test_pull_policy_and_agent_resolve_registry_uri(tmp_path, monkeypatch):
    from restore_r1.agent.inference import resolve_policy
    from restore_r1.registry import local_policy

    monkeypatch.setenv("RESTORE_R1_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("RESTORE_R1_REGISTRY_CACHE", str(tmp_path / "cache"))
    registry = open_registry()
    publish_policy(registry, "pol", make_policy(tmp_path / "a", seed=1), stage="production")
    publish_policy(registry, "pol", make_policy(tmp_path / "b", seed=2))
    prod = local_policy("registry://pol@production")
    with pytest.raises(WeightsNotFoundError, match="registry URI"):
        resolve_policy("registry://pol@production")  # the agent layer takes local folders only
    monkeypatch.setenv("RESTORE_R1_POLICY", "registry://pol@2")  # the variable may hold a URI
    assert (local_policy(None) / "policy.safetensors").read_bytes() == (tmp_path / "b" / "policy.safetensors").read_bytes()
    monkeypatch.delenv("RESTORE_R1_POLICY")
    assert (prod / "policy.safetensors").read_bytes() == (tmp_path / "a" / "policy.safetensors").read_bytes()
    assert (pull_policy("registry://pol@2") / "policy.safetensors").read_bytes() == (tmp_path / "b" / "policy.safetensors").read_bytes()
    registry.publish("notapolicy", tmp_path / "a", "raw", stage="production")
    with pytest.raises(RegistryError, match="not a policy"):
        pull_policy("registry://notapolicy@production")
    with pytest.raises(VersionNotFoundError):
        pull_policy("registry://pol@staging")


def test_publish_policy_refuses_a_corrupt_checkpoint(registry, tmp_path):
    policy = make_policy(tmp_path / "p")
    (policy / "policy.safetensors").write_bytes(b"garbage")
    with pytest.raises(ChecksumError):
        publish_policy(registry, "p", policy)
    assert registry.models() == []


def test_cli_list_show_promote_pull(tmp_path, capsys, monkeypatch):
    reg = str(tmp_path / "reg")
    monkeypatch.delenv("RESTORE_R1_REGISTRY", raising=False)
    policy = make_policy(tmp_path / "p")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"summary": {"policy": {"psnr": 21.0, "images": 3}, "input": {"psnr": 18.0}}}))
    assert cli_main(["registry", "publish", str(policy), "--name", "pol", "--metrics", str(results), "--registry", reg]) == 0
    assert "published registry://pol@1" in capsys.readouterr().out
    assert cli_main(["registry", "list", "--registry", reg]) == 0
    assert "pol  1 version(s)" in capsys.readouterr().out
    assert cli_main(["registry", "promote", "pol@1", "--to", "production", "--registry", reg]) == 0
    assert "production -> registry://pol@1" in capsys.readouterr().out
    assert cli_main(["registry", "show", "registry://pol@production", "--json", "--registry", reg]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metrics"] == {"policy_psnr": 21.0, "input_psnr": 18.0, "policy_psnr_gain": 3.0} and shown["aliases"] == ["production"]
    out_dir = tmp_path / "pulled"
    assert cli_main(["registry", "pull", "pol", "--out", str(out_dir), "--registry", reg]) == 0
    assert (out_dir / "policy.json").is_file()
    assert cli_main(["registry", "show", "pol@7", "--registry", reg]) == 2
    assert "pol has no version 7" in capsys.readouterr().err


def test_kubeflow_model_registry_adapter_with_fake_client(registry, tmp_path):
    from restore_r1.registry.kubeflow import KubeflowModelRegistry

    calls = {}

    class FakeClient:
        def register_model(self, name, uri, **kwargs):
            calls["register"] = (name, uri, kwargs)
            return "registered"

    version = publish_policy(registry, "pol", make_policy(tmp_path / "p"), metrics={"policy_psnr": 20.0}, run={"id": "abc", "name": "run"}, stage="production")
    assert KubeflowModelRegistry(FakeClient()).mirror(version) == "registered"
    name, uri, kwargs = calls["register"]
    assert (name, uri, kwargs["version"], kwargs["model_format_name"]) == ("pol", version.artifact_uri, "1", POLICY_FORMAT)
    meta = kwargs["metadata"]
    assert meta["restore_r1.metric.policy_psnr"] == 20.0 and meta["restore_r1.aliases"] == "production"
    assert meta["restore_r1.sha256.policy.safetensors"] == next(f.sha256 for f in version.files if f.path == "policy.safetensors")
    assert kwargs["model_source_id"] == "abc"


def test_kubeflow_adapter_matches_the_real_client_signature():
    model_registry = pytest.importorskip("model_registry", reason="model-registry (optional) is not installed")
    import inspect

    params = inspect.signature(model_registry.ModelRegistry.register_model).parameters
    used = {
        "model_format_name",
        "model_format_version",
        "version",
        "version_description",
        "description",
        "model_source_kind",
        "model_source_class",
        "model_source_id",
        "model_source_name",
        "metadata",
    }
    assert used <= set(params), sorted(used - set(params))
    assert {"get_model_version", "update"} <= set(dir(model_registry.ModelRegistry))
