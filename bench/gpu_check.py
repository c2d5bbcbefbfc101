"""The GPU check (issue 10 §3): the neural tools and the shipped agent on a CUDA device, once.

    bash bench/gpu_check.sh [OUT]                                     # on a machine with a GPU
    PYTHONPATH=$PWD .venv/bin/python bench/gpu_check.py --device cpu --quick --out /tmp/g   # dry run

For every available neural tool (``Tool.neural``: the shipped DnCNN denoisers, and any checkpoint
or TorchScript tool whose weights are installed), on degraded crops at about 1 MP and 12 MP, it
records seconds per megapixel on ``--device`` (one warm-up call, then the mean of ``--repeats``),
the peak GPU memory the call allocated (``torch.cuda.max_memory_allocated``) and, at 1 MP, the
largest difference from the CPU output in grey levels. One 24 MP call of each tool shows that the
tiling bounds the memory whatever the photo's size. Then the shipped agent (``Agent.load(None)``,
the default policy and its tools) restores ``--agent-images`` 1 MP crops with that device set, in
seconds per image. Writes ``gpu.json`` and ``gpu.md`` to ``--out``.

Nothing in ``make test`` needs a GPU: this script is run by hand (or by a session lent a GPU
machine) and its report committed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore_r1.tools.neural import DEVICE_ENV  # noqa: E402

#: (label, width, height) of the timed sizes; the last one is the memory check only.
SIZES = (("1 MP", 1152, 864), ("12 MP", 4000, 3000))
MEMORY_SIZE = ("24 MP", 6000, 4000)
QUICK_SIZES = (("0.07 MP", 320, 240),)
QUICK_MEMORY_SIZE = ("0.3 MP", 640, 480)
#: Degradation case of the test images (4: noise + JPEG, what the denoisers are for).
CASE = 4


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """skimage's astronaut resized to ``width``×``height`` and degraded by :data:`CASE`."""
    import cv2
    import skimage.data

    from restore_r1.degradations import apply_case

    clean = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC)
    return apply_case(CASE, clean, np.random.default_rng(seed))[0]


def peak_bytes(device: str) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def time_tool(tool, img: np.ndarray, device: str, repeats: int) -> tuple[float, int | None, np.ndarray]:
    """(mean seconds, peak allocated bytes, output) of ``tool`` on ``img`` with ``device`` set."""
    os.environ[DEVICE_ENV] = device
    out = tool(img)  # warm-up: loads the weights onto the device
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(repeats):
        out = tool(img)
    return (time.perf_counter() - start) / repeats, peak_bytes(device), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--device", default="cuda", help="torch device (default cuda; cpu for a dry run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agent-images", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat, two agent images (a dry run of the script)")
    args = parser.parse_args(argv)
    import torch

    from restore_r1.agent.inference import Agent
    from restore_r1.tools import list_tools

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device}: torch {torch.__version__} sees no CUDA GPU here", file=sys.stderr)
        return 2
    sizes, memory_size = (QUICK_SIZES, QUICK_MEMORY_SIZE) if args.quick else (SIZES, MEMORY_SIZE)
    repeats = 1 if args.quick else args.repeats
    agent_images = 2 if args.quick else args.agent_images
    started = time.perf_counter()
    tools = [t for t in list_tools(available_only=True) if t.neural]
    rows = []
    for tool in tools:
        for label, w, h in sizes:
            img = photo(w, h)
            seconds, peak, out = time_tool(tool, img, args.device, repeats)
            row = {"tool": tool.name, "size": label, "pixels": w * h, "seconds": seconds, "s_per_mp": seconds / (w * h / 1e6), "peak_gpu_bytes": peak}
            if label == sizes[0][0] and args.device != "cpu":
                os.environ[DEVICE_ENV] = "cpu"
                row["max_diff_vs_cpu"] = int(np.abs(tool(img).astype(int) - out.astype(int)).max())
            rows.append(row)
            print(f"{tool.name} {label}: {row['s_per_mp']:.3f} s/MP, peak {peak}", flush=True)
        label, w, h = memory_size
        _, peak, _ = time_tool(tool, photo(w, h), args.device, 1)
        rows.append({"tool": tool.name, "size": label, "pixels": w * h, "seconds": None, "s_per_mp": None, "peak_gpu_bytes": peak})
    os.environ[DEVICE_ENV] = args.device
    agent = Agent.load(None)
    imgs = [photo(*sizes[0][1:], seed=k) for k in range(agent_images)]
    agent.restore(imgs[0])
    start = time.perf_counter()
    calls = [len(agent.restore(img).tools) for img in imgs]
    agent_s = (time.perf_counter() - start) / len(imgs)
    uses_neural = sorted(set(agent.tools) & {t.name for t in tools})
    meta = {
        "command": "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "duration_s": round(time.perf_counter() - started, 1),
    }
    result = {
        "meta": meta,
        "tools": rows,
        "agent": {"size": sizes[0][0], "images": len(imgs), "s_per_image": agent_s, "mean_calls": float(np.mean(calls)), "neural_tools_in_policy": uses_neural},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# GPU check: neural tools and the shipped agent on one device", ""]
    lines += [f"{k.replace('_', ' ').capitalize()}: {v}  " for k, v in meta.items()]
    lines += ["", "| tool | size | s per MP | seconds | peak GPU memory | max diff vs CPU (grey levels) |", "|---|---|---|---|---|---|"]
    for r in rows:
        s_mp = "-" if r["s_per_mp"] is None else f"{r['s_per_mp']:.3f}"
        sec = "-" if r["seconds"] is None else f"{r['seconds']:.3f}"
        peak = "-" if r["peak_gpu_bytes"] is None else f"{r['peak_gpu_bytes'] / 2**20:.0f} MiB"
        lines.append(f"| {r['tool']} | {r['size']} | {s_mp} | {sec} | {peak} | {r.get('max_diff_vs_cpu', '-')} |")
    a = result["agent"]
    lines += [
        "",
        f"Shipped agent, {a['images']} images of {a['size']}: **{a['s_per_image']:.3f} s per image**, {a['mean_calls']:.2f} tool calls; "
        f"neural tools in its policy: {', '.join(a['neural_tools_in_policy']) or 'none (its tools are classical, so the GPU does not change its time)'}.",
    ]
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
