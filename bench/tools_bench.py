"""Bench of the tools that run here: gain on their own degradation, effect on the others, speed.

For every available tool and every degradation type (docs/method.md §2, drawn by
``restore_r1.degradations.apply_degradation``), PSNR/SSIM (skimage.metrics) of the degraded and
of the restored image against the clean one, averaged over the photos and draws; plus seconds per
image on one thread. With ``--speed-mp`` (default 1 and 12), also seconds per megapixel of every
tool on a noisy photo of that many megapixels (one call each, ``--threads`` threads). Writes
``tools.json`` and ``tools.md`` to ``--out``; the DnCNN study stays in ``dncnn.md``.

    .venv/bin/python bench/tools_bench.py --out bench/results --size 512 --n 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from restore_r1 import DEGRADATION_TYPES
from restore_r1.degradations import apply_degradation
from restore_r1.metrics import psnr, ssim
from restore_r1.tools import list_tools

#: Clean photos from skimage.data (public domain / CC0), resized and centre-cropped to --size.
PHOTOS = ("astronaut", "coffee", "rocket")


def square_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size`` (area interpolation), then centre-crop size×size."""
    h, w = img.shape[:2]
    scale = size / min(h, w)
    if scale != 1:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    y0, x0 = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[y0 : y0 + size, x0 : x0 + size])


def _scores(clean: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    return psnr(img, clean), ssim(img, clean)


def run(size: int, n: int, seed: int) -> dict:
    photos = [square_crop(getattr(skimage.data, p)(), size) for p in PHOTOS]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[tuple[np.ndarray, np.ndarray, dict]]] = {d: [] for d in DEGRADATION_TYPES}
    for d in DEGRADATION_TYPES:
        for clean in photos:
            for _ in range(n):
                degraded, params = apply_degradation(d, clean, rng)
                samples[d].append((clean, degraded, params))
    baseline = {d: np.mean([_scores(c, x) for c, x, _ in s], axis=0).tolist() for d, s in samples.items()}
    tools = []
    for tool in list_tools(available_only=True):
        effects = {}
        seconds = []
        for d, items in samples.items():
            dpsnr, dssim = [], []
            for clean, degraded, _ in items:
                t0 = time.perf_counter()
                out = tool(degraded)
                seconds.append(time.perf_counter() - t0)
                p0, s0 = _scores(clean, degraded)
                p1, s1 = _scores(clean, out)
                dpsnr.append(p1 - p0)
                dssim.append(s1 - s0)
            effects[d] = {"dpsnr": float(np.mean(dpsnr)), "dpsnr_min": float(np.min(dpsnr)), "dssim": float(np.mean(dssim))}
        own = effects[tool.degradation]
        sec = float(np.median(seconds))
        tools.append(
            {
                "name": tool.name,
                "degradation": tool.degradation,
                "paper": tool.paper,
                "backend": tool.backend,
                "seconds_per_image": sec,
                "own": own,
                "effects": effects,
                "dpsnr_per_second": own["dpsnr"] / max(sec, 1e-4),
            }
        )
    return {"baseline": {d: {"psnr": v[0], "ssim": v[1]} for d, v in baseline.items()}, "tools": tools}


#: Megapixel sizes of the speed table and their shapes (4:3, as a camera writes them).
SPEED_SHAPES = {1: (864, 1152), 12: (3000, 4000)}


