"""``make e2e``: the serving image and the Helm chart run for real, with podman, on this machine.

    python -m restore_r1.deploy.e2e [--report-dir bench/results] [--keep-repository]

1. The images: built by :mod:`restore_r1.deploy.images`, or reused when this commit's are there.
2. The chart is rendered (:func:`restore_r1.deploy.chart.render`, Helm as a library) with the
   CPU example's values plus :func:`local_values`: the local serving image, the model repository
   on a "PVC" (a podman volume bound to a host folder written by
   :func:`restore_r1.serving.repository.write_repository`), Triton's ports on free loopback ports.
   The rendered Deployment is played (``podman kube play``, host network: Triton listens on
   127.0.0.1 only) as it is, less its ``ports`` lists (:func:`for_host_network` says why).
   Its init containers run first, each with ``podman run`` (:func:`init_container_command`).
3. Readiness: the Deployment's own startup, then readiness probe (path, port, period, failure
   threshold as rendered) are run against the pod, as the kubelet would. podman 4 turns only the
   liveness probe into a health check, and runs it with curl, which the image does not carry.
4. Pixels: ``restore-r1 restore --triton-url`` through the pod's HTTP port and ``restore-r1
   restore`` in-process, on the same degraded inputs: the same tool sequences and the same bytes.
   The pod's emptyDir volumes are made first, as the kubelet makes them (:func:`emptydir_volumes`).
5. Security: ``podman exec`` in the running container reads back what the chart asks for: uid and
   gid 1000, a read-only root file system (writes fail with EROFS; /tmp writable), no capability
   left (effective, permitted, bounding), no_new_privs, seccomp filtering, the repository mounted
   read-only.
6. Teardown: ``podman kube down`` of the played manifest and removal of the volume, in a
   ``finally``; the report lists what is left running (nothing, or the run fails).

The report goes to ``bench/results/e2e.json`` and ``e2e.md`` (with the images' sizes and build
times from ``.cache/images/build.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from restore_r1.deploy import images
from restore_r1.errors import RestoreR1Error

REPO_ROOT = images.REPO_ROOT
WORK = REPO_ROOT / ".cache" / "e2e"
RESULTS = REPO_ROOT / "bench" / "results"
#: Release name of the rendered chart, and the claim (podman volume) the repository is bound to.
RELEASE = "restore-r1-e2e"
CLAIM = "restore-r1-e2e-models"
#: Degraded inputs restored both ways: (bundled photo, case) on a small crop (tests/test_serving_pixels.py restores all 45).
PIXEL_INPUTS = (("astronaut", 1), ("coffee", 6), ("chelsea", 11), ("astronaut", 15))
CROP = (96, 128)
#: Seconds for one probe request (the chart's timeoutSeconds when it sets one).
DEFAULT_PROBE_TIMEOUT_S = 1.0


class E2EError(RestoreR1Error, RuntimeError):
    """A step of the end-to-end run failed (the message names it)."""


def podman(*args: str, check: bool = True, timeout: float | None = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], env=images.podman_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise E2EError(f"podman {' '.join(args[:3])} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def free_ports(n: int) -> list[int]:
    from restore_r1.serving.server import free_port

    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# -- the chart -----------------------------------------------------------------------------------


def local_values(image_repository: str, image_tag: str, ports: Sequence[int], claim: str = CLAIM) -> dict[str, Any]:
    """The CPU example's values for one pod on this machine: the local image (never pulled), the
    repository on ``claim``, Triton on ``ports`` (HTTP, gRPC, metrics) of 127.0.0.1, resources
    that fit 2 cores, no Prometheus Operator objects (no CRDs here)."""
    from restore_r1.deploy import chart

    values = copy.deepcopy(chart.load_values(chart.EXAMPLES["cpu"]))
    http, grpc, metrics = ports
    values["image"] = {"repository": image_repository, "tag": image_tag, "pullPolicy": "Never"}
    values["replicaCount"] = 1
    values["modelRepository"] = {"source": "pvc", "pvc": {"claimName": claim, "subPath": "", "mountPath": "/models"}, "pollSeconds": 30}
    values["service"] = {"httpPort": http, "grpcPort": grpc, "metricsPort": metrics}
    values["triton"] = {
        **values.get("triton", {}),
        "extraArgs": ["--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1", "--exit-timeout-secs=10"],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}},
    }
    values["nodeSelector"] = {}
    values["serviceMonitor"] = {"enabled": False}
    values["prometheusRule"] = {"enabled": False}
    return values


def rendered_deployment(values: Mapping[str, Any], release: str = RELEASE) -> dict[str, Any]:
    """The chart's Deployment rendered with ``values`` on a cluster without the Prometheus CRDs."""
    from restore_r1.deploy import chart

    objects = chart.render(values, release=release, namespace="default", api_versions=())
    (deployment,) = chart.by_kind(objects, "Deployment")
    return dict(deployment)


