"""The real Triton server under load, a policy version appearing under load, and a crash.

Each test runs the tritonserver of .venv-triton on 127.0.0.1 over a fresh repository with the
shipped default policy (the policy model's fallback) and its real tools, on degraded 128×96 crops
of the held-out photos (all 15 cases):

* 16 concurrent clients (half HTTP, half gRPC) for :data:`LOAD_SECONDS`: no request fails, p95 is
  printed, and the server's resident memory (tritonserver plus its python-model stubs, from /proc)
  stays flat after a warm-up;
* in poll mode, a version 2 of the policy model (another policy, with other tools) is moved into
  the repository under load: it is loaded with no failed request, the answers say which version
  served them, and each answer is one version's plan;
* the server is SIGKILLed under load: every request gets a clean error within
  :data:`ERROR_BOUND_S`, and once it is restarted on the same ports the same clients succeed.

Marked slow; skipped when the Triton venv is missing (``make test`` builds it). About 4 minutes
here (3 server starts of ~25 s on 2 loaded cores, plus the load itself).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from restore_r1.serving import backend as b
from restore_r1.serving.repository import MODEL_VERSION, write_repository
from restore_r1.serving.server import DEFAULT_VENV, SHM_DIR, VENV_ENV, TritonServer, compile_model_files, free_port, rss_bytes, shm_regions
from restore_r1.serving.testing import degraded_photos, make_random_policy

pytestmark = [pytest.mark.slow]
VENV = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
if not (VENV / "bin" / "python").exists():
    pytest.skip(f"no Triton venv at {VENV}; run `make triton-venv`", allow_module_level=True)

#: Concurrent clients of the load test.
CLIENTS = 16
#: Seconds of load the memory test samples (the serving issue asks for 2 minutes; this file then
#: takes about 5 minutes on the 2-core machine: 3 server starts of ~25 s each and two other tests).
LOAD_SECONDS = 120
#: Seconds of load before sampling starts (every tool model and both agent instances see the
#: image size, and malloc's kept heap reaches its working set).
WARMUP_SECONDS = 10
#: Seconds between memory samples.
RSS_EVERY_S = 1.0
#: The mean resident memory of the last quarter of the samples may exceed the first quarter's by
#: at most this fraction.
RSS_GROWTH = 0.15
#: Client-side timeout of every request (s).
CLIENT_TIMEOUT_S = 60.0
#: How often the poll-mode server rescans the repository (s), and how long version 2 may take to
#: answer once it is in place.
POLL_SECS = 2
NEW_VERSION_WITHIN_S = 60.0
#: Once the server is killed, a request must fail within this many seconds (no hang).
ERROR_BOUND_S = 15.0
#: Seconds after the restart is ready within which every client must have succeeded again.
RECOVERY_S = 60.0
#: Seconds a client waits after a failed request before the next one.
RETRY_PAUSE_S = 0.2


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return degraded_photos(128, 96, 15)


@dataclass
class Outcome:
    """One request: when it started and ended (``time.monotonic()``), and what came back."""

    client: int
    start: float
    end: float
    ok: bool
    policy_version: str | None = None
    tools: list = field(default_factory=list)
    image: int = -1
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Load:
    """``clients`` threads restoring ``images`` in turn until :meth:`stop`; every request is an
    :class:`Outcome`. Clients 0, 2, ... use HTTP, 1, 3, ... gRPC; each keeps one client object
    for its whole life (so a restarted server is reached by the same clients)."""

    def __init__(self, server: TritonServer, images: list[np.ndarray], clients: int) -> None:
        self.server, self.images = server, images
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 10)

    def _run(self, k: int) -> None:
        from restore_r1.serving.client import TritonAgentClient

        protocol = "http" if k % 2 == 0 else "grpc"
        client = TritonAgentClient(self.server.http_url if protocol == "http" else self.server.grpc_url, protocol=protocol, timeout_s=CLIENT_TIMEOUT_S)
        i = k
        while not self._stop.is_set():
            index = i % len(self.images)
            start = time.monotonic()
            try:
                result = client.restore(self.images[index])
            except Exception as exc:  # every failure is recorded; the assertions judge them
                outcome = Outcome(k, start, time.monotonic(), False, image=index, error=f"{type(exc).__name__}: {exc}")
            else:
                failed = "" if not result.partial else f"partial: {result.failed}"
                outcome = Outcome(k, start, time.monotonic(), not result.partial, result.policy_version, result.tools, index, failed)
            with self._lock:
                self.outcomes.append(outcome)
            if not outcome.ok:
                time.sleep(RETRY_PAUSE_S)
            i += 1

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


def failures(outcomes: list[Outcome]) -> list[str]:
    return [f"client {o.client}, image {o.image}: {o.error}" for o in outcomes if not o.ok]


def p95(outcomes: list[Outcome]) -> float:
    return float(np.percentile([o.seconds for o in outcomes if o.ok], 95))


def say(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}", flush=True)


@pytest.fixture(scope="module")
def poll_server(tmp_path_factory):
    """A server in poll mode (the load test and the new-version test): the repository as
    generated, so the policy model's version 1 falls back to the shipped default."""
    root = tmp_path_factory.mktemp("poll")
    repo = write_repository(root / "repo")
    extra = ["--model-control-mode=poll", f"--repository-poll-secs={POLL_SECS}"]
    srv = TritonServer(repo, VENV, 0, 0, 0, extra_args=extra, log_path=root / "tritonserver.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.timeout(WARMUP_SECONDS + LOAD_SECONDS + 120)
def test_16_clients_for_a_bounded_time_no_failure_and_flat_memory(poll_server, images, capsys):
    samples: list[tuple[float, int]] = []
    with Load(poll_server, images, CLIENTS) as load:
        time.sleep(WARMUP_SECONDS)
        begin = time.monotonic()
        first = len(load.snapshot())
        while time.monotonic() - begin < LOAD_SECONDS:
            samples.append((time.monotonic() - begin, rss_bytes(poll_server.processes())))
            time.sleep(RSS_EVERY_S)
    timed = load.snapshot()[first:]
    assert not failures(load.outcomes), "\n".join(failures(load.outcomes)[:10])
    quarter = max(1, len(samples) // 4)
    head = statistics.mean(r for _, r in samples[:quarter])
    tail = statistics.mean(r for _, r in samples[-quarter:])
    say(
        capsys,
        f"{CLIENTS} clients, {LOAD_SECONDS} s: {len(timed)} requests ({len(timed) / LOAD_SECONDS:.1f}/s), p50 "
        f"{statistics.median(o.seconds for o in timed):.2f} s, p95 {p95(timed):.2f} s, 0 failed; server RSS "
        f"{head / 2**20:.0f} -> {tail / 2**20:.0f} MiB (first -> last quarter mean, {len(poll_server.processes())} processes)",
    )
    assert tail <= head * (1 + RSS_GROWTH), f"server memory grew from {head / 2**20:.0f} to {tail / 2**20:.0f} MiB under steady load"
    assert {o.policy_version for o in timed} == {MODEL_VERSION}


def write_version_atomically(model_dir: Path, version: int, policy_dir: Path, staging: Path) -> Path:
    """Builds ``<version>/`` (model.py, its bytecode, policy/) in ``staging`` on the same file
    system and renames it into ``model_dir`` in one step, so a poll never sees half a version (nor,
    later, a ``__pycache__`` appearing: see :func:`compile_model_files`)."""
    tmp = staging / f"{model_dir.name}-{version}"
    shutil.copytree(policy_dir, tmp / b.POLICY_SUBDIR)
    shutil.copy2(model_dir / MODEL_VERSION / "model.py", tmp / "model.py")
    compile_model_files(tmp, VENV / "bin" / "python")
    target = model_dir / str(version)
    os.rename(tmp, target)
    return target


@pytest.mark.timeout(240)
def test_a_new_policy_version_under_load_is_served_with_no_failed_request(poll_server, images, tmp_path, capsys):
    from restore_r1.agent.inference import Agent

    v2 = make_random_policy(tmp_path / "v2-policy", seed=1)
    expected = {i: Agent.load(v2).restore(img).tools for i, img in enumerate(images)}
    model_dir = Path(poll_server.repository) / b.POLICY_MODEL
    with Load(poll_server, images, CLIENTS // 2) as load:
        time.sleep(5)
        write_version_atomically(model_dir, 2, v2, tmp_path)
        placed = time.monotonic()
        deadline = placed + NEW_VERSION_WITHIN_S
        while time.monotonic() < deadline and not any(o.policy_version == "2" for o in load.snapshot()):
            time.sleep(0.5)
        first_v2 = next((o for o in load.snapshot() if o.policy_version == "2"), None)
        assert first_v2 is not None, f"no answer from policy version 2 within {NEW_VERSION_WITHIN_S:g} s: {poll_server.log_tail()}"
        time.sleep(8)  # keep the load on while version 1 is unloaded
    outcomes = load.outcomes
    assert not failures(outcomes), "\n".join(failures(outcomes)[:10])
    versions = {o.policy_version for o in outcomes}
    assert versions == {MODEL_VERSION, "2"}, versions
    late = [o for o in outcomes if o.start > first_v2.end + 2 * POLL_SECS]
    assert late and all(o.policy_version == "2" for o in late), "answers still came from version 1 after version 2 served"
    # An episode stays on the version of its first decision, so every answer from version 2 is
    # that policy's plan (and none failed reading version 1's tool history with version 2's tools).
    wrong = [o.image for o in outcomes if o.policy_version == "2" and o.tools != expected[o.image]]
    assert not wrong, f"version 2's answers differ from its policy in-process on images {wrong}"
    say(
        capsys,
        f"policy version 2 first answered {first_v2.end - placed:.1f} s after it was placed; {len(outcomes)} requests, "
        f"{sum(o.policy_version == MODEL_VERSION for o in outcomes)} by version 1, {sum(o.policy_version == '2' for o in outcomes)} by version 2, 0 failed",
    )


@pytest.mark.timeout(300)
def test_a_killed_server_gives_clean_errors_then_the_same_clients_succeed_after_a_restart(tmp_path, images, capsys):
    from restore_r1.serving.client import RemoteError

    repo = write_repository(tmp_path / "repo")
    ports = (free_port(), free_port(), free_port())
    srv = TritonServer(repo, VENV, *ports, log_path=tmp_path / "tritonserver.log").start()
    restarted = None
    try:
        with Load(srv, images, 8) as load:
            time.sleep(6)
            before = len(load.snapshot())
            stubs = srv.processes()
            regions = shm_regions(stubs)
            os.kill(srv.pid, signal.SIGKILL)
            killed = time.monotonic()
            srv.process.wait()
            time.sleep(ERROR_BOUND_S + 2)  # every request in flight has ended; new ones are refused
            down = [o for o in load.snapshot()[before:] if o.end > killed]
            lingering = [p for p in stubs if Path(f"/proc/{p}").exists()]
            leaked = [r for r in regions if (SHM_DIR / r).exists()]
            restarted = TritonServer(repo, VENV, *ports, log_path=tmp_path / "tritonserver-2.log").start()
            ready = time.monotonic()
            deadline = ready + RECOVERY_S
            while time.monotonic() < deadline:
                recovered = {o.client for o in load.snapshot() if o.ok and o.start > ready}
                if len(recovered) == 8:
                    break
                time.sleep(0.5)
            time.sleep(3)
        after = [o for o in load.outcomes if o.start > ready]
    finally:
        for server in (srv, restarted):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
    assert sum(o.ok for o in load.outcomes[:before]) > 0, "no request succeeded before the kill"
    errors = [o for o in down if not o.ok]
    assert errors, "no request failed while the server was down"
    slow = [f"{o.seconds:.1f} s: {o.error}" for o in errors if o.seconds > ERROR_BOUND_S]
    assert not slow, f"requests hung after the kill: {slow[:5]}"
    unclean = [o.error for o in errors if not o.error.startswith(RemoteError.__name__)]
    assert not unclean, f"errors that are not RemoteError: {unclean[:5]}"
    assert {o.client for o in after if o.ok} == set(range(8)), "not every client succeeded after the restart"
    assert not [r for r in regions if (SHM_DIR / r).exists()], "the killed server's shared memory is still in /dev/shm after stop()"
    late = [o for o in after if o.start > ready + 10 and not o.ok]
    assert not late, f"failures 10 s after the restart: {[o.error for o in late[:5]]}"
    say(
        capsys,
        f"killed under load: {len(errors)} clean errors, the slowest after {max(o.seconds for o in errors):.2f} s; "
        f"{len(lingering)} of {len(stubs)} server processes still alive {ERROR_BOUND_S + 2:g} s after the kill, "
        f"{len(leaked)} of {len(regions)} shared-memory regions left in /dev/shm; "
        f"after the restart every client succeeded within {max(min(o.end for o in after if o.ok and o.client == k) for k in range(8)) - ready:.1f} s",
    )
