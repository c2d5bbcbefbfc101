"""The ``restore_r1_batch`` pipeline: its committed YAML, and (slow) a real run under kfp.local
against moto's S3 and a real Triton server, with one shard SIGKILLed and the run repeated; and
the same batch as ``restore-r1 restore s3://... -o s3://...`` in process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_YAML = ROOT / "pipelines" / "restore_r1_batch.yaml"
BUCKET = "restore-r1-batch"
#: 50 photos of two small sizes (width, height), in 2 shards.
SIZES = ((96, 64), (80, 80))
PHOTOS, SHARDS = 50, 2
#: Records of the shard to kill that must exist before it is killed (and it has 25 photos).
KILL_AFTER = 3


def test_committed_batch_pipeline_yaml_is_not_stale(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RESTORE_R1_IMAGE"}
    out = tmp_path / "compiled.yaml"
    cmd = [sys.executable, "-m", "pipelines.compile", "--pipeline", "batch", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    assert out.read_text() == COMMITTED_YAML.read_text(), "pipelines/restore_r1_batch.yaml is stale: run `make pipeline-yaml` and commit it"


def test_compiled_batch_pipeline_contents():
    from components.image import DEFAULT_IMAGE
    from pipelines.restore_r1_batch import MAX_PARALLEL_SHARDS

    docs = list(yaml.safe_load_all(COMMITTED_YAML.read_text()))
    spec, platform = docs[0], docs[1]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "defaultValue" not in params["input_uri"] and "defaultValue" not in params["output_uri"]  # required
    assert params["policy"]["defaultValue"] == "registry://restore-r1-policy@production" and params["triton_url"]["defaultValue"] == ""
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {DEFAULT_IMAGE}
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"list-photos", "for-loop-1", "summarize-batch"}
    loop = tasks["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--list-photos-Output"
    assert loop["iteratorPolicy"]["parallelismLimit"] == MAX_PARALLEL_SHARDS
    assert tasks["summarize-batch"]["inputs"]["parameters"]["results"]["taskOutputParameter"]["producerTask"] == "for-loop-1"
    assert all(not t.get("cachingOptions", {}).get("enableCache", False) for t in [tasks["list-photos"], tasks["summarize-batch"]])
    shard = executors["exec-restore-shard"]["container"]["resources"]["accelerator"]
    assert "accelerator_type" in shard["resourceType"] and "accelerator_limit" in shard["resourceCount"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all("secretAsEnv" in k8s[f"exec-{t}"] for t in ("list-photos", "restore-shard", "summarize-batch"))
    assert "nodeSelector" in k8s["exec-restore-shard"] and "tolerations" in k8s["exec-restore-shard"]


# ------------------------------------------------------------------------------------------------ slow
def batch_photos() -> list[np.ndarray]:
    from restore_r1.serving.testing import degraded_photos

    half = PHOTOS // len(SIZES)
    return [img for i, (w, h) in enumerate(SIZES) for img in degraded_photos(w, h, half, seed=100 * i)]


@pytest.fixture()
def s3(request, monkeypatch):
    pytest.importorskip("moto", reason="moto[server] is a dev dependency")
    boto3 = pytest.importorskip("boto3")
    endpoint = request.getfixturevalue("moto_endpoint")
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESTORE_R1_S3_ENDPOINT", endpoint)
    client = boto3.client("s3", endpoint_url=endpoint)
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return endpoint, client


@pytest.fixture(scope="module")
def moto_endpoint():
    pytest.importorskip("moto", reason="moto[server] is a dev dependency")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def upload(client, prefix: str, images: list[np.ndarray]) -> list[str]:
    from restore_r1.images import encode_image

    keys = [f"{prefix}/{'a' if i % 2 else 'b'}/photo{i:02d}.png" for i in range(len(images))]
    for key, img in zip(keys, images, strict=True):
        client.put_object(Bucket=BUCKET, Key=key, Body=encode_image(img))
    return keys


def keys_under(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix.rstrip("/") + "/")
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def decode(client, key: str) -> np.ndarray:
    import io

    from PIL import Image

    data = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


DRIVER = """
import sys, warnings
from kfp import local
warnings.filterwarnings("ignore", message=".*non-Python base image.*")
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1], raise_on_error=True)
from pipelines.restore_r1_batch import restore_r1_batch
restore_r1_batch(**__import__("json").loads(sys.argv[2]))
"""


def shard_process(session: int, shard: int) -> int | None:
    """The pid of shard ``shard``'s component process in session ``session`` (kfp.local runs each task as
    ``python -m kfp.dsl.executor_main ... --executor_input JSON``), or None while it has not started."""
    pattern = re.compile(rf'"shard":\s*{shard}(\.0)?\s*[,}}]')
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        text = " ".join(a.decode(errors="replace") for a in argv)
        if argv and argv[0].endswith(b"python") and "kfp.dsl.executor_main" in text and "restore_shard" in text and pattern.search(text):
            return int(entry.name)
    return None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_batch_pipeline_through_triton_on_s3_resumes_a_killed_shard(s3, tmp_path):
    from restore_r1.registry import open_registry, publish_policy
    from restore_r1.serving import backend as sb
    from restore_r1.serving.repository import MODEL_VERSION, write_repository
    from restore_r1.serving.server import DEFAULT_VENV, VENV_ENV, TritonServer
    from restore_r1.serving.testing import make_random_policy

    venv = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"no Triton venv at {venv}; run `make triton-venv`")
    endpoint, client = s3
    inputs = upload(client, "photos", batch_photos())
    repo = write_repository(tmp_path / "repo")
    policy_dir = make_random_policy(repo / sb.POLICY_MODEL / MODEL_VERSION / sb.POLICY_SUBDIR)
    registry_uri = f"s3://{BUCKET}/registry"
    version = publish_policy(open_registry(registry_uri, cache_dir=tmp_path / "cache"), "restore-r1-policy", policy_dir, stage="production")
    assert str(version.version) == MODEL_VERSION  # Triton's version of the policy equals the registry's
    params = {
        "input_uri": f"s3://{BUCKET}/photos",
        "output_uri": f"s3://{BUCKET}/restored",
        "policy": "registry://restore-r1-policy@production",
        "shards": SHARDS,
        "registry": registry_uri,
        "s3_endpoint": endpoint,
        "protocol": "grpc",
    }
    env = {**os.environ, "RESTORE_R1_REGISTRY_CACHE": str(tmp_path / "cache")}
    shard_keys = sorted(k.removeprefix("photos/") for k in inputs)[1::SHARDS]  # shard 1 of the plan

    with TritonServer(repo, venv, 0, 0, 0, log_path=tmp_path / "tritonserver.log") as server:
        params["triton_url"] = server.grpc_url

        def run(name: str) -> subprocess.Popen:
            log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
            cmd = [sys.executable, "-c", DRIVER, str(tmp_path / name), json.dumps(params)]
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        # 1. The first run: shard 1 is SIGKILLed once it has restored a few photos.
        first = run("run1")
        killed = None
        try:
            deadline = time.monotonic() + 240
            while killed is None and time.monotonic() < deadline and first.poll() is None:
                done = {k.removeprefix("restored/_records/").removesuffix(".json") for k in keys_under(client, "restored/_records")}
                if len(done & set(shard_keys)) >= KILL_AFTER:
                    pid = shard_process(first.pid, 1)
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        killed = pid
                time.sleep(0.05)
            assert killed is not None, "shard 1 was never seen running with records: " + (tmp_path / "run1.log").read_text()[-3000:]
            assert first.wait(240) != 0  # the pipeline fails with its shard
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        objects = keys_under(client, "restored")
        records = [k for k in objects if k.startswith("restored/_records/")]
        done_shard1 = {k.removeprefix("restored/_records/").removesuffix(".json") for k in records} & set(shard_keys)
        assert KILL_AFTER <= len(done_shard1) < len(shard_keys), "the kill came too late to leave work undone"
        assert "restored/manifest.jsonl" not in objects
        for key in objects:  # only whole objects at final names
            if key.endswith(".png"):
                assert decode(client, key).shape[2] == 3
            else:
                json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()[0])
        done_before = len(records)

        # 2. The rerun skips what is done and completes the rest.
        second = run("run2")
        assert second.wait(300) == 0, (tmp_path / "run2.log").read_text()[-4000:]

    from restore_r1.pipeline.localrun import EXECUTOR_OUTPUT, latest_run_dir

    executor = json.loads((latest_run_dir(tmp_path / "run2", "restore-r1-batch") / "summarize-batch" / EXECUTOR_OUTPUT).read_text())
    metrics = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["batch_photos"] == PHOTOS and metrics["batch_done"] == PHOTOS and metrics["batch_failed"] == 0
    assert metrics["batch_skipped"] == done_before and metrics["batch_restored"] == PHOTOS - done_before
    assert metrics["batch_photos_per_second"] > 0 and metrics["batch_megapixels_per_second"] > 0
    manifest = [json.loads(line) for line in client.get_object(Bucket=BUCKET, Key="restored/manifest.jsonl")["Body"].read().decode().splitlines()]
    assert [r["input"] for r in manifest] == sorted(f"s3://{BUCKET}/{k}" for k in inputs)
    assert {r["policy_version"] for r in manifest} == {MODEL_VERSION} and not any(r["partial"] for r in manifest)
    assert {(r["width"], r["height"]) for r in manifest} == set(SIZES)
    # the served answers are the in-process agent's (on the pixel lock: the same pixels)
    from restore_r1.agent.inference import Agent

    agent = Agent.load(policy_dir)
    for record in manifest[:2] + manifest[-2:]:
        key = record["input"].removeprefix(f"s3://{BUCKET}/")
        expected = agent.restore(decode(client, key))
        assert record["tools"] == expected.tools
        assert np.array_equal(decode(client, record["output"].removeprefix(f"s3://{BUCKET}/")), expected.image)


@pytest.mark.slow
def test_batch_command_on_s3_in_process_resumes_and_reports_bad_input(s3, tmp_path, capsys):
    from restore_r1.cli import main
    from restore_r1.serving.testing import make_random_policy

    _, client = s3
    upload(client, "cli-in", batch_photos()[:6])
    policy = make_random_policy(tmp_path / "policy")
    args = ["restore", f"s3://{BUCKET}/cli-in", "-o", f"s3://{BUCKET}/cli-out", "--policy", str(policy), "--json", "--max-steps", "2"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 6 and all(line["output"].startswith(f"s3://{BUCKET}/cli-out/") for line in lines)
    assert "6 restored (0 partial), 0 skipped as done before, 0 failed of 6" in err
    assert main(args) == 0  # the rerun finds everything done
    out, err = capsys.readouterr()
    assert out == "" and "0 restored (0 partial), 6 skipped as done before" in err
    assert len(keys_under(client, "cli-out/_records")) == 6 and "cli-out/manifest.jsonl" in keys_under(client, "cli-out")
    assert main(["restore", "s3://no-such-bucket/x", "-o", f"s3://{BUCKET}/y", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bucket 'no-such-bucket' does not exist" in err[0]
    assert main(["restore", f"s3://{BUCKET}/empty", "-o", f"s3://{BUCKET}/y", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no images" in err[0]
