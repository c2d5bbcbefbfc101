"""The compiled training pipeline run in containers: ``make pipeline-docker``.

    python -m restore_r1.deploy.pipeline_docker [--out DIR] [--image REF] [--report FILE]

Loads ``pipelines/restore_r1_training.yaml`` itself (the file a user uploads to the KFP UI, not
the Python function) and runs it with ``kfp.local.DockerRunner``: every task is a container of
the component image, started through podman's Docker-compatible socket (``podman system
service``, started here and stopped at the end by pid). Small settings as ``make pipeline``
(:data:`pipelines.run_local.LOCAL_SETTINGS`); the registry and the Triton export are folders
under the pipeline root, the one host folder ``kfp.local`` mounts into the containers, which run
with no network. At the end it prints (and writes to ``--report``) the tasks, their outputs and
the registered model version.

Two things differ from a cluster run, both on purpose:

* the YAML names ``ghcr.io/restore-r1/restore-r1:<version>``; that reference is tagged onto this
  commit's locally built component image (``make images``), so nothing is pulled;
* ``kfp.local`` starts each container with ``auto_remove=True`` and reads its exit code after
  the fact; when the container is already gone it *assumes success* (and podman's API answers
  such a late request with a 500, which kfp does not expect). :func:`run_container` replaces it
  for this run: the same container, kept until its exit code has been read, then removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from restore_r1.deploy import images
from restore_r1.errors import RestoreR1Error
from restore_r1.images import atomic_write_bytes

REPO_ROOT = images.REPO_ROOT
PIPELINE_YAML = REPO_ROOT / "pipelines" / "restore_r1_training.yaml"
#: The image reference the compiled YAML names (restore_r1.pipeline: the component image).
YAML_IMAGE = "ghcr.io/restore-r1/restore-r1"
#: Seconds to wait for podman's socket.
SOCKET_TIMEOUT_S = 30.0
#: Evaluation metrics that need no downloaded weights in the container.
METRICS = "psnr,ssim"


class PipelineDockerError(RestoreR1Error, RuntimeError):
    """A step of the containerised pipeline run failed (the message names it)."""


def run_container(client, image: str, command: Sequence[str], volumes: dict, **run_args) -> int:
    """``kfp.local``'s container start, without auto-removal: stream the logs, read the real exit
    code, then remove the container."""
    if not any(image in (im.tags + im.attrs.get("RepoDigests", [])) for im in client.images.list()):
        raise PipelineDockerError(f"image {image} is not in podman's store; build it with `make images` (nothing is pulled)")
    run_args.pop("auto_remove", None)
    container = client.containers.run(image=image, command=list(command), detach=True, stdout=True, stderr=True, volumes=volumes, **run_args)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


class PodmanSocket:
    """``podman system service`` on a private unix socket, for the lifetime of a ``with`` block."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "podman.sock"
        self.url = f"unix://{self.path}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PodmanSocket:
        self.proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.url],
            env=images.podman_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while not self.path.exists():
            if self.proc.poll() is not None:
                raise PipelineDockerError(f"podman system service exited ({self.proc.returncode}): {self.proc.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise PipelineDockerError(f"podman's socket {self.path} did not appear within {SOCKET_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


#: Folders the component image does not copy (docker/Dockerfile copies restore_r1/, triton_models/
#: and the project files): changes there, such as the report ``make e2e`` has just written, leave
#: this commit's image current.
NOT_IN_IMAGE = ("bench/", "docs/")


def component_image() -> str:
    """This commit's component image (``make images``), or a one-line error. Uncommitted changes
    under :data:`NOT_IN_IMAGE` do not count as a different image."""
    commit = images.git_commit(ignore=NOT_IN_IMAGE)
    ref = images.image_tags(images.COMPONENT_REPOSITORY, images.project_version(), commit)[1]
    if not images.image_exists(ref):
        raise PipelineDockerError(f"{ref} is not built: run `make images` first (or pass --image)")
    return ref


def run(out: Path, image: str, settings: dict) -> dict:
    """Runs the compiled pipeline in containers; returns the report (tasks, outputs, registry)."""
    from kfp import components, local
    from kfp.local import docker_task_handler

    import docker
    from restore_r1.pipeline.localrun import latest_run_dir, read_run
    from restore_r1.registry import open_registry

    version = images.project_version()
    yaml_ref = f"{YAML_IMAGE}:{version}"
    if yaml_ref not in PIPELINE_YAML.read_text():
        raise PipelineDockerError(f"{PIPELINE_YAML} does not name {yaml_ref}; recompile it (python -m pipelines.compile)")
    images.run(["podman", "tag", image, yaml_ref], what=f"tag {image} as {yaml_ref}")
    # kfp.local mounts only the pipeline root into the containers: the registry and the Triton
    # export live inside it, or each task would write them into its own container's file system.
    root = out
    registry = out / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    pipeline = components.load_component_from_file(str(PIPELINE_YAML))
    args = {
        **settings,
        "eval_metrics": METRICS,
        "promote": True,
        "registry": str(registry),
        "s3_endpoint": "",
        "model_repository": str(out / "triton_repository"),
    }
    uid = f"{os.getuid()}:{os.getgid()}"
    with tempfile.TemporaryDirectory(prefix="restore-r1-podman-") as sock_dir, PodmanSocket(Path(sock_dir)) as sock:
        saved = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = sock.url
        original = docker_task_handler.run_docker_container
        docker_task_handler.run_docker_container = run_container
        try:
            docker.from_env().ping()
            local.init(
                runner=local.DockerRunner(network_mode="none", user=uid, environment={"HF_HUB_OFFLINE": "1", "HOME": "/tmp"}),
                pipeline_root=str(root),
                raise_on_error=True,
            )
            start = time.perf_counter()
            try:
                pipeline(**args)
            except RuntimeError as exc:
                raise PipelineDockerError(f"pipeline failed: {exc}") from None
            seconds = time.perf_counter() - start
        finally:
            docker_task_handler.run_docker_container = original
            if saved is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = saved
    run_dir = latest_run_dir(root, pipeline.name)
    tasks = read_run(run_dir)
    reg = open_registry(str(registry))
    model = settings.get("model_name", "restore-r1-policy")
    versions = [
        {"uri": v.uri, "aliases": v.aliases, "metrics": v.metrics, "files": len(v.files), "created": v.created, "run": v.run} for v in reg.list_versions(model)
    ]
    return {
        "pipeline": str(PIPELINE_YAML.relative_to(REPO_ROOT)),
        "image": image,
        "image_as": yaml_ref,
        "seconds": seconds,
        "run_dir": str(run_dir),
        "tasks": [{"task": t.task, "parameters": t.parameters, "artifacts": {k: str(v) for k, v in t.artifacts.items()}} for t in tasks],
        "registry": str(registry),
        "model": model,
        "versions": versions,
    }


def markdown(report: dict) -> str:
    lines = [
        "# The compiled training pipeline, run in containers (`make pipeline-docker`)",
        "",
        f"`{report['pipeline']}` loaded with `kfp.components.load_component_from_file` and run by `kfp.local.DockerRunner` "
        f"through podman's Docker API socket; every task in the component image `{report['image']}` (tagged `{report['image_as']}`, "
        f"as the YAML names it), no network. Wall time {report['seconds']:.0f} s.",
        "",
        "| task | outputs |",
        "|---|---|",
    ]
    for t in report["tasks"]:
        outs = ", ".join([f"{k} = {v}" for k, v in t["parameters"].items()] + [f"{k} (artifact)" for k in t["artifacts"]])
        lines.append(f"| {t['task']} | {outs or '-'} |")
    lines += ["", f"Registered versions of `{report['model']}` in the run's registry folder:", ""]
    for v in report["versions"]:
        lines.append(f"- {json.dumps(v, sort_keys=True, default=str)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.run_local import LOCAL_SETTINGS

    parser = argparse.ArgumentParser(prog="python -m restore_r1.deploy.pipeline_docker", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="pipeline_docker_out", help="pipeline root, registry and Triton export (default pipeline_docker_out; emptied first)")
    parser.add_argument("--image", help="component image (default: this commit's, from `make images`)")
    parser.add_argument("--report", default="bench/results/pipeline_docker.md", help="Markdown report (a .json beside it)")
    args = parser.parse_args(argv)
    try:
        if shutil.which("podman") is None:
            raise PipelineDockerError("podman is not installed (make container-tools)")
        image = args.image or component_image()
        out = Path(args.out).resolve()
        if out.exists():
            shutil.rmtree(out)
        report = run(out, image, dict(LOCAL_SETTINGS))
    except (PipelineDockerError, images.ImageError) as exc:
        print(f"pipeline-docker: {exc}", file=sys.stderr)
        return 1
    md = markdown(report)
    report_path = Path(args.report)
    atomic_write_bytes(report_path, md.encode())
    atomic_write_bytes(report_path.with_suffix(".json"), (json.dumps(report, indent=1, default=str) + "\n").encode())
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