def speed(mps: list[int], seed: int) -> dict[str, dict[str, float]]:
    """Seconds per megapixel of every available tool at each size in ``mps`` (one call each on
    astronaut resized to that size with σ-15 noise); ``{tool: {"1": s_per_mp, ...}}``."""
    rng = np.random.default_rng(seed)
    base = skimage.data.astronaut()
    images = {}
    for mp in mps:
        h, w = SPEED_SHAPES.get(mp, (round((mp * 1e6 * 3 / 4) ** 0.5), round((mp * 1e6 * 4 / 3) ** 0.5)))
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        images[mp] = np.clip(img + rng.normal(0, 15, img.shape), 0, 255).astype(np.uint8)
    out: dict[str, dict[str, float]] = {}
    for tool in list_tools(available_only=True):
        out[tool.name] = {}
        for mp, img in images.items():
            t0 = time.perf_counter()
            tool(img)
            out[tool.name][str(mp)] = (time.perf_counter() - t0) / (img.shape[0] * img.shape[1] / 1e6)
        print(f"speed {tool.name}: " + ", ".join(f"{mp} MP {v:.2f} s/MP" for mp, v in out[tool.name].items()), file=sys.stderr, flush=True)
    return out


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": cv2.getNumThreads(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def to_markdown(report: dict) -> str:
    lines = [
        "# Tools bench",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, OpenCV threads {report['machine']['threads']}, "
        f"numpy {report['machine']['numpy']}, OpenCV {report['machine']['opencv']}  ",
        f"Images: {', '.join(report['photos'])} from skimage.data, {report['size']}² crops, {report['n']} draw(s) each of every "
        "degradation (restore_r1.degradations, docs/method.md §2 ranges; haze with the depth prior). PSNR/SSIM by skimage.metrics.",
        "",
        "## Degraded baselines",
        "",
        "| degradation | PSNR | SSIM |",
        "|---|---|---|",
    ]
    for d, v in report["results"]["baseline"].items():
        lines.append(f"| {d} | {v['psnr']:.2f} | {v['ssim']:.3f} |")
    lines += [
        "",
        "## Gain on the tool's own degradation",
        "",
        "| tool | target | paper | ΔPSNR dB (min) | ΔSSIM | s / image | ΔPSNR per s |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in report["results"]["tools"]:
        o = t["own"]
        lines.append(
            f"| {t['name']} | {t['degradation']} | {'yes' if t['paper'] else 'no'} | {o['dpsnr']:+.2f} ({o['dpsnr_min']:+.2f}) | "
            f"{o['dssim']:+.3f} | {t['seconds_per_image']:.3f} | {t['dpsnr_per_second']:.1f} |"
        )
    lines += ["", "## ΔPSNR (dB) on every degradation (rows: tools; bold: own target)", ""]
    lines.append("| tool | " + " | ".join(DEGRADATION_TYPES) + " |")
    lines.append("|---|" + "---|" * len(DEGRADATION_TYPES))
    for t in report["results"]["tools"]:
        cells = [(f"**{t['effects'][d]['dpsnr']:+.2f}**" if d == t["degradation"] else f"{t['effects'][d]['dpsnr']:+.2f}") for d in DEGRADATION_TYPES]
        lines.append(f"| {t['name']} | " + " | ".join(cells) + " |")
    lines += ["", "## ΔSSIM on every degradation", ""]
    lines.append("| tool | " + " | ".join(DEGRADATION_TYPES) + " |")
    lines.append("|---|" + "---|" * len(DEGRADATION_TYPES))
    for t in report["results"]["tools"]:
        lines.append(f"| {t['name']} | " + " | ".join(f"{t['effects'][d]['dssim']:+.3f}" for d in DEGRADATION_TYPES) + " |")
    if report.get("speed"):
        mps = list(next(iter(report["speed"].values())))
        lines += [
            "",
            f"## Seconds per megapixel ({report['machine']['threads']} OpenCV / torch thread(s), one call per size)",
            "",
            "On astronaut resized to each size with σ-15 Gaussian noise (content changes little for these tools). "
            + ", ".join(f"{mp} MP = {SPEED_SHAPES[int(mp)][1]}×{SPEED_SHAPES[int(mp)][0]}" for mp in mps if int(mp) in SPEED_SHAPES)
            + ".",
            "",
            "| tool | " + " | ".join(f"s / MP at {mp} MP" for mp in mps) + f" | s for a {mps[-1]} MP photo |",
            "|---|" + "---|" * (len(mps) + 1),
        ]
        for name, row in sorted(report["speed"].items(), key=lambda kv: -kv[1][mps[-1]]):
            lines.append(f"| {name} | " + " | ".join(f"{row[mp]:.3f}" for mp in mps) + f" | {row[mps[-1]] * float(mps[-1]):.1f} |")
    lines += ["", "The DnCNN denoisers' study (models, colour handling, σ scale) is in [dncnn.md](dncnn.md)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n", type=int, default=2, help="draws of each degradation per photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV/torch threads (timings are per thread count)")
    parser.add_argument("--speed-mp", default="1,12", help="megapixel sizes of the speed table, comma list ('' skips it)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    results = run(args.size, args.n, args.seed)
    mps = [int(x) for x in args.speed_mp.split(",") if x.strip()]
    speeds = speed(mps, args.seed) if mps else None
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "photos": list(PHOTOS),
        "size": args.size,
        "n": args.n,
        "seed": args.seed,
        "results": results,
        "speed": speeds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tools.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "tools.md").write_text(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
