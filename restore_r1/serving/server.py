"""Start and stop a local Triton server (the ``tritonserver`` of the ``nvidia-pytriton`` wheel).

    python -m restore_r1.serving.server [--repo triton_models] [--venv .venv-triton] [--http-port 8000]

The server runs from its own virtual environment (``make triton-venv``: the wheel and the pixel
lock of ``constraints.txt``, overlaid on the main venv for torch, pyiqa and this package). Three things make the wheel's binary work outside PyTriton:

* the python backend needs the stub built for the venv's Python; the wheel keeps one per Python
  version apart, so a backend folder is assembled (links + that stub) in a scratch directory;
* ``LD_LIBRARY_PATH`` holds the venv interpreter's ``LIBDIR`` (else the stub loads the system
  libpython) and the wheel's bundled libraries (``nvidia_pytriton.libs``);
* the venv's ``bin`` comes first on ``PATH``, so the stub's Python is that venv's.

Every port is bound on 127.0.0.1. :meth:`TritonServer.stop` sends SIGTERM to the server's process
id, waits for a clean exit and only then SIGKILLs it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from restore_r1.errors import RestoreR1Error

#: The project's Triton virtual environment (``make triton-venv``).
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-triton"
#: Environment variable naming another Triton venv.
VENV_ENV = "RESTORE_R1_TRITON_VENV"
#: Loopback only: nothing is exposed beyond this machine.
HOST = "127.0.0.1"
#: Triton's usual ports.
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002
#: Seconds to wait for every model to load (the agent loads the judge, the policy its encoder).
DEFAULT_START_TIMEOUT_S = 180.0
#: Seconds Triton waits for open connections and in-flight requests when told to stop.
EXIT_TIMEOUT_S = 10
#: Python-backend shared memory per model instance (initial size and growth step), bytes.
PYTHON_SHM_BYTES = 64 * 1024 * 1024
PYTHON_SHM_GROWTH_BYTES = 16 * 1024 * 1024
#: OpenMP/torch threads per python-model process (``$OMP_NUM_THREADS`` overrides).
CPU_THREADS_PER_MODEL = 1
#: Seconds between SIGTERM and SIGKILL.
STOP_GRACE_S = 30.0
#: Backend files of the wheel linked into the assembled backend folder.
BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB = "triton_python_backend_stub"


class ServerError(RestoreR1Error, RuntimeError):
    """The server could not be started (the message carries the end of its log)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def group_pids(pgid: int, proc: str | os.PathLike = "/proc") -> list[int]:
    """Process ids of process group ``pgid`` (a server started by :class:`TritonServer` leads its
    own group, with its python-model stubs in it), read from ``proc``."""
    pids = []
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # Fields after the command (which may hold spaces or parentheses): state, ppid, pgrp, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return sorted(pids)


#: A per-model sample of Triton's ``nv_inference_*`` families on ``/metrics``.
_MODEL_SAMPLE = re.compile(r'^(nv_inference_\w+)\{model="([^"]+)",version="[^"]*"\} ([0-9.e+-]+)$')


def model_counters(metrics_url: str, timeout: float = 5.0) -> dict[tuple[str, str], float]:
    """``(family, model) -> value`` of every per-model ``nv_inference_*`` sample on Triton's
    ``/metrics`` (request and execution counts, queue and compute durations in µs), summed over
    the model's loaded versions."""
    with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        found = _MODEL_SAMPLE.match(line)
        if found:
            key = (found.group(1), found.group(2))
            out[key] = out.get(key, 0.0) + float(found.group(3))
    return out


def _proc_files(pids: list[int], name: str, proc: str | os.PathLike) -> list[str]:
    """The text of ``/proc/<pid>/<name>`` for each of ``pids`` still running."""
    out = []
    for pid in pids:
        try:
            out.append((Path(proc) / str(pid) / name).read_text())
        except OSError:
            continue
    return out


def rss_bytes(pids: list[int], proc: str | os.PathLike = "/proc") -> int:
    """Sum of ``VmRSS`` over ``pids`` (processes that are gone count 0), bytes. Shared memory
    mapped by several of them counts once per process."""
    total = 0
    for status in _proc_files(pids, "status", proc):
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


#: Where the python backend's shared-memory regions live, and their name prefix.
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"