def for_host_network(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment as played here by podman 4.3: the same, less the containers' ``ports``
    lists and less its init containers (which :func:`init_container_command` runs first).

    * podman publishes every ``containerPort`` as a host port mapping, which host networking
      refuses ("PortMappings can only be used with Bridge or slirp4netns networking"); on the host
      network the ports need no publishing (Triton binds them on 127.0.0.1 itself).
    * podman 4.3.1 removes an init container while it is still running and then fails the whole
      play ("cannot remove container ... as it is running"); the annotation that would keep it
      (``io.podman.annotations.init.container.type=always``) is ignored."""
    out = copy.deepcopy(dict(deployment))
    spec = out["spec"]["template"]["spec"]
    for container in spec["containers"]:
        container.pop("ports", None)
    spec.pop("initContainers", None)
    return out


def init_container_command(deployment: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """``podman run`` arguments for one init container of the pod, with its volumes and its
    security context (user and group, read-only root, capabilities, privilege escalation)."""
    spec = deployment["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext", {})
    sc = {**pod_sc, **container.get("securityContext", {})}
    args = ["run", "--rm", "--network=none", "--name", f"{RELEASE}-init-{container['name']}"]
    if "runAsUser" in sc:
        args.append(f"--user={sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}")
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    args += [f"--cap-drop={cap.lower()}" for cap in sc.get("capabilities", {}).get("drop", [])]
    if sc.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    for mount in container.get("volumeMounts", []):
        args += ["-v", f"{mount['name']}:{mount['mountPath']}" + (":ro" if mount.get("readOnly") else "")]
    return [*args, container["image"], *container.get("command", []), *container.get("args", [])]


def emptydir_volumes(deployment: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """``podman volume create`` options for the pod's emptyDir volumes, by name, as the kubelet
    makes them: empty (``nocopy``), world-writable, and ``medium: Memory`` on a tmpfs. podman 4
    turns an emptyDir into a plain named volume of that name on disk and fills it from the image,
    so they are made first (and removed after)."""
    out = []
    for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
        if "emptyDir" not in volume:
            continue
        options = ["--opt", "nocopy"]
        if (volume["emptyDir"] or {}).get("medium") == "Memory":
            options += ["--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=mode=1777,nosuid,nodev"]
        out.append((volume["name"], options))
    return out


def readable_by_all(folder: Path) -> None:
    """``chmod -R a+rX``: ``write_repository`` writes its files 0600 (``mkstemp``), unreadable by
    the pod's uid 1000 on a host folder (on a cluster, the pod's ``fsGroup`` makes a volume's files
    group-readable)."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o444 | (0o111 if path.is_dir() else 0))


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for entry in container.get("ports", []):
        if entry.get("name") == port:
            return int(entry["containerPort"])
    raise E2EError(f"probe port {port!r} is not a port of container {container.get('name')}")


def http_probe_ok(url: str, timeout: float) -> bool:
    """A kubelet httpGet probe: success is a 2xx/3xx answer within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_probe(
    container: Mapping[str, Any], kind: str, host: str = "127.0.0.1", probe_ok=http_probe_ok, sleep=time.sleep, clock=time.monotonic
) -> dict[str, Any]:
    """Run the container's ``kind`` probe (``startupProbe``, ``readinessProbe``) until it succeeds
    once or fails ``failureThreshold`` times in a row, ``periodSeconds`` apart (the kubelet's
    rule); what happened. Raises :class:`E2EError` when it never succeeds."""
    probe = container[kind]
    get = probe["httpGet"]
    url = f"http://{host}:{container_port(container, get['port'])}{get['path']}"
    period = float(probe.get("periodSeconds", 10))
    threshold = int(probe.get("failureThreshold", 3))
    timeout = float(probe.get("timeoutSeconds", DEFAULT_PROBE_TIMEOUT_S))
    start = clock()
    for attempt in range(1, threshold + 1):
        if probe_ok(url, timeout):
            return {
                "probe": kind,
                "url": url,
                "succeeded_at_attempt": attempt,
                "seconds": round(clock() - start, 1),
                "period_s": period,
                "failure_threshold": threshold,
            }
        if attempt < threshold:
            sleep(period)
    raise E2EError(f"{kind} {url} failed {threshold} times, {period:g} s apart")


# -- what runs inside the pod ---------------------------------------------------------------------

#: Run in the container (its own Python) by ``podman exec``: what the security context left in force.
SECURITY_PROBE = r"""
import errno, json, os
def status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return {k: out.get(k) for k in ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}
def write(path):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        os.remove(path)
        return "written"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
