"""The pipeline's distributed training step (restore_r1.pipeline.trainjob): the TrainJob that the
Kubeflow SDK's Kubernetes backend submits (to a fake Kubernetes API server, tests/fake_kube.py),
checked as the Trainer would get it; retries; bad requests; and, slow, the whole step with a fake
controller that runs the submitted command with torchrun (2 ranks) and marks the TrainJob complete.

Not tested here (no cluster): a real Kubeflow Trainer turning the TrainJob into a JobSet, and the
SDK's local-process backend (it builds a fresh venv and pip-installs torch into it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kubeflow.trainer", reason="the Kubeflow SDK (pip package kubeflow) is installed by `make venv` (the kubeflow extra)")

from restore_r1.agent.grpo import GRPOConfig  # noqa: E402
from restore_r1.pipeline import trainjob as tj  # noqa: E402
from restore_r1.serving.server import free_port
from tests.fake_kube import GROUP_VERSION, RUNTIME_NAME, FakeKube, condition  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _dataset(root: Path) -> Path:
    """A two-image data set folder (gt files exist but must not travel)."""
    from restore_r1.images import write_image
    from tests.test_trainer import toy_images

    lines = []
    for i, img in enumerate(toy_images(2)):
        write_image(root / "lq" / f"{i}.png", img)
        write_image(root / "gt" / f"{i}.png", img)
        lines.append(json.dumps({"id": str(i), "lq": f"lq/{i}.png", "gt": f"gt/{i}.png"}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _request(tmp_path: Path, **kw) -> tj.TrainJobRequest:
    base = dict(
        name=tj.trainjob_name("run-1"),
        image="registry.example.com/restore-r1:0.1.0",
        num_nodes=2,
        gpus_per_node=4,
        work_uri=str(tmp_path / "work"),
        train_args=("--steps", "3"),
        volume="restore-r1-runs",
        s3_endpoint="http://minio-service.kubeflow:9000",
        s3_secret="mlpipeline-minio-artifact",
        metrics_port=9400,
        pushgateway="http://pushgateway.monitoring:9091",
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    )
    base.update(kw)
    return tj.TrainJobRequest(**base)


def _exporting(result_uri: str):
    """A controller that 'trains' by exporting a made-up result, then reports Complete."""

    def on_create(job: dict) -> list[dict]:
        out = Path(result_uri)
        (out / "policy").mkdir(parents=True, exist_ok=True)
        (out / "policy" / "policy.safetensors").write_bytes(b"weights")
        (out / "policy" / "policy.json").write_text("{}")
        (out / "train_log.jsonl").write_text(json.dumps({"update": 1, "kl": 0.0}) + "\n")
        return condition(tj.COMPLETE)

    return on_create


def _trainer_pod(job: dict) -> dict:
    """The trainer pod a Trainer would build from the runtime and the TrainJob (merged by hand)."""
    trainer = job["spec"]["trainer"]
    (patch,) = job["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = rjob["template"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{job['metadata']['name']}-node-0-0", "labels": pod["metadata"]["labels"]},
        "spec": {
            "containers": [
                {
                    "name": container["name"],
                    "image": trainer["image"],
                    "command": trainer["command"],
                    "env": trainer["env"] + container["env"],
                    "volumeMounts": container["volumeMounts"],
                    "resources": trainer["resourcesPerNode"],
                }
            ],
            "volumes": pod["spec"]["volumes"],
            "nodeSelector": pod["spec"]["nodeSelector"],
            "tolerations": pod["spec"]["tolerations"],
        },
    }


def test_the_sdk_submits_the_trainjob_the_trainer_needs(tmp_path):
    import kubernetes_validate
    from kubeflow_trainer_api import models

    request = _request(tmp_path)
    data = _dataset(tmp_path / "dataset")
    with FakeKube(_exporting(request.result_uri)) as kube:
        records = tj.run_trainjob(data, tmp_path / "policy", tmp_path / "log.jsonl", request, client=kube.client(), poll_s=1, timeout_s=60)
    assert records == [{"update": 1, "kl": 0.0}] and (tmp_path / "policy" / "policy.safetensors").read_bytes() == b"weights"
    # the data set travelled without its ground truth
    staged = Path(request.data_uri)
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == ["lq/0.png", "lq/1.png", "manifest.jsonl"]

    (job,) = kube.created
    assert ("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs") in kube.requests
    assert job["apiVersion"] == GROUP_VERSION and job["kind"] == "TrainJob"
    assert job["metadata"]["name"] == request.name and job["metadata"]["labels"] == tj.TRAINJOB_LABELS
    spec = job["spec"]
    assert spec["runtimeRef"] == {"name": RUNTIME_NAME, "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 2 and trainer["image"] == request.image
    assert trainer["resourcesPerNode"] == {"requests": {"nvidia.com/gpu": 4}, "limits": {"nvidia.com/gpu": 4}}
    assert trainer["command"] == tj.trainer_command(request) and trainer["command"][:2] == ["torchrun", "--max-restarts=3"]
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["RESTORE_R1_METRICS_PORT"] == "9400" and env["RESTORE_R1_PUSHGATEWAY"] == request.pushgateway
    assert env["RESTORE_R1_S3_ENDPOINT"] == request.s3_endpoint and env["HF_HUB_OFFLINE"] == "1"
    (patch,) = spec["runtimePatches"]
    assert patch["manager"] == "trainer.kubeflow.org/kubeflow-sdk"
    # the SDK's own model of the Trainer API takes it back unchanged
    assert models.TrainerV1alpha1TrainJob.from_dict(job).to_dict() == job

    pod = _trainer_pod(job)
    assert pod["metadata"]["labels"] == tj.TRAINER_POD_LABELS
    assert pod["spec"]["volumes"] == [{"name": tj.WORK_VOLUME, "persistentVolumeClaim": {"claimName": "restore-r1-runs"}}]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": tj.WORK_VOLUME, "mountPath": tj.WORK_MOUNT}]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in pod["spec"]["containers"][0]["env"] if "valueFrom" in e}
    assert secrets == {var: {"name": "mlpipeline-minio-artifact", "key": key, "optional": True} for key, var in tj.S3_SECRET_KEYS.items()}
    kubernetes_validate.validate(pod, "1.30.0", strict=True)  # the merged pod is a valid Pod

    # the command is a restore-r1 train command line that reads the staged data and exports the result
    from restore_r1.cli import build_parser

    argv = trainer["command"][trainer["command"].index("restore_r1.cli") + 1 :]
    args = build_parser(argv).parse_args(argv)
    assert args.distributed and args.data == request.data_uri and args.export == request.result_uri
    assert args.out == f"{tj.WORK_MOUNT}/{request.name}/run" and args.metrics_run == request.name and args.steps == 3


def test_the_pipeline_settings_become_the_same_training_options():
    from restore_r1.cli import build_parser
    from restore_r1.cli.train import config_from_args
    from restore_r1.pipeline.steps import train_cli_args

    config = GRPOConfig(group_size=4, updates=7, batch_images=3, max_steps=2, seed=5, checkpoint_every=1, lr=1e-3, tool_cost=0.05, forbid_cycle=True)
    argv = ["train", "--data", "d", "--out", "o", *train_cli_args(config, "relative", "stats", ["nlm_denoise", "gamma_correction"])]
    args = build_parser(argv).parse_args(argv)
    assert config_from_args(args) == config and args.judge == "relative" and args.tools == ["nlm_denoise", "gamma_correction"]
    with pytest.raises(ValueError, match="norm_images"):
        train_cli_args(GRPOConfig(norm_images=3), "relative", "stats", ["x"])


def test_a_retried_step_waits_for_its_trainjob_and_a_failed_one_is_resubmitted(tmp_path):
    request = _request(tmp_path, num_nodes=1, volume="")
    data = _dataset(tmp_path / "dataset")
    outcomes = [tj.FAILED, tj.COMPLETE]
    exporting = _exporting(request.result_uri)

    def on_create(job):
        kind = outcomes.pop(0)
        return exporting(job) if kind == tj.COMPLETE else condition(tj.FAILED)

    with FakeKube(on_create) as kube:
        client = kube.client()
        with pytest.raises(RuntimeError, match=f"TrainJob {request.name} failed"):
            tj.run_trainjob(data, tmp_path / "p", tmp_path / "l", request, client=client, poll_s=1, timeout_s=60)
        tj.run_trainjob(data, tmp_path / "p", tmp_path / "l", request, client=client, poll_s=1, timeout_s=60)
        assert kube.deleted == [request.name] and len(kube.created) == 2
        # once more (the step retried after the job completed): no new TrainJob, same outputs
        tj.run_trainjob(data, tmp_path / "p2", tmp_path / "l2", request, client=client, poll_s=1, timeout_s=60)
        assert len(kube.created) == 2 and (tmp_path / "p2" / "policy.json").read_text() == "{}"
    # one node on the pod's own disk
    (patch,) = kube.created[-1]["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["spec"]["volumes"] == [{"name": tj.WORK_VOLUME, "emptyDir": {}}]


def test_bad_requests_name_the_problem(tmp_path):
    assert tj.wants_trainjob(2, 1) and tj.wants_trainjob(1, 2) and not tj.wants_trainjob(1, 1) and not tj.wants_trainjob(1, 0)
    assert tj.trainjob_name("a") == tj.trainjob_name("a") != tj.trainjob_name("b") and len(tj.trainjob_name("a")) <= 63
    with pytest.raises(ValueError, match="2 nodes need a shared volume"):
        _request(tmp_path, volume="")
    with pytest.raises(ValueError, match="is not a DNS label"):
        _request(tmp_path, name="Restore_R1")
    with pytest.raises(ValueError, match="need >= 1 node"):
        _request(tmp_path, num_nodes=0)
    with pytest.raises(ValueError, match="metrics port 70000"):
        _request(tmp_path, metrics_port=70000)
    with pytest.raises(ValueError, match="needs the pipeline run id"):
        from restore_r1.pipeline.steps import train_step

        train_step(tmp_path, tmp_path / "p", tmp_path / "l", "relative", "stats", "gamma_correction", 2, 1, 1, 1, 0, nodes=2, trainjob={"image": "x"})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.jsonl").write_text(json.dumps({"lq": "../../etc/passwd"}) + "\n")
    with pytest.raises(ValueError, match="'lq' must be a path inside the data set folder"):
        tj.stage_dataset(tmp_path / "bad", str(tmp_path / "w"))


# ------------------------------------------------------------------------- the whole step, slow


def _torchrun_controller(nproc: int, logs: list[str]):
    """Runs the trainer container's command as the Trainer's torch plugin would on one node
    (torchrun's PET_* variables), with the TrainJob's environment; Complete when it exits 0."""

    def on_create(job: dict) -> list[dict]:
        trainer = job["spec"]["trainer"]
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        env.update({e["name"]: e["value"] for e in trainer.get("env", [])})
        env.update(PET_NNODES=str(trainer.get("numNodes", 1)), PET_NPROC_PER_NODE=str(nproc), PET_NODE_RANK="0")
        env.update(PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(free_port()), PYTHONPATH=str(ROOT))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the image's torchrun
        proc = subprocess.run(trainer["command"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        logs.append(proc.stdout[-3000:] + proc.stderr[-3000:])
        return condition(tj.COMPLETE if proc.returncode == 0 else tj.FAILED)

    return on_create


@pytest.mark.slow
def test_the_training_step_runs_a_trainjob_end_to_end(tmp_path):
    from restore_r1.agent.policy import load_policy
    from restore_r1.cli import main
    from restore_r1.pipeline.steps import train_step

    photos = tmp_path / "photos"
    from restore_r1.cleanimages import load_clean
    from restore_r1.images import write_image

    for name in ("astronaut", "chelsea"):
        write_image(photos / f"{name}.png", load_clean(name))
    assert main(["synth", "--images", str(photos), "--crop", "64", "--cases", "1,4", "--out", str(tmp_path / "data"), "--no-progress"]) == 0
    logs: list[str] = []
    settings = {"run_id": "kfp-run-42", "image": "img", "work_uri": str(tmp_path / "work"), "mount_path": str(tmp_path / "mnt")}
    with FakeKube(_torchrun_controller(2, logs)) as kube:
        out = train_step(
            tmp_path / "data",
            tmp_path / "policy",
            tmp_path / "log.jsonl",
            judge="relative",
            encoder="stats",
            tools="gamma_correction,nlm_denoise",
            group_size=2,
            steps=2,
            max_steps=2,
            batch_images=2,
            seed=0,
            nodes=1,
            gpus_per_node=2,
            trainjob=settings,
            client=kube.client(),
        )
    assert len(kube.created) == 1, logs
    assert out["parameters"]["trainjob"] == {"nodes": 1, "gpus_per_node": 2, "runtime": ""} and out["final"]["update"] == 2, logs
    policy = load_policy(tmp_path / "policy", available_tools=["gamma_correction", "nlm_denoise"])
    assert policy.config.tool_names == ["gamma_correction", "nlm_denoise"]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in log] == [1, 2]
    # the run folder (checkpoints) is where the volume would be: under the TrainJob's name
    run = tmp_path / "mnt" / tj.trainjob_name("kfp-run-42") / "run"
    assert (run / "checkpoints" / "latest").read_text().strip() == "update_000002"