def shm_regions(pids: list[int], proc: str | os.PathLike = "/proc") -> set[str]:
    """Names of the python-backend shared-memory regions (files in :data:`SHM_DIR`) mapped by ``pids``."""
    names = set()
    for maps in _proc_files(pids, "maps", proc):
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
            if path.startswith(f"{SHM_DIR}/{SHM_PREFIX}"):
                names.add(Path(path.removesuffix(" (deleted)")).name)
    return names


#: ``tritonserver`` options of the poll mode (the server rescans the repository).
POLL_MODE_ARGS = ("--model-control-mode=poll",)


def compile_model_files(repository: Path, python: Path) -> None:
    """Byte-compiles every ``model.py`` of ``repository`` with the stub's ``python``.

    In poll mode Triton reloads a model when any file under its folder changes, and the python
    stub's first import of ``<version>/model.py`` writes ``<version>/__pycache__`` (the stub runs
    Python isolated, so ``PYTHONDONTWRITEBYTECODE`` is ignored): every model was reloaded once,
    one poll after the server started, and under load that crashed tritonserver 2.51. With the
    bytecode already there and up to date, the import writes nothing.

    Raises:
        ServerError: compilation failed (the message quotes the compiler).
    """
    proc = subprocess.run([str(python), "-m", "compileall", "-q", str(repository)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ServerError(f"could not byte-compile the model files of {repository}: {(proc.stdout + proc.stderr).strip()[-500:]}")


def _venv_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        raise ServerError(f"Triton venv {venv} has no bin/python; build it with `make triton-venv` or set ${VENV_ENV}")
    return python


def venv_layout(venv: str | os.PathLike) -> dict[str, Path | str]:
    """Paths the server needs from a Triton venv: ``tritonserver``, ``backends``, ``stub``, ``libdir``, ``libs``."""
    venv = Path(venv)
    python = _venv_python(venv)
    code = (
        "import sys, sysconfig, pytriton, pathlib; p = pathlib.Path(pytriton.__file__).parent; "
        "print(sysconfig.get_config_var('LIBDIR')); print(p); print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    )
    try:
        out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout.split("\n")
    except subprocess.CalledProcessError as exc:
        raise ServerError(f"{python} cannot import pytriton ({exc.stderr.strip().splitlines()[-1:]}); run `make triton-venv`") from None
    libdir, pkg, version = out[0], Path(out[1]), out[2]
    dist = pkg / "tritonserver"
    layout = {
        "python": python,
        "tritonserver": dist / "bin" / "tritonserver",
        "backends": dist / "backends",
        "stub": dist / "python_backend_stubs" / version / STUB,
        "libdir": libdir,
        "libs": pkg.parent / "nvidia_pytriton.libs",
    }
    for key in ("tritonserver", "stub"):
        if not Path(layout[key]).exists():
            raise ServerError(f"{layout[key]} not found in the nvidia-pytriton wheel of {venv}")
    return layout


@dataclass
class TritonServer:
    """A ``tritonserver`` process over a model repository, on 127.0.0.1.

    Args:
        repository: the model repository folder.
        venv: the Triton virtual environment.
        http_port, grpc_port, metrics_port: 0 picks a free port.
        model_config_name: ``"cpu"`` selects ``configs/cpu.pbtxt``; ``None`` the production config.
        env: extra environment variables for the server (and its python models).
        log_path: where the server log goes (default: a file in the scratch folder).
        extra_args: more ``tritonserver`` options (e.g. ``--model-control-mode=explicit``).
    """

    repository: Path
    venv: Path = field(default_factory=lambda: Path(os.environ.get(VENV_ENV, DEFAULT_VENV)))
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    model_config_name: str | None = "cpu"
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    _scratch: Path | None = None
    _regions: set[str] = field(default_factory=set)

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self, backends: Path) -> list[str]:
        cmd = [
            "tritonserver",
            f"--model-repository={Path(self.repository).resolve()}",
            f"--backend-directory={backends}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={HOST}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--log-verbose=0",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            # A shared-memory region per python model large enough that concurrent BLS calls
            # with 512² images never grow it (growth under concurrent BLS crashed 2.51's stub).
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_GROWTH_BYTES}",
        ]
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        return cmd + list(self.extra_args)

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> TritonServer:
        """Starts the server and waits until it and every model are ready.

        Raises:
            ServerError: it exited or was not ready in time (the log's last lines are quoted).
        """
        if not Path(self.repository).is_dir():
            raise ServerError(f"model repository {self.repository} is not a folder")
        layout = venv_layout(self.venv)
        self.http_port, self.grpc_port, self.metrics_port = (p or free_port() for p in (self.http_port, self.grpc_port, self.metrics_port))
        self._scratch = Path(tempfile.mkdtemp(prefix="restore-r1-triton-"))
        backends = self._scratch / "backends"
        python_backend = backends / "python"
        python_backend.mkdir(parents=True)
        for name in BACKEND_FILES:
            (python_backend / name).symlink_to(Path(layout["backends"]) / "python" / name)
        shutil.copy2(layout["stub"], python_backend / STUB)
        env = dict(os.environ)
        # 17 python-model processes share the cores: OpenMP pools of one thread each. With
        # torch's default (one per core) their spinning threads made each agent step ~10x slower
        # on this 2-core machine (0.26 s vs 0.03 s per step, measured).
        env.setdefault("OMP_NUM_THREADS", str(CPU_THREADS_PER_MODEL))
        env.update(self.env)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(layout["libdir"]), str(layout["libs"]), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(Path(layout["python"]).parent), str(Path(layout["tritonserver"]).parent), env.get("PATH", "")))
        env.pop("PYTHONHOME", None)
        if any(arg.replace(" ", "") in POLL_MODE_ARGS for arg in self.extra_args):
            compile_model_files(Path(self.repository), Path(layout["python"]))
        self.log_path = Path(self.log_path or self._scratch / "tritonserver.log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps writing to it
        try:
            self.process = subprocess.Popen(self.command(backends), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}: {self.log_tail()}")
            if self.ready():
                self._regions |= shm_regions(self.processes())
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"tritonserver was not ready within {timeout_s:g} s: {self.log_tail()}")

    def processes(self) -> list[int]:
        """Process ids of the server and its python-model stubs (its process group)."""
        return group_pids(self.process.pid) if self.process is not None else []

    def ready(self) -> bool:
        """Whether the server answers ``/v2/health/ready`` with 200 (every model loaded)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not Path(self.log_path).exists():
            return "(no log)"
        return " | ".join(Path(self.log_path).read_text(errors="replace").strip().splitlines()[-lines:])

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the server's process id, SIGKILL after ``grace_s``; returns its exit code.

        Python-model stubs still in the server's process group once it has exited (it was killed,
        or crashed, before it could stop them) are SIGKILLed too, and the shared-memory regions it
        left in ``/dev/shm`` (64 MiB per model instance) are removed."""
        code = None
        if self.process is not None:
            self._regions |= shm_regions(self.processes())
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    # The server's python stubs live in its process group (start_new_session).
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            code = self.process.returncode
            if group_pids(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_GRACE_S
                while group_pids(self.process.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            if not group_pids(self.process.pid):  # nothing of this server maps them any more
                for name in self._regions:
                    with contextlib.suppress(FileNotFoundError):
                        (SHM_DIR / name).unlink()
                self._regions.clear()
        if self._scratch is not None:
            keep = self.log_path and Path(self.log_path).is_relative_to(self._scratch)
            if not keep:
                shutil.rmtree(self._scratch, ignore_errors=True)
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Triton on 127.0.0.1 with the Restore-R1 model repository until Ctrl-C.")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[2] / "triton_models"))
    parser.add_argument("--venv", default=os.environ.get(VENV_ENV, str(DEFAULT_VENV)))
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT)
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT)
    parser.add_argument("--config", default="cpu", help="model config name ('cpu'; 'default' for config.pbtxt)")
    parser.add_argument("--once", action="store_true", help="stop as soon as the server is ready (a smoke test)")
    args = parser.parse_args(argv)
    server = TritonServer(
        Path(args.repo), Path(args.venv), args.http_port, args.grpc_port, args.metrics_port, None if args.config == "default" else args.config
    )
    stop = {"now": False}

    def on_signal(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"Triton ready (pid {server.pid}): HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}; "
        f"log {server.log_path}. Ctrl-C stops it.",
        flush=True,
    )
    try:
        while not stop["now"] and not args.once and server.process.poll() is None:
            time.sleep(0.5)
    finally:
        code = server.stop()
    print(f"Triton stopped (exit code {code}).", flush=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
