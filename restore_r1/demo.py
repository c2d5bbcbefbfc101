"""The demo behind ``make demo``: degrade held-out photos, restore them with the shipped policy.

Nothing here is used in training: the clean photos are the bundled held-out ones
(:data:`restore_r1.cleanimages.HELDOUT_NAMES`).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restore_r1.images import write_image

#: Cases shown by the demo (one of each setting at least, a 5-degradation one included).
DEMO_CASES: tuple[int, ...] = (1, 4, 5, 8, 11, 13, 15)
DEMO_CROP = 256
DEMO_SEED = 2026


@dataclass
class DemoRow:
    id: str
    case_name: str
    tools: list[str]
    scores: list[float]
    psnr_before: float
    psnr_after: float
    ssim_before: float
    ssim_after: float
    seconds: float


def run_demo(out_dir: str | os.PathLike, policy: str | None = None, cases=DEMO_CASES, crop: int = DEMO_CROP, seed: int = DEMO_SEED) -> list[DemoRow]:
    """Restores one degraded held-out crop per case; writes the images and ``contact_sheet.png``."""
    from restore_r1.agent.inference import Agent
    from restore_r1.degradations import CASES
    from restore_r1.evaluate import EvalConfig, held_out_pairs
    from restore_r1.metrics import psnr, ssim
    from restore_r1.registry import local_policy

    out = Path(out_dir)
    agent = Agent.load(local_policy(policy))
    config = EvalConfig(cases=list(cases), per_case=1, seed=seed, crop=crop)
    pairs = held_out_pairs(config)
    # one pair per case, alternating the held-out photos
    chosen = []
    for i, case in enumerate(cases):
        of_case = [p for p in pairs if p.case == case]
        chosen.append(of_case[i % len(of_case)])
    rows, sheet = [], []
    for pair in chosen:
        res = agent.restore(pair.lq)
        write_image(out / f"{pair.id}_input.png", pair.lq)
        write_image(out / f"{pair.id}_restored.png", res.image)
        write_image(out / f"{pair.id}_clean.png", pair.gt)
        rows.append(
            DemoRow(
                id=pair.id,
                case_name=CASES[pair.case].name,
                tools=res.tools,
                scores=res.scores,
                psnr_before=psnr(pair.lq, pair.gt),
                psnr_after=psnr(res.image, pair.gt),
                ssim_before=ssim(pair.lq, pair.gt),
                ssim_after=ssim(res.image, pair.gt),
                seconds=res.seconds,
            )
        )
        sheet.append((pair, res, rows[-1]))
    _contact_sheet(sheet, out / "contact_sheet.png")
    return rows


def _contact_sheet(items, path: Path) -> None:
    from restore_r1.evaluate import pyplot, write_figure

    plt = pyplot()

    fig, axes = plt.subplots(len(items), 3, figsize=(7.5, 3.0 * len(items)), dpi=110, squeeze=False)
    for r, (pair, res, row) in enumerate(items):
        chain = textwrap.fill(" → ".join(res.tools) or "no tool", width=42)
        panels = [
            (pair.lq, textwrap.fill(f"input: {row.case_name}", width=42) + f"\nPSNR {row.psnr_before:.2f} dB", ""),
            (res.image, f"restored\nPSNR {row.psnr_after:.2f} dB", chain),
            (pair.gt, "clean", ""),
        ]
        for c, (img, title, below) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(below, fontsize=6)
    write_figure(fig, path)


def format_rows(rows: list[DemoRow]) -> str:
    """A plain-text report of the demo results: a block per image, then the means."""
    lines = []
    for r in rows:
        lines += [
            f"{r.id}  ({r.case_name})",
            f"  tools : {' -> '.join(r.tools) or '(none: the policy stopped at once)'}",
            f"  judge : {' -> '.join(f'{s:.2f}' for s in r.scores)}",
            f"  PSNR  : {r.psnr_before:.2f} -> {r.psnr_after:.2f} dB ({r.psnr_after - r.psnr_before:+.2f})   "
            f"SSIM: {r.ssim_before:.3f} -> {r.ssim_after:.3f} ({r.ssim_after - r.ssim_before:+.3f})   {r.seconds:.2f} s",
        ]
    gain_p = np.mean([r.psnr_after - r.psnr_before for r in rows])
    gain_s = np.mean([r.ssim_after - r.ssim_before for r in rows])
    calls = np.mean([len(r.tools) for r in rows])
    secs = np.mean([r.seconds for r in rows])
    lines.append(f"mean over {len(rows)} images: PSNR {gain_p:+.2f} dB, SSIM {gain_s:+.3f}, {calls:.2f} tool calls, {secs:.2f} s per image")
    return "\n".join(lines)
