"""DnCNN (scico's trained denoisers) against ``nlm_denoise``: ΔPSNR and seconds on 256-px crops.

Crops of skimage's astronaut and chelsea (the held-out coffee and rocket are not used). Cases:
Gaussian σ 25 and σ 50 (0-255 scale), and one draw per crop of each synthesis noise type (SPEC §2:
Gaussian σ ∈ U(20, 50), Poisson scale ∈ U(1, 3)). A configuration is ``nlm`` or
``VARIANT:COLOUR[:SIGMA_SCALE]`` (restore_r1.tools.dncnn.dncnn_denoise); variants other than the
shipped ones need ``--weights`` pointing at a folder converted with
``bench/convert_dncnn.py --variants ...``. Prints a Markdown table.

    .venv/bin/python bench/dncnn_bench.py --configs nlm 6N:opponent 17N:opponent
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch

from restore_r1.degradations import gaussian_noise, poisson_noise
from restore_r1.metrics import psnr
from restore_r1.tools import classic, dncnn

#: 256-px crops at native resolution: (photo, top, left).
CROPS = (("astronaut", 20, 150), ("astronaut", 256, 0), ("chelsea", 22, 40), ("chelsea", 22, 195))
SIZE = 256


def crops() -> list[np.ndarray]:
    return [np.ascontiguousarray(getattr(skimage.data, p)()[y : y + SIZE, x : x + SIZE]) for p, y, x in CROPS]


def cases(seed: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Case name -> [(clean, noisy), ...], one per crop."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"gaussian σ 25": [], "gaussian σ 50": [], "synthesis range": []}
    for clean in crops():
        out["gaussian σ 25"].append((clean, gaussian_noise(clean, 25.0, rng)))
        out["gaussian σ 50"].append((clean, gaussian_noise(clean, 50.0, rng)))
        out["synthesis range"].append((clean, gaussian_noise(clean, float(rng.uniform(20, 50)), rng)))
        out["synthesis range"].append((clean, poisson_noise(clean, float(rng.uniform(1, 3)), rng)))
    return out


def make_runner(config: str, weights: Path | None):
    if config == "nlm":
        return classic.nlm_denoise
    variant, colour, *rest = config.split(":")
    scale = float(rest[0]) if rest else dncnn.SIGMA_SCALE
    path = (weights / dncnn.weights_filename(variant)) if weights else dncnn.DNCNN_DATA_DIR / dncnn.weights_filename(variant)
    model = dncnn.load_dncnn(path, variant)
    return lambda img: dncnn.dncnn_denoise(img, model, colour, scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["nlm", "6N:opponent", "17N:opponent"])
    parser.add_argument("--weights", type=Path, default=None, help="folder of converted variants (default: the shipped ones)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OpenCV: 1, as bench/tools_bench.py)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    data = cases(args.seed)
    runners = {c: make_runner(c, args.weights) for c in args.configs}
    rows = []
    for config, run in runners.items():
        cells = []
        for pairs in data.values():
            gains, secs = [], []
            for clean, noisy in pairs:
                start = time.perf_counter()
                out = run(noisy)
                secs.append(time.perf_counter() - start)
                gains.append(psnr(out, clean) - psnr(noisy, clean))
            cells.append(f"{np.mean(gains):+.2f} ({np.min(gains):+.2f}) | {np.mean(secs):.2f}")
        rows.append(f"| {config} | " + " | ".join(cells) + " |")
        sys.stderr.write(rows[-1] + "\n")
    head = " | ".join(f"{name}: ΔPSNR dB (min) | s / image" for name in data)
    sys.stdout.write(f"Machine: {platform.platform()}, torch threads {args.threads}, torch {torch.__version__}\n\n")
    sys.stdout.write(f"| configuration | {head} |\n|---|" + "---|---|" * len(data) + "\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
