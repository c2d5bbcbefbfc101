"""Where a served restore's time goes: one client, the shipped policy, in-process vs Triton.

    PYTHONPATH=$PWD .venv/bin/python bench/serving_profile.py [--size 256] [--n 12] [--protocol http]

Restores ``--n`` degraded crops one after another in-process (``Agent.load(None)``, with the
tools, the encoder and the judge timed) and through a local Triton server over the same
repository the serving tests use (the policy model falls back to the packaged default). The
server's agent model is wrapped (in the scratch repository only) to time its policy calls, tool
calls, judge calls and the wait for its BLS lock; Triton's own ``nv_inference_*`` counters give
each model's queue and compute time. Prints one table per path and writes ``profile.json`` to
``--out`` (a scratch folder by default). A profiling aid: it changes nothing it measures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore_r1.serving import backend as b  # noqa: E402
from restore_r1.serving.repository import MODEL_VERSION, write_repository  # noqa: E402
from restore_r1.serving.server import TritonServer, model_counters  # noqa: E402
from restore_r1.serving.testing import degraded_photos  # noqa: E402

#: Environment variable naming the folder the wrapped agent writes its timings to.
PROFILE_DIR_ENV = "RESTORE_R1_PROFILE_DIR"
#: The wrapped agent model: times policy, tool and judge calls and the BLS-lock wait.
AGENT_PROFILE_MODEL = '''"""Profiling wrapper of the agent model (bench/serving_profile.py only)."""
import json, os, threading, time
import triton_python_backend_utils as pb_utils
from restore_r1.serving.backend import make_model

Base = make_model("agent", pb_utils)


class _TimedLock:
    def __init__(self, lock, add):
        self.lock, self.add = lock, add

    def __enter__(self):
        t0 = time.perf_counter()
        self.lock.acquire()
        self.add("bls_lock_wait", time.perf_counter() - t0)

    def __exit__(self, *exc):
        self.lock.release()


class TritonPythonModel(Base):
    def initialize(self, args):
        super().initialize(args)
        self._times = {}
        self._mutex = threading.Lock()
        self.bls_lock = _TimedLock(self.bls_lock, self._add)
        for name in ("increment", "observe"):
            setattr(self.metrics, name, self._wrap("metrics", getattr(self.metrics, name)))
        self._path = os.path.join(os.environ["RESTORE_R1_PROFILE_DIR"], f"agent-{os.getpid()}-{args['model_instance_name']}.json")
        import cv2, torch
        self._threads = {"cv2": cv2.getNumThreads(), "torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}

    def _add(self, key, seconds):
        with self._mutex:
            n, s = self._times.get(key, (0, 0.0))
            self._times[key] = (n + 1, s + seconds)

    def _wrap(self, key, fn):
        return lambda *a, **kw: self._timed(key, fn, *a, **kw)

    def _timed(self, key, fn, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self._add(key, time.perf_counter() - t0)

    def call_policy(self, *args):
        return self._timed("policy_call", super().call_policy, *args)

    def call_tool(self, *args):
        return self._timed("tool_call", super().call_tool, *args)

    def score(self, *args):
        return self._timed("judge", super().score, *args)

    def execute(self, requests):
        out = self._timed("execute", super().execute, requests)
        with self._mutex:
            data = {"threads": self._threads, "times": self._times}
        with open(self._path + ".tmp", "w") as fh:
            json.dump(data, fh)
        os.replace(self._path + ".tmp", self._path)
        return out
'''


class Timed:
    """Wraps a callable and sums its seconds under ``key`` of ``totals``."""

    def __init__(self, fn, key: str, totals: dict) -> None:
        self.fn, self.key, self.totals = fn, key, totals

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.totals[self.key] += time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self.fn, name)


def load_in_process() -> tuple[object, dict]:
    """The in-process agent with its tools (per name), encoder and judge timed into ``totals``."""
    from restore_r1.agent.inference import Agent

    agent = Agent.load(None)
    totals: dict[str, float] = defaultdict(float)
    agent.tools = {name: Timed(tool, f"tool {name}", totals) for name, tool in agent.tools.items()}
    agent.encoder.encode = Timed(agent.encoder.encode, "encoder", totals)
    agent.judge.score_relative = Timed(agent.judge.score_relative, "judge", totals)
    return agent, totals


def agent_times(folder: Path) -> tuple[dict, dict]:
    """Summed (calls, seconds) per key over the wrapped agent instances, and their thread counts."""
    times: dict[str, list] = defaultdict(lambda: [0, 0.0])
    threads = {}
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        threads = data["threads"]
        for key, (n, s) in data["times"].items():
            times[key][0] += n
            times[key][1] += s
    return dict(times), threads


def profile(imgs: list[np.ndarray], protocol: str, work: Path, dynamic_batching: bool, in_process: bool) -> dict:
    """Restores each image in-process then through Triton, one after the other (interleaved, so
    that the other load on the machine weighs on both alike)."""
    from restore_r1.serving.client import TritonAgentClient

    repo = write_repository(work / "repo", dynamic_batching=dynamic_batching)
    (repo / b.AGENT_MODEL / MODEL_VERSION / "model.py").write_text(AGENT_PROFILE_MODEL)
    prof = work / "agent-profile"
    prof.mkdir()
    agent, totals = load_in_process() if in_process else (None, {})
    server = TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0, log_path=work / "tritonserver.log", env={PROFILE_DIR_ENV: str(prof)})
    local: dict[str, list] = {"latency_s": [], "tools": []}
    served: dict[str, list] = {"latency_s": [], "agent_seconds": [], "step_seconds": [], "tools": []}
    with server:
        client = TritonAgentClient(server.http_url if protocol == "http" else server.grpc_url, protocol=protocol)
        for _ in range(2):  # warm both agent instances (and the in-process agent)
            client.restore(imgs[0])
            if agent is not None:
                agent.restore(imgs[0])
        totals.clear()
        agent_before, _ = agent_times(prof)
        before = model_counters(server.metrics_url)
        for img in imgs:
            if agent is not None:
                t0 = time.perf_counter()
                result = agent.restore(img)
                local["latency_s"].append(time.perf_counter() - t0)
                local["tools"].append(result.tools)
            t0 = time.perf_counter()
            result = client.restore(img)
            served["latency_s"].append(time.perf_counter() - t0)
            served["agent_seconds"].append(result.seconds)
            served["tools"].append(result.tools)
        after = model_counters(server.metrics_url)
        agent_after, threads = agent_times(prof)
    local["components_s"] = dict(totals)
    models: dict[str, dict[str, float]] = defaultdict(dict)
    for (counter, model), value in after.items():
        models[model][counter] = value - before.get((counter, model), 0.0)
    served["agent_s"] = {k: {"calls": n - agent_before.get(k, (0, 0))[0], "seconds": s - agent_before.get(k, (0, 0.0))[1]} for k, (n, s) in agent_after.items()}
    served["agent_threads"] = threads
    served["models"] = {k: v for k, v in models.items() if v.get("nv_inference_request_success")}
    return {"in-process": local, "triton": served} if agent is not None else {"triton": served}


def report(name: str, result: dict) -> None:
    total = sum(result["latency_s"])
    n = len(result["latency_s"])
    print(f"\n== {name}: {n} images, {total:.2f} s ({total / n * 1000:.0f} ms per image), {np.mean([len(t) for t in result['tools']]):.2f} tool calls")
    if "components_s" in result:
        for key, s in sorted(result["components_s"].items()):
            print(f"  {key:<12} {s:7.2f} s  {100 * s / total:5.1f} %")
        return
    served = sum(result["agent_seconds"])
    print(
        f"  agent episode (TRAJECTORY seconds) {served:7.2f} s  {100 * served / total:5.1f} %; outside it (client, transport, agent in/out) {total - served:.2f} s"
    )
    for key, v in result["agent_s"].items():
        print(f"  agent {key:<14} {v['calls']:5d} calls {v['seconds']:7.2f} s  {100 * v['seconds'] / total:5.1f} %")
    print(f"  agent threads: {result['agent_threads']}")
    print(f"  {'model':<40} {'req':>5} {'exec':>5} {'queue s':>8} {'in s':>7} {'infer s':>8} {'out s':>7} {'request s':>9}")
    for model, c in sorted(result["models"].items(), key=lambda kv: -kv[1].get("nv_inference_request_duration_us", 0)):
        us = lambda k: c.get(k, 0.0) / 1e6  # noqa: E731
        print(
            f"  {model:<40} {int(c['nv_inference_request_success']):5d} {int(c.get('nv_inference_exec_count', 0)):5d} "
            f"{us('nv_inference_queue_duration_us'):8.3f} {us('nv_inference_compute_input_duration_us'):7.3f} "
            f"{us('nv_inference_compute_infer_duration_us'):8.3f} {us('nv_inference_compute_output_duration_us'):7.3f} {us('nv_inference_request_duration_us'):9.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--n", type=int, default=12, help="images")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--no-dynamic-batching", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--out", help="folder for profile.json (default: a scratch folder, removed)")
    args = parser.parse_args(argv)
    imgs = degraded_photos(args.size, args.size, args.n)
    work = Path(tempfile.mkdtemp(prefix="serving-profile-"))
    try:
        results = profile(imgs, args.protocol, work, not args.no_dynamic_batching, not args.skip_in_process)
        for name, result in results.items():
            report(name if name == "in-process" else f"triton ({args.protocol})", result)
        if "in-process" in results:
            ratio = sum(results["triton"]["latency_s"]) / sum(results["in-process"]["latency_s"])
            same = results["triton"]["tools"] == results["in-process"]["tools"]
            print(f"\nTriton / in-process: {ratio:.2f}x; same tool sequences: {same}")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "profile.json").write_text(json.dumps({"args": vars(args), **results}, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
