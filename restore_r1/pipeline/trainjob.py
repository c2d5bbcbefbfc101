"""Distributed GRPO from the pipeline: a Kubeflow Trainer ``TrainJob`` launched through the Kubeflow SDK.

When a run asks for more than one node or more than one GPU, the pipeline's training step does not
train in its own pod. It

1. uploads the data set's degraded images and manifest to ``{work_uri}/{name}/data`` (an S3
   prefix the pods can read, e.g. under KFP's own MinIO bucket; a folder in tests);
2. submits a TrainJob through ``kubeflow.trainer.TrainerClient`` with a ``CustomTrainerContainer``
   (the project image, ``num_nodes``, GPUs per node) on the PyTorch runtime (``torch-distributed``):
   every node runs ``torchrun -m restore_r1.cli train --distributed`` (the Trainer's torch plugin
   sets torchrun's ``PET_*`` variables), reading the data from the store, checkpointing into the
   run folder on a shared volume, and rank 0 exports the policy and the log to
   ``{work_uri}/{name}/result``;
3. waits for the TrainJob to complete and downloads the result as the step's outputs.

A killed rank is restarted by torchrun inside its node (``--max-restarts``) and the run resumes
from its latest checkpoint; a retried pipeline step finds its TrainJob by name (derived from the
pipeline run id) and waits for it, or resubmits a failed one, which resumes from the checkpoints
on the volume. More than one node needs ``volume``: a ReadWriteMany PersistentVolumeClaim (every
rank must see rank 0's run folder; the trainer checks). One node with several GPUs can use the
pod's own disk.

The SDK's Kubernetes backend runs against a real cluster only; tests/test_trainjob.py runs it
against a fake Kubernetes API server (and a fake controller that runs the submitted command with
torchrun), not against a real Kubeflow Trainer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Labels on every trainer pod (the chart's PodMonitor selects them; trainingMonitor in values.yaml).
TRAINER_POD_LABELS = {"app.kubernetes.io/name": "restore-r1-trainer", "app.kubernetes.io/component": "grpo"}
#: Labels on the TrainJob object itself.
TRAINJOB_LABELS = {"app.kubernetes.io/part-of": "restore-r1", "app.kubernetes.io/component": "grpo"}
#: Kubeflow Trainer's PyTorch runtime (a ClusterTrainingRuntime of its default install).
DEFAULT_RUNTIME = "torch-distributed"
#: The replicated job and container of the Trainer's torch runtimes that the patches address.
TRAINER_JOB = "node"
#: Port rank 0 serves /metrics on when the run asks for live metrics (the chart's default too).
DEFAULT_METRICS_PORT = 9400
#: Seconds rank 0 keeps /metrics up after the last update: two scrapes of the chart's 15 s interval.
METRICS_LINGER_S = 30
#: Where the run folders live in the trainer pods (the volume, or the pod's own disk).
WORK_MOUNT = "/mnt/restore-r1"
WORK_VOLUME = "restore-r1-work"
#: torchrun's restarts of a node's workers after one dies (each resumes from the checkpoint).
TORCHRUN_MAX_RESTARTS = 3
#: Keys under ``{work_uri}/{name}/``.
DATA_KEY, RESULT_KEY = "data", "result"
#: Files the run exports (rank 0) and the step collects.
RESULT_FILES = ("policy/policy.safetensors", "policy/policy.json", "train_log.jsonl")
#: S3 credentials from a secret, as the pipeline's other steps read them (secret key -> variable).
S3_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
#: The TrainJob statuses of the SDK (kubeflow.trainer.constants).
COMPLETE, FAILED = "Complete", "Failed"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def trainjob_name(run_id: str) -> str:
    """The TrainJob of a pipeline run: ``restore-r1-train-<12 hex of sha256(run_id)>`` (a DNS label,
    the same on every retry of the step)."""
    if not run_id:
        raise ValueError("trainjob_name: empty run id")
    return "restore-r1-train-" + hashlib.sha256(run_id.encode()).hexdigest()[:12]


def wants_trainjob(num_nodes: int, gpus_per_node: int) -> bool:
    """More than one node, or more than one GPU: the run is launched as a TrainJob."""
    return num_nodes > 1 or gpus_per_node > 1


@dataclass(frozen=True)
class TrainJobRequest:
    """One distributed training run as the pipeline asks for it.

    Attributes:
        name: the TrainJob's name (:func:`trainjob_name`), also its run folder and store prefix.
        image: the project image (restore-r1 installed, torchrun on PATH).
        num_nodes: trainer pods; torchrun runs one rank per GPU in each.
        gpus_per_node: GPUs of each pod (``gpu_resource``); 0 runs on CPUs.
        work_uri: ``s3://bucket/prefix`` (or a folder) the step and the pods exchange data through.
        train_args: ``restore-r1 train`` hyper-parameter options (not --data/--out/--distributed).
        volume: PersistentVolumeClaim (ReadWriteMany) holding the run folders; "" uses each pod's
            own disk (one node only; no resume after the pod is replaced).
        mount_path: where the run folders are in the pods.
        runtime: the (Cluster)TrainingRuntime.
        gpu_resource: the extended resource name of a GPU.
        s3_endpoint: the S3 endpoint (MinIO) the pods use; "" for AWS.
        s3_secret: Secret with ``accesskey``/``secretkey`` for the store; "" for none.
        metrics_port: rank 0 serves /metrics on it (0: no server).
        pushgateway: Pushgateway URL rank 0 pushes to ("" for none).
        node_selector, tolerations: scheduling of the trainer pods.
    """

    name: str
    image: str
    num_nodes: int
    gpus_per_node: int
    work_uri: str
    train_args: tuple[str, ...] = ()
    volume: str = ""
    mount_path: str = WORK_MOUNT
    runtime: str = DEFAULT_RUNTIME
    gpu_resource: str = "nvidia.com/gpu"
    s3_endpoint: str = ""
    s3_secret: str = ""
    metrics_port: int = 0
    pushgateway: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.name):
            raise ValueError(f"TrainJob name {self.name!r} is not a DNS label (lower-case letters, digits, '-', at most 63)")
        if self.num_nodes < 1 or self.gpus_per_node < 0:
            raise ValueError(f"TrainJob {self.name}: {self.num_nodes} node(s) with {self.gpus_per_node} GPU(s) each; need >= 1 node, >= 0 GPUs")
        if self.num_nodes > 1 and not self.volume:
            raise ValueError(
                f"TrainJob {self.name}: {self.num_nodes} nodes need a shared volume for the run folder "
                "(set train_volume to a ReadWriteMany PersistentVolumeClaim): every rank resumes from rank 0's checkpoints"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"TrainJob {self.name}: metrics port {self.metrics_port} outside 0-65535")
        if not self.work_uri:
            raise ValueError(f"TrainJob {self.name}: no work_uri to exchange the data set and the result through")
        if not self.image:
            raise ValueError(f"TrainJob {self.name}: no image")

    @property
    def data_uri(self) -> str:
        return _join(self.work_uri, self.name, DATA_KEY)

    @property
    def result_uri(self) -> str:
        return _join(self.work_uri, self.name, RESULT_KEY)

    @property
    def run_dir(self) -> str:
        return f"{self.mount_path.rstrip('/')}/{self.name}/run"


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


# ----------------------------------------------------------------------- what is submitted
def trainer_command(request: TrainJobRequest) -> list[str]:
    """The trainer container's command: torchrun (its rendezvous from the Trainer's ``PET_*``
    variables) running ``restore-r1 train --distributed``."""
    return [
        "torchrun",
        f"--max-restarts={TORCHRUN_MAX_RESTARTS}",
        "-m",
        "restore_r1.cli",
        "train",
        "--distributed",
        "--data",
        request.data_uri,
        "--out",
        request.run_dir,
        "--export",
        request.result_uri,
        "--metrics-run",
        request.name,
        "--metrics-linger",
        str(METRICS_LINGER_S),
        "--no-progress",
        *request.train_args,
    ]


def trainer_env(request: TrainJobRequest) -> dict[str, str]:
    """Plain environment variables of the trainer container (the secret's come in :func:`runtime_patch`)."""
    from restore_r1.agent.train_metrics import METRICS_PORT_ENV, PUSHGATEWAY_ENV
    from restore_r1.registry.stores import S3_ENDPOINT_ENVS

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if request.s3_endpoint:
        env[S3_ENDPOINT_ENVS[0]] = request.s3_endpoint
    if request.metrics_port:
        env[METRICS_PORT_ENV] = str(request.metrics_port)
    if request.pushgateway:
        env[PUSHGATEWAY_ENV] = request.pushgateway
    return env


def resources_per_node(request: TrainJobRequest) -> dict[str, int] | None:
    """The SDK's ``resources_per_node``: the GPUs of each pod (None on CPUs: the runtime's own)."""
    return {request.gpu_resource: request.gpus_per_node} if request.gpus_per_node else None


def runtime_patch(request: TrainJobRequest):
    """The SDK ``RuntimePatch`` of the trainer pods: labels, the run-folder volume, the store's
    credentials, node selector and tolerations."""
    from kubeflow.trainer.options import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        RuntimePatch,
        TrainingRuntimeSpecPatch,
    )

    volume = {"name": WORK_VOLUME, **({"persistentVolumeClaim": {"claimName": request.volume}} if request.volume else {"emptyDir": {}})}
    secret_env = (
        [{"name": var, "valueFrom": {"secretKeyRef": {"name": request.s3_secret, "key": key, "optional": True}}} for key, var in S3_SECRET_KEYS.items()]
        if request.s3_secret
        else None
    )
    container = ContainerPatch(name=TRAINER_JOB, env=secret_env, volume_mounts=[{"name": WORK_VOLUME, "mountPath": request.mount_path}])
    pod = PodTemplatePatch(
        metadata={"labels": dict(TRAINER_POD_LABELS)},
        spec=PodSpecPatch(
            volumes=[volume],
            containers=[container],
            node_selector=dict(request.node_selector) or None,
            tolerations=[dict(t) for t in request.tolerations] or None,
        ),
    )
    job = ReplicatedJobPatch(name=TRAINER_JOB, template=JobTemplatePatch(spec=JobSpecPatch(template=pod)))
    return RuntimePatch(training_runtime_spec=TrainingRuntimeSpecPatch(template=JobSetTemplatePatch(spec=JobSetSpecPatch(replicated_jobs=[job]))))


