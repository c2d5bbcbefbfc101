"""What a policy does to photos that need nothing: clean crops restored, counted and scored.

A demanding user's first test is a good photo: the right answer is STOP. For each photo in
``images`` (clean), ``per_photo`` random crops of ``size`` pixels (or the whole photo when it is
smaller), restored by the policy; reported: tool calls, the share left untouched, and PSNR/SSIM
of the output against the photo itself (SSIM by skimage; PSNR of an untouched crop is infinite,
so the mean PSNR is over the changed crops and the worst PSNR over all).

Shared by ``bench/policy_selection.py`` (validation scenes) and ``bench/agent_bench.py``
(held-out photos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from restore_r1.agent.inference import load_agent
from restore_r1.images import read_image
from restore_r1.metrics import psnr, ssim
from restore_r1.registry import local_policy
from restore_r1.synth import crop_box


def crops(images: Sequence[Path | tuple[str, np.ndarray]], per_photo: int, size: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``(name, crop)`` for each photo (a path or ``(name, image)``), ``per_photo`` crops each,
    deterministic in ``seed``."""
    out = []
    for i, item in enumerate(images):
        stem, img = item if isinstance(item, tuple) else (Path(item).stem, read_image(item))
        rng = np.random.default_rng([seed, i])
        for k in range(per_photo):
            box = crop_box(img.shape, size, rng)
            crop = img[box["top"] : box["top"] + box["height"], box["left"] : box["left"] + box["width"]]
            out.append((f"{stem}_{k}", np.ascontiguousarray(crop)))
    return out


def clean_photo_check(policy: str | None, images: Sequence[Path | tuple[str, np.ndarray]], per_photo: int = 3, size: int = 256, seed: int = 11) -> dict:
    """Restores clean crops with ``policy`` (a folder or registry URI of either planner kind; None:
    the shipped one); see the module docstring."""
    agent = load_agent(local_policy(policy))
    rows = []
    for name, crop in crops(images, per_photo, size, seed):
        result = agent.restore(crop)
        p = psnr(result.image, crop)
        rows.append(
            {
                "crop": name,
                "tools": list(result.tools),
                "psnr": None if math.isinf(p) else p,
                "ssim": ssim(result.image, crop),
            }
        )
    changed = [r["psnr"] for r in rows if r["psnr"] is not None]
    return {
        "crops": len(rows),
        "tool_calls": float(np.mean([len(r["tools"]) for r in rows])),
        "untouched_share": float(np.mean([not r["tools"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "psnr_changed": float(np.mean(changed)) if changed else None,
        "psnr_worst": float(min(changed)) if changed else None,
        "rows": rows,
    }


def summary_cells(check: dict) -> str:
    """``calls | untouched | SSIM | worst PSNR`` table cells of one check."""
    worst = f"{check['psnr_worst']:.1f}" if check["psnr_worst"] is not None else "–"
    return f"{check['tool_calls']:.2f} | {100 * check['untouched_share']:.0f} % | {check['ssim']:.3f} | {worst}"