mounts = {}
for line in open("/proc/mounts"):
    dev, where, fstype, opts = line.split()[:4]
    if where in ("/", "/tmp", "/dev/shm", "/models"):
        mounts[where] = {"fstype": fstype, "ro": "ro" in opts.split(",")}
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "exec": status("self"), "pid1": status(1),
    "pid1_cmd": open("/proc/1/cmdline").read().split("\0")[0],
    "write": {p: write(p) for p in ("/probe", "/opt/restore-r1/probe", "/home/triton-server/probe", "/models/probe", "/tmp/probe")},
    "mounts": mounts}))
"""


def security_findings(seen: Mapping[str, Any]) -> dict[str, bool]:
    """The checks on :data:`SECURITY_PROBE`'s answer, by name."""
    procs = (seen["exec"], seen["pid1"])
    zero = "0000000000000000"
    return {
        "runs as uid/gid 1000": seen["uid"] == 1000 and seen["gid"] == 1000 and all(p["Uid"].split()[0] == "1000" for p in procs),
        "tritonserver is pid 1": seen["pid1_cmd"].endswith("tritonserver"),
        # The image user's own home (uid 1000's): only the read-only mount stops the write there.
        "root file system read-only": seen["mounts"].get("/", {}).get("ro") is True
        and seen["write"]["/home/triton-server/probe"] == "EROFS"
        and seen["write"]["/probe"] != "written"
        and seen["write"]["/opt/restore-r1/probe"] != "written",
        "model repository read-only": seen["write"]["/models/probe"] == "EROFS",
        "/tmp writable": seen["write"]["/tmp/probe"] == "written",
        "no capabilities": all(p[k] == zero for p in procs for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")),
        "no privilege escalation": all(p["NoNewPrivs"] == "1" for p in procs),
        "seccomp filter": all(p["Seccomp"] == "2" for p in procs),
    }


# -- pixels ---------------------------------------------------------------------------------------


def degraded_inputs(folder: Path) -> list[Path]:
    import numpy as np

    from restore_r1.cleanimages import load_clean
    from restore_r1.degradations import apply_case
    from restore_r1.images import write_image

    paths = []
    for i, (name, case) in enumerate(PIXEL_INPUTS):
        clean = np.ascontiguousarray(load_clean(name)[: CROP[0], : CROP[1]])
        lq, _ = apply_case(case, clean, np.random.default_rng(1000 * i + case))
        paths.append(write_image(folder / f"{name}_case{case:02d}.png", lq))
    return paths


def restore_cli(inputs: Path, out: Path, extra: Sequence[str] = ()) -> dict[str, dict]:
    """``restore-r1 restore inputs -o out --json [extra]``: its records by image stem."""
    cmd = [str(Path(sys.executable).parent / "restore-r1"), "restore", str(inputs), "-o", str(out), "--json", "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise E2EError(f"restore-r1 restore {' '.join(extra)} failed: {proc.stderr.strip()[-1500:]}")
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {Path(r.get("input") or r.get("path") or r.get("image")).stem: r for r in records}


def compare_pixels(local: Path, served: Path, names: Sequence[str]) -> dict[str, bool]:
    from restore_r1.images import read_image

    return {name: bool((read_image(local / f"{name}.png") == read_image(served / f"{name}.png")).all()) for name in names}


# -- the run --------------------------------------------------------------------------------------


class Steps:
    """Timed steps of the run, recorded in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def run(self, name: str, fn, *args, **kwargs):
        print(f"e2e: {name} ...", flush=True)
        start = time.monotonic()
        record: dict[str, Any] = {"step": name}
        self.records.append(record)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            record.update(ok=False, error=str(exc)[-2000:], seconds=round(time.monotonic() - start, 1))
            raise
        record.update(ok=True, seconds=round(time.monotonic() - start, 1))
        print(f"e2e: {name}: {record['seconds']} s", flush=True)
        return result


def left_running(names: Sequence[str], volumes: Sequence[str] = ()) -> list[str]:
    """Pods and containers of ours (by name prefix), and our volumes, still known to podman."""
    pods = podman("pod", "ps", "--format", "{{.Name}}", check=False).stdout.split()
    ctrs = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
    vols = podman("volume", "ls", "--format", "{{.Name}}", check=False).stdout.split()
    return [n for n in pods + ctrs if any(n.startswith(prefix) for prefix in names)] + [f"volume {v}" for v in vols if v in volumes]


def e2e(work: Path = WORK, report_dir: Path = RESULTS, build: bool = True) -> dict[str, Any]:
    steps = Steps()
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "podman": podman("--version").stdout.strip()}
    t0 = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    manifest = work / "deployment.yaml"
    played = False
    volumes = [CLAIM]
    try:
        built = steps.run("images (build or reuse)", images.build_all, reuse=True) if build else json.loads(images.REPORT.read_text())
        report["images"] = built
        serving = built["images"]["serving"]["tags"][-1]
        repository, tag = serving.rsplit(":", 1)

        from restore_r1.serving.repository import write_repository

        models = steps.run("model repository on a host folder", write_repository, work / "models")
        readable_by_all(models)
        podman("volume", "rm", "-f", CLAIM, check=False)
        podman("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={models}", CLAIM)

        ports = free_ports(3)
        values = local_values(repository, tag, ports)
        deployment = steps.run("render the chart (helm library)", rendered_deployment, values)
        manifest.write_text(yaml.safe_dump(for_host_network(deployment), sort_keys=False))
        (work / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        report["values"] = values
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for name, options in emptydir_volumes(deployment):
            podman("volume", "rm", "-f", name, check=False)
            podman("volume", "create", *options, name)
            volumes.append(name)
            if "type=tmpfs" not in options:
                Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip()).chmod(0o1777)

        for init in deployment["spec"]["template"]["spec"].get("initContainers", []):
            steps.run(f"init container {init['name']} (podman run)", podman, *init_container_command(deployment, init))
        played = True  # a failed play can leave a pod: kube down either way
        played_out = steps.run("podman kube play", podman, "kube", "play", "--network", "host", str(manifest)).stdout
        ids = re.findall(r"^[0-9a-f]{64}$", played_out, re.M)
        report["kube_play_output"] = played_out.strip().splitlines()
        ctr = next(c for c in podman("ps", "--format", "{{.Names}}").stdout.split() if c.endswith("-triton") and RELEASE in c)
        report["container"] = ctr
        report["pod_ids"] = ids
        inspect = json.loads(podman("inspect", ctr).stdout)[0]
        report["podman_healthcheck"] = (inspect.get("Config") or {}).get("Healthcheck")
        report["probes"] = [steps.run("startup probe (the chart's)", run_probe, container, "startupProbe")]
        report["probes"].append(steps.run("readiness probe (the chart's)", run_probe, container, "readinessProbe"))

        inputs = degraded_inputs(work / "in")
        names = [p.stem for p in inputs]
        local = steps.run("restore in-process", restore_cli, work / "in", work / "local")
        served = steps.run("restore through the pod's HTTP port", restore_cli, work / "in", work / "served", ["--triton-url", f"127.0.0.1:{ports[0]}"])
        same = compare_pixels(work / "local", work / "served", names)
        tools_same = {n: local[n].get("tools") == served[n].get("tools") for n in names}
        report["pixels"] = {
            "inputs": names,
            "same_bytes": same,
            "same_tools": tools_same,
            "tools": {n: served[n].get("tools") for n in names},
        }
        if not (all(same.values()) and all(tools_same.values())):
            raise E2EError(f"served restores differ from in-process ones: bytes {same}, tools {tools_same}")

        seen = json.loads(steps.run("security context, read back in the container", podman, "exec", ctr, "python3", "-c", SECURITY_PROBE).stdout)
        findings = security_findings(seen)
        report["security"] = {"seen": seen, "checks": findings}
        if not all(findings.values()):
            raise E2EError(f"security context not in force: {[k for k, v in findings.items() if not v]}")
        report["ok"] = True
    except BaseException as exc:
        report["ok"] = False
        report["error"] = str(exc)[-2000:]
        if played:
            logs = podman("logs", "--tail", "40", report.get("container", f"{RELEASE}-pod-0-triton"), check=False)
            report["container_log_tail"] = (logs.stdout + logs.stderr).splitlines()[-40:]
        raise
    finally:
        if played:
            steps.run("podman kube down", podman, "kube", "down", str(manifest), check=False)
        for name in volumes:
            podman("volume", "rm", "-f", name, check=False)
        report["left_running"] = left_running([RELEASE], volumes)
        report["steps"] = steps.records
        report["total_s"] = round(time.monotonic() - t0, 1)
        write_report(report, report_dir)
    if report["left_running"]:
        raise E2EError(f"left running: {report['left_running']}")
    return report


def _gb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        "# End to end: the images, and the chart's Deployment under podman (`make e2e`)",
        "",
        f"Run {report['started']} with {report['podman']}; **{'passed' if report.get('ok') else 'FAILED'}** in {report['total_s']:.0f} s"
        + (f" (error: {report['error']})" if report.get("error") else "")
        + ". Produced by `make e2e` (`restore_r1/deploy/e2e.py`); not part of `make test` (time and disk).",
        "",
    ]
    built = report.get("images") or {}
    if built:
        lines += [
            "## Images (`make images`, podman, locally built Debian bases)",
            "",
            "Build times are this run's: podman's layer cache reuses every layer a change leaves valid (a new commit"
            " rebuilds the commit's layers of the component image and the serving image's last stage). Sizes are"
            " uncompressed (`podman images`).",
            "",
            "| image | tag | size | build time |",
            "|---|---|---|---|",
        ]
        for entry in built.get("bases", []):
            lines.append(f"| base `{entry['name']}` | `{entry['tags'][-1]}` | {_gb(entry.get('size_bytes'))} | {entry.get('build_s') or 0:.0f} s |")
        for entry in built.get("images", {}).values():
            when = "reused" if entry.get("reused") else f"{entry['build_s']:.0f} s"
            lines.append(f"| **{entry['name']}** | `{entry['tags'][-1]}` | {_gb(entry.get('size_bytes'))} | {when} |")
        lines.append("")
    lines += ["## Steps", "", "| step | seconds | ok |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s.get('seconds', 0):.1f} | {'yes' if s.get('ok') else 'NO'} |" for s in report.get("steps", [])]
    if report.get("probes"):
        lines += ["", "## Probes (the rendered Deployment's, run as the kubelet does)", ""]
        lines += [
            f"- `{p['probe']}` {p['url']}: succeeded at attempt {p['succeeded_at_attempt']} of {p['failure_threshold']} ({p['seconds']} s, every {p['period_s']:g} s)"
            for p in report["probes"]
        ]
        lines.append(
            f"- podman's own health check from the liveness probe, not relied on (it needs curl in the image, podman 4.3 gives a"
            f" named port as 0, and it runs from systemd timers): `{json.dumps(report.get('podman_healthcheck'))}`"
        )
    if report.get("pixels"):
        px = report["pixels"]
        lines += ["", "## Served pixels = in-process pixels", "", "| input | tools (served) | same tools | same bytes |", "|---|---|---|---|"]
        lines += [f"| {n} | {', '.join(px['tools'][n] or []) or '(none)'} | {px['same_tools'][n]} | {px['same_bytes'][n]} |" for n in px["inputs"]]
    if report.get("security"):
        lines += ["", "## Security context in force (read in the running container with `podman exec`)", ""]
        lines += [f"- {name}: {'yes' if ok else 'NO'}" for name, ok in report["security"]["checks"].items()]
    lines += ["", f"Left running after teardown: {report.get('left_running') or 'nothing'}.", ""]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "e2e.md").write_text(markdown(report))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report-dir", default=str(RESULTS))
    parser.add_argument("--no-build", action="store_true", help="use the images of .cache/images/build.json as they are")
    args = parser.parse_args(argv)
    try:
        report = e2e(report_dir=Path(args.report_dir), build=not args.no_build)
    except (RestoreR1Error, subprocess.TimeoutExpired) as exc:
        print(f"e2e: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"e2e: passed in {report['total_s']:.0f} s; report in {args.report_dir}/e2e.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