def submit(request: TrainJobRequest, client) -> str:
    """Creates the TrainJob through ``client`` (a ``kubeflow.trainer.TrainerClient``), unless one
    of that name exists and has not failed (a retried step); a failed one is deleted and created
    again (it resumes from its checkpoints). Returns the name."""
    from kubeflow.trainer import CustomTrainerContainer
    from kubeflow.trainer.options import Labels, Name, TrainerCommand

    existing = _existing(client, request.name)
    if existing is not None and existing.status != FAILED:
        return request.name
    if existing is not None:
        client.delete_job(request.name)
    trainer = CustomTrainerContainer(image=request.image, num_nodes=request.num_nodes, resources_per_node=resources_per_node(request), env=trainer_env(request))
    options = [Name(request.name), Labels(dict(TRAINJOB_LABELS)), TrainerCommand(trainer_command(request)), runtime_patch(request)]
    return client.train(runtime=request.runtime, trainer=trainer, options=options)


def _existing(client, name: str):
    try:
        return client.get_job(name)
    except RuntimeError:  # the SDK wraps "not found" (and every other API failure) this way
        return None


def wait(client, name: str, timeout_s: float, poll_s: float = 10.0):
    """Waits for the TrainJob to complete.

    Raises:
        RuntimeError: it failed (with the last lines of the first node's log when there are any).
        TimeoutError: not complete within ``timeout_s``.
    """
    try:
        return client.wait_for_job_status(name, status={COMPLETE}, timeout=int(timeout_s), polling_interval=int(poll_s))
    except RuntimeError as exc:
        try:
            tail = "".join(client.get_job_logs(name)).strip().splitlines()[-15:]
        except Exception:  # the logs are a courtesy: their absence must not hide the failure
            tail = []
        raise RuntimeError(f"TrainJob {name} failed ({exc})" + (": ... " + " | ".join(tail) if tail else "")) from None
    except TimeoutError:
        raise TimeoutError(
            f"TrainJob {name} did not complete within {timeout_s:g} s; it keeps running (delete it with kubectl delete trainjob {name})"
        ) from None


