"""What one GRPO update of the VLM planner costs here, measured (docs/vlm.md, "Cost of an update").

Two measurements, both on this machine's CPU:

1. **TRL updates of tiny random Qwen2-VL models** (:mod:`restore_r1.agent.vlm_testing`; no
   pretrained VLM can be had here) at three sizes: wall seconds per update of
   :func:`restore_r1.agent.vlm_trainer.train_vlm` (generation, reward, reference and policy
   passes, optimiser step), the median of the updates after the first. It is the plumbing's cost
   floor; such models are far too small for their time to scale to a real VLM's.
2. **The reward alone on realistic inputs**: the judge and the shipped policy's 15 tools on
   256×256 degraded photos, for one update's worth of plans (4 images × a group of 8 random plans
   of 1–3 tools, fresh caches). This part does not depend on the model, so it carries over to a
   GPU run as it is (the tools and the judge run on the CPU).

    .venv/bin/python bench/vlm_grpo_step.py --out bench/results

Writes ``vlm_grpo_step.json`` and ``vlm_grpo_step.md``. One torch thread (the machine has 2
shared cores; two threads per tiny matmul measured ~10x slower under load).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The shipped policy's tools (Makefile DEFAULT_TOOLS).
DEFAULT_TOOLS = (
    "clahe,gamma_correction,constant_shift,nlm_denoise,guided_denoise,jpeg_dct_deblock,jpeg_guided_deblock,dcp_dehaze,cap_dehaze,"
    "wiener_motion_deblur,rl_motion_deblur,wiener_defocus_deblur,unsharp_defocus,rain_opening,rain_median"
).split(",")
#: Tiny model sizes: (hidden size, language-model layers).
SIZES = ((32, 1), (64, 2), (128, 4))
#: The tiny runs: tools in the prompt, images, group, images per update, updates, tokens per answer.
TINY_TOOLS = ("gamma_correction", "constant_shift", "clahe")
TINY = {"images": 4, "group_size": 4, "batch_images": 2, "updates": 4, "max_new_tokens": 16, "side": 64}
#: The reward measurement: images per update, group, plan lengths, image side, repeats.
REWARD = {"batch_images": 4, "group_size": 8, "min_tools": 1, "max_tools": 3, "side": 256, "repeats": 3}


def tiny_update_seconds(hidden: int, layers: int, work: Path) -> dict:
    """Seconds per TRL update of a tiny model (median of the updates after the first)."""
    import torch

    from restore_r1.agent.inference import available_tool_map
    from restore_r1.agent.vlm_testing import write_tiny_vlm
    from restore_r1.agent.vlm_trainer import VLMTrainConfig, train_vlm
    from restore_r1.judges import create_judge

    model_dir = write_tiny_vlm(work / f"tiny_{hidden}_{layers}", TINY_TOOLS, hidden_size=hidden, layers=layers)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 200, (TINY["side"], TINY["side"], 3), dtype=np.uint8) for _ in range(TINY["images"])]
    config = VLMTrainConfig(
        group_size=TINY["group_size"],
        batch_images=TINY["batch_images"],
        updates=TINY["updates"],
        lr=1e-4,
        kl_beta=0.04,
        max_new_tokens=TINY["max_new_tokens"],
        max_steps=3,
        gradient_checkpointing=False,
    )
    result = train_vlm(
        images, work / f"run_{hidden}_{layers}", model_dir, create_judge("default"), available_tool_map(list(TINY_TOOLS)), config, progress=False
    )
    seconds = [r["seconds"] for r in result.records]
    params = sum(p.numel() for p in result.planner.model.parameters())
    del result
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {
        "hidden_size": hidden,
        "layers": layers,
        "parameters": params,
        "seconds_per_update": statistics.median(seconds[1:]),
        "first_update_seconds": seconds[0],
        "updates": len(seconds),
    }


def reward_seconds() -> dict:
    """Seconds of one update's rewards on 256² degraded photos with the 15 default tools."""
    from restore_r1.agent.env import EnvCaches
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.agent.plan import format_plan
    from restore_r1.agent.vlm_trainer import plan_rewards
    from restore_r1.judges import create_judge
    from restore_r1.serving.testing import degraded_photos

    spent = {"tools": 0.0, "judge": 0.0}

    def timed(fn, key):
        def call(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[key] += time.perf_counter() - start

        return call

    tools = {name: timed(tool, "tools") for name, tool in available_tool_map(DEFAULT_TOOLS).items()}
    judge = create_judge("default")
    judge.score_relative = timed(judge.score_relative, "judge")
    b, g = REWARD["batch_images"], REWARD["group_size"]
    photos = degraded_photos(REWARD["side"], REWARD["side"], b * REWARD["repeats"], seed=0)
    rng = np.random.default_rng(0)
    times, calls, tool_s, judge_s = [], [], [], []
    for r in range(REWARD["repeats"]):
        spent.update(tools=0.0, judge=0.0)
        images = [im for im in photos[r * b : (r + 1) * b] for _ in range(g)]
        answers = [format_plan(list(rng.choice(DEFAULT_TOOLS, size=rng.integers(REWARD["min_tools"], REWARD["max_tools"] + 1), replace=False))) for _ in images]
        caches = EnvCaches()
        start = time.perf_counter()
        batch = plan_rewards(answers, images, DEFAULT_TOOLS, tools, judge, max_steps=5, tool_cost=0.1, parse_penalty=1.0, caches=caches)
        times.append(time.perf_counter() - start)
        calls.append(caches.tools.misses)
        tool_s.append(spent["tools"])
        judge_s.append(spent["judge"])
        assert batch.parse_failure_rate == 0.0
    return {
        "answers_per_update": b * g,
        "image_side": REWARD["side"],
        "tools": len(DEFAULT_TOOLS),
        "seconds_per_update": statistics.median(times),
        "seconds_all": times,
        "tool_calls_computed_per_update": statistics.median(calls),
        "tool_seconds_per_update": statistics.median(tool_s),
        "judge_seconds_per_update": statistics.median(judge_s),
    }


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# One GRPO update of the VLM planner, measured on this machine's CPU",
        "",
        f"{results['date']}, {results['machine']}, torch threads: {results['torch_threads']}. Written by `bench/vlm_grpo_step.py`.",
        "",
        "## TRL updates of tiny random Qwen2-VL models (plumbing cost, not a real VLM)",
        "",
        f"Group {TINY['group_size']}, {TINY['batch_images']} images per update ({TINY['group_size'] * TINY['batch_images']} answers of at most "
        f"{TINY['max_new_tokens']} tokens), {TINY['side']}² images, KL β 0.04 (a reference model), no gradient checkpointing; "
        f"median of updates 2–{TINY['updates']}.",
        "",
        "| hidden | layers | parameters | s / update | first update s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["tiny"]:
        lines.append(
            f"| {row['hidden_size']} | {row['layers']} | {row['parameters']:,} | {row['seconds_per_update']:.2f} | {row['first_update_seconds']:.2f} |"
        )
    rw = results["reward"]
    lines += [
        "",
        "## The reward on realistic inputs (model-independent)",
        "",
        f"{rw['answers_per_update']} answers (4 images × a group of 8 random plans of 1–3 of the {rw['tools']} default tools) on "
        f"{rw['image_side']}² degraded photos, fresh tool and judge caches: **{rw['seconds_per_update']:.2f} s per update** "
        f"(median of {len(rw['seconds_all'])}; {rw['tool_calls_computed_per_update']:.0f} tool calls computed, the rest shared within groups): "
        f"{rw['tool_seconds_per_update']:.2f} s in the tools, {rw['judge_seconds_per_update']:.2f} s in the judge.",
        "",
        f"Load average (1 min) at the start and the end: {results['load_before']:.1f} and {results['load_after']:.1f} on 2 cores shared with other jobs, "
        "so these seconds are upper bounds of what an idle machine takes.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vlm-step-") as work:
        tiny = [tiny_update_seconds(h, n, Path(work)) for h, n in SIZES]
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {sys.version.split()[0]}, torch {torch.__version__}",
        "torch_threads": torch.get_num_threads(),
        "tiny": tiny,
        "reward": reward_seconds(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    (out / "vlm_grpo_step.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "vlm_grpo_step.md")
    print((out / "vlm_grpo_step.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
