"""Small fixtures for serving tests and the serving benchmark (no training needed).

:func:`make_random_policy` writes a policy checkpoint over the ``stats`` encoder whose output layer
is drawn at full scale, so that its greedy plans call several different tools (a freshly
initialised policy is near-uniform and may stop at once). It is for plumbing tests only: its plans
are arbitrary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: Tools cheap enough for tests (under 60 ms per 512² image, bench/results/tools.md).
FAST_TOOLS = ("gamma_correction", "constant_shift", "clahe", "guided_denoise", "cap_dehaze", "rain_opening", "unsharp_defocus", "jpeg_guided_deblock")
#: Std of the output layer's weights of the random policy.
HEAD_STD = 0.5
#: Bias of the STOP logit: low, so that plans run to ``max_steps`` unless a tool logit is lower.
STOP_BIAS = -3.0


def make_random_policy(directory: str | os.PathLike, tools: Sequence[str] = FAST_TOOLS, seed: int = 0, max_steps: int = 3) -> Path:
    """Writes a random ``stats``-encoder policy over ``tools`` to ``directory``; returns it."""
    import torch

    from restore_r1.agent.policy import Policy, PolicyConfig, save_policy
    from restore_r1.encoders import STATS_DIM, create_encoder

    encoder = create_encoder("stats")
    config = PolicyConfig(
        "stats", encoder.config(), STATS_DIM, list(tools), hidden_sizes=(32,), max_steps=max_steps, extra={"note": "random policy for serving tests"}
    )
    gen = torch.Generator().manual_seed(seed)
    policy = Policy(config, generator=gen)
    head = [mod for mod in policy.mlp if isinstance(mod, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.normal_(0.0, HEAD_STD, generator=gen)
        head.bias.normal_(0.0, HEAD_STD, generator=gen)
        head.bias[config.stop_action] = STOP_BIAS
    return save_policy(policy, directory)