# --------------------------------------------------------------- the data and the result
def stage_dataset(dataset_dir: str | Path, uri: str, endpoint_url: str | None = None) -> int:
    """Uploads a data set's ``manifest.jsonl`` and the degraded images it lists (never ``gt``) to ``uri``.

    Returns:
        the number of images uploaded.
    """
    from restore_r1.registry.stores import open_store

    root = Path(dataset_dir)
    store = open_store(uri, endpoint_url=endpoint_url)
    images = _lq_paths(root / "manifest.jsonl")
    for rel in images:
        store.upload(rel, root / rel)
    store.upload("manifest.jsonl", root / "manifest.jsonl")  # last: its presence means complete
    return len(images)


def fetch_dataset(uri: str, dest: str | Path, endpoint_url: str | None = None) -> Path:
    """Downloads a data set staged by :func:`stage_dataset` (manifest + degraded images) into ``dest``."""
    from restore_r1.registry.stores import open_store

    store = open_store(uri, endpoint_url=endpoint_url)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    store.download("manifest.jsonl", dest / "manifest.jsonl")
    for rel in _lq_paths(dest / "manifest.jsonl"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        store.download(rel, dest / rel)
    return dest


def _lq_paths(manifest: Path) -> list[str]:
    """The relative ``lq`` paths a manifest lists (an absolute or escaping path is refused)."""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such file; a data set folder holds manifest.jsonl and lq/*.png")
    paths = []
    for lineno, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        rel = entry.get("lq", entry.get("lq_path")) if isinstance(entry, dict) else None
        if not isinstance(rel, str) or rel.startswith("/") or ".." in Path(rel).parts:
            raise ValueError(f"{manifest}:{lineno}: 'lq' must be a path inside the data set folder, got {rel!r}")
        paths.append(rel)
    return paths


def export_run(out_dir: str | Path, uri: str, endpoint_url: str | None = None) -> None:
    """Copies a finished run's policy and log (:data:`RESULT_FILES`) to ``uri`` (rank 0, at the end)."""
    from restore_r1.registry.stores import open_store

    store = open_store(uri, endpoint_url=endpoint_url)
    for rel in RESULT_FILES:
        store.upload(rel, Path(out_dir) / rel)


def collect_result(uri: str, policy_out: str | Path, log_out: str | Path, endpoint_url: str | None = None) -> list[dict]:
    """Downloads an exported run into the step's outputs; returns the log records."""
    from restore_r1.registry.stores import open_store

    store = open_store(uri, endpoint_url=endpoint_url)
    with tempfile.TemporaryDirectory(prefix="restore-r1-result-") as tmp:
        for rel in RESULT_FILES:
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            store.download(rel, Path(tmp) / rel)
        if Path(policy_out).exists():
            shutil.rmtree(policy_out)
        shutil.copytree(Path(tmp) / "policy", policy_out)
        Path(log_out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "train_log.jsonl", log_out)
    return [json.loads(line) for line in Path(log_out).read_text().splitlines() if line.strip()]


def run_trainjob(
    dataset_dir: str | Path,
    policy_out: str | Path,
    log_out: str | Path,
    request: TrainJobRequest,
    client=None,
    namespace: str | None = None,
    timeout_s: float = 7 * 24 * 3600,
    poll_s: float = 10.0,
) -> list[dict]:
    """The whole distributed training step (see the module docstring); returns the log records.

    Args:
        client: a ``kubeflow.trainer.TrainerClient``; None creates one for the pod's own cluster
            (in-cluster configuration, the pod's namespace unless ``namespace`` is given).
    """
    if client is None:
        from kubeflow.common.types import KubernetesBackendConfig
        from kubeflow.trainer import TrainerClient

        client = TrainerClient(backend_config=KubernetesBackendConfig(namespace=namespace))
    endpoint = request.s3_endpoint or None
    stage_dataset(dataset_dir, request.data_uri, endpoint_url=endpoint)
    name = submit(request, client)
    wait(client, name, timeout_s, poll_s)
    return collect_result(request.result_uri, policy_out, log_out, endpoint_url=endpoint)
