"""Per-photo costs of a batch restoration, and the all-reduce of the policy's gradient (docs/scaling.md).

    PYTHONPATH=$PWD .venv/bin/python bench/batch_bench.py --out bench/results [--n 12]

1. The shipped default policy in process through :func:`restore_r1.pipeline.batch.restore_shard`
   (local folders) on ``n`` degraded crops at 256×256 and at 1152×864: seconds per photo and
   where they went (encoder, policy, judge, tools) from the manifest records.
2. The batch's own overhead per photo against an S3 endpoint (moto's server on 127.0.0.1; a real
   S3 adds its network round trips): a restore that does no work, so only the GET, the two PUTs
   and the PNG encoding remain.
3. One all-reduce of the default policy's gradient (its parameter count, float32) over 2 gloo
   ranks on this machine, the median of 200.
Writes ``batch.json`` and ``batch.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

SIZES = ((256, 256), (1152, 864))
ALLREDUCE_REPEATS = 200


def in_process(n: int, work: Path) -> dict:
    from restore_r1.images import write_image
    from restore_r1.pipeline.batch import finish_batch, plan_batch, read_manifest, restore_shard
    from restore_r1.serving.testing import degraded_photos

    rows = {}
    for w, h in SIZES:
        src, out = work / f"in{w}", work / f"out{w}"
        for i, img in enumerate(degraded_photos(w, h, n, seed=7)):
            write_image(src / f"p{i:02d}.png", img)
        plan = plan_batch(str(src), str(out))
        start = time.perf_counter()
        result = restore_shard(plan, 0)
        wall = time.perf_counter() - start
        finish_batch(plan, [result])
        records = read_manifest(str(out))
        parts: dict[str, float] = {}
        for r in records:
            for key, sec in r["timings"].items():
                part = "tools" if key.startswith("tool:") else key
                parts[part] = parts.get(part, 0.0) + sec / len(records)
        calls = sum(len(r["tools"]) for r in records) / len(records)
        mp = w * h / 1e6
        rows[f"{w}x{h}"] = {
            "photos": len(records),
            "megapixels": mp,
            "wall_seconds": wall,
            "seconds_per_photo": statistics.mean(r["seconds"] for r in records),
            "batch_overhead_per_photo": (wall - sum(r["seconds"] for r in records)) / len(records),
            "tool_calls_per_photo": calls,
            "parts_per_photo": parts,
            "judge_seconds_per_mp_per_call": parts.get("judge", 0.0) / mp / (calls + 1),
            "tool_seconds_per_mp_per_call": parts.get("tools", 0.0) / mp / calls if calls else 0.0,
        }
    return rows


def s3_overhead(n: int, work: Path) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    from restore_r1.agent.inference import RestoreResult
    from restore_r1.images import encode_image
    from restore_r1.pipeline.batch import plan_batch, restore_shard
    from restore_r1.serving.testing import degraded_photos

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        rows = {}
        for w, h in SIZES:
            for i, img in enumerate(degraded_photos(w, h, n, seed=7)):
                client.put_object(Bucket="bench", Key=f"in{w}/p{i:02d}.png", Body=encode_image(img))
            plan = plan_batch(f"s3://bench/in{w}", f"s3://bench/out{w}", endpoint=endpoint)
            start = time.perf_counter()
            restore_shard(plan, 0, restore=lambda img: RestoreResult(image=img, tools=[], scores=[0.0], seconds=0.0), endpoint=endpoint)
            rows[f"{w}x{h}"] = {"seconds_per_photo": (time.perf_counter() - start) / n, "png_bytes": len(encode_image(img))}
        return rows
    finally:
        server.stop()


def _allreduce_worker(rank: int, world: int, port: int, numel: int, queue) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    grad = torch.ones(numel)
    for _ in range(10):
        dist.all_reduce(grad)
    times = []
    for _ in range(ALLREDUCE_REPEATS):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(grad)
        times.append(time.perf_counter() - start)
    if rank == 0:
        queue.put(statistics.median(times))
    dist.destroy_process_group()


def allreduce(numel: int) -> float:
    import torch.multiprocessing as mp

    from restore_r1.serving.server import free_port

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_allreduce_worker, args=(r, 2, port, numel, queue)) for r in range(2)]
    for p in procs:
        p.start()
    value = queue.get(timeout=300)
    for p in procs:
        p.join(60)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--n", type=int, default=12, help="photos per size (default 12)")
    args = parser.parse_args(argv)

    from restore_r1.agent.inference import DEFAULT_POLICY_DIR
    from restore_r1.agent.policy import load_policy

    policy = load_policy(DEFAULT_POLICY_DIR)
    numel = sum(p.numel() for p in policy.parameters())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="restore-r1-batch-bench-") as work:
        agent = in_process(args.n, Path(work))
        s3 = s3_overhead(args.n, Path(work))
    reduce_s = allreduce(numel)
    load = os.getloadavg()[0]
    result = {
        "command": f"python bench/batch_bench.py --out {args.out} --n {args.n}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, load average (1 min) {load:.1f} at the end",
        "policy": "restore_r1/data/default_policy (judge relative, encoder stats)",
        "in_process": agent,
        "s3_overhead_moto": s3,
        "allreduce": {"parameters": numel, "bytes": numel * 4, "ranks": 2, "backend": "gloo", "median_seconds": reduce_s},
        "seconds": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Batch restoration: per-photo costs",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {result['machine']} (other jobs share the cores: upper bounds)  ",
        f"Policy: {result['policy']}; {args.n} degraded crops of the held-out photos per size (restore_r1.serving.testing.degraded_photos)",
        "",
        "| size | MP | s / photo | tool calls | encoder s | policy s | judge s | tools s | batch overhead s (folders) | overhead s (moto S3) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in agent.items():
        p = row["parts_per_photo"]
        lines.append(
            f"| {key} | {row['megapixels']:.2f} | {row['seconds_per_photo']:.3f} | {row['tool_calls_per_photo']:.2f} | {p.get('encoder', 0):.3f} | "
            f"{p.get('policy', 0):.4f} | {p.get('judge', 0):.3f} | {p.get('tools', 0):.3f} | {row['batch_overhead_per_photo']:.3f} | {s3[key]['seconds_per_photo']:.3f} |"
        )
    lines += [
        "",
        f"All-reduce of the policy's gradient ({numel:,} float32 = {numel * 4 / 1024:.0f} KiB), 2 gloo ranks on this machine: "
        f"**{reduce_s * 1e3:.2f} ms** (median of {ALLREDUCE_REPEATS}).",
    ]
    (out / "batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
