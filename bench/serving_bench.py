"""Serving bench: the agent through Triton (dynamic batching on / off) versus in-process.

    python bench/serving_bench.py --out bench/results [--requests 16] [--policy DIR]

For each image size (256², 512²) and each number of concurrent clients (1, 4, 16), N requests
(degraded skimage crops, cases 1-15 in turn) are sent by that many client threads; throughput is
requests / wall time and latency is per request, client side. In-process, the clients share one
loaded ``Agent`` (threads; OpenCV and torch release the GIL). Through Triton, each client thread
has its own gRPC client and the server runs the CPU configs (``configs/cpu.pbtxt``).
Writes ``serving.json`` and ``serving.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore_r1.serving import backend as b  # noqa: E402
from restore_r1.serving.repository import MODEL_VERSION, write_repository  # noqa: E402
from restore_r1.serving.server import TritonServer  # noqa: E402
from restore_r1.serving.testing import make_random_policy  # noqa: E402

SIZES = (256, 512)
CONCURRENCY = (1, 4, 16)
DEFAULT_REQUESTS = 16
#: Concurrent warm-up clients before the cells are timed (reaches every agent instance).
WARMUP_CLIENTS = 4
MODES = ("in-process", "triton (dynamic batching)", "triton (no batching)")


def images(size: int, n: int) -> list[np.ndarray]:
    from restore_r1.cleanimages import load_clean
    from restore_r1.degradations import CASES, apply_case

    clean = [load_clean(name) for name in ("astronaut", "coffee", "rocket")]
    out = []
    for i in range(n):
        img = clean[i % len(clean)]
        crop = (
            np.ascontiguousarray(img[:size, :size])
            if min(img.shape[:2]) >= size
            else np.ascontiguousarray(np.pad(img, ((0, max(0, size - img.shape[0])), (0, max(0, size - img.shape[1])), (0, 0)), mode="reflect")[:size, :size])
        )
        case = list(CASES)[i % len(CASES)]
        out.append(apply_case(case, crop, np.random.default_rng(i))[0])
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_cell(restore_factory, imgs: list[np.ndarray], clients: int) -> dict:
    """Sends every image once from ``clients`` threads; returns throughput and latency stats."""
    latencies: list[float] = []
    steps: list[int] = []

    def worker(indices: list[int]) -> None:
        restore = restore_factory()
        for i in indices:
            t0 = time.perf_counter()
            result = restore(imgs[i])
            latencies.append(time.perf_counter() - t0)
            steps.append(len(result.tools))

    shards = [list(range(k, len(imgs), clients)) for k in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, shards))
    wall = time.perf_counter() - start
    return {
        "requests": len(imgs),
        "clients": clients,
        "wall_s": wall,
        "throughput_rps": len(imgs) / wall,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "mean_steps": statistics.mean(steps),
    }


def bench_server(repo: Path, cells: list[tuple[int, int]], imgs_by_size: dict, log: Path) -> dict:
    from restore_r1.serving.client import TritonAgentClient

    results = {}
    with TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0, log_path=log) as server:
        # Warm every agent instance (each loads the judge lazily on its first image).
        def warm(i: int) -> None:
            client = TritonAgentClient(server.grpc_url, protocol="grpc")
            for size in SIZES:
                client.restore(imgs_by_size[size][i % len(imgs_by_size[size])])

        with ThreadPoolExecutor(WARMUP_CLIENTS) as pool:
            list(pool.map(warm, range(WARMUP_CLIENTS)))
        for size, clients in cells:

            def factory(url=server.grpc_url):
                return TritonAgentClient(url, protocol="grpc").restore

            results[(size, clients)] = run_cell(factory, imgs_by_size[size], clients)
            print(f"  {size}² c={clients}: {results[(size, clients)]['throughput_rps']:.2f} req/s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="requests per cell")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs)")
    parser.add_argument("--policy", help="policy folder (default: a random stats-encoder policy over the fast tools)")
    args = parser.parse_args(argv)

    from restore_r1.agent.inference import Agent

    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    try:
        if args.policy:
            policy_dir = Path(args.policy)
            policy_note = f"policy {policy_dir}"
        else:
            policy_dir = make_random_policy(work / "policy")
            policy_note = (
                "random stats-encoder policy over 8 fast tools, max 3 steps "
                "(restore_r1.serving.testing.make_random_policy; plans are arbitrary, cost is realistic)"
            )
        imgs_by_size = {size: images(size, args.requests) for size in SIZES}
        cells = [(s, c) for s in SIZES for c in CONCURRENCY]
        results: dict[str, dict] = {}

        print("in-process", flush=True)
        agent = Agent.load(policy_dir)
        for size in SIZES:
            agent.restore(imgs_by_size[size][0])
        results[MODES[0]] = {}
        for size, clients in cells:
            results[MODES[0]][(size, clients)] = run_cell(lambda: agent.restore, imgs_by_size[size], clients)
            print(f"  {size}² c={clients}: {results[MODES[0]][(size, clients)]['throughput_rps']:.2f} req/s", flush=True)

        for mode, batching in ((MODES[1], True), (MODES[2], False)):
            print(mode, flush=True)
            repo = write_repository(work / f"repo-{int(batching)}", dynamic_batching=batching)
            shutil.copytree(policy_dir, repo / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR)
            results[mode] = bench_server(repo, cells, imgs_by_size, work / f"triton-{int(batching)}.log")

        write_results(Path(args.out), results, args.requests, policy_note)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def write_results(out: Path, results: dict, requests: int, policy_note: str) -> None:
    import cv2
    import torch

    from restore_r1.judges import DEFAULT_JUDGE

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": f"python bench/serving_bench.py --out bench/results --requests {requests}",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, no GPU",
        "in_process_env": f"numpy {np.__version__}, OpenCV {cv2.__version__}, torch {torch.__version__}",
        "triton": "tritonserver 2.51 (nvidia-pytriton 0.7.0), python backend, configs/cpu.pbtxt, gRPC client (one per client thread)",
        "policy": policy_note,
        "judge": f"create_judge('default') = {DEFAULT_JUDGE!r}, in the agent process",
        "requests_per_cell": requests,
    }
    rows = [{"mode": mode, "size": size, **cell} for mode, cells in results.items() for (size, _), cell in cells.items()]
    (out / "serving.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Serving bench: agent through Triton vs in-process", ""]
    lines += [f"{k.replace('_', ' ').capitalize()}: {v}  " for k, v in meta.items()]
    lines += ["", "| mode | image | clients | requests | req/s | p50 s | p95 s | mean tool calls |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['size']}² | {r['clients']} | {r['requests']} | {r['throughput_rps']:.2f} | "
            f"{r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['mean_steps']:.2f} |"
        )
    (out / "serving.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
