"""The learning agent: policy network, GRPO maths, episode environment and trainer (docs/method.md §1).

* :mod:`restore_r1.agent.policy`  — :class:`PolicyConfig`, :class:`Policy`, ``save_policy`` /
  ``load_policy`` (``policy.safetensors`` + ``policy.json``).
* :mod:`restore_r1.agent.grpo`    — :class:`GRPOConfig` and the loss, one small function per term.
* :mod:`restore_r1.agent.loop`    — ``run_episodes``, the one agent loop (policy step, tool
  caller, judge and failure handling injected), which ``rollout`` and the served agent run.
* :mod:`restore_r1.agent.env`     — cached tool/feature/judge calls and ``rollout``.
* :mod:`restore_r1.agent.trainer` — ``train``, resumable, seeded, logged.
* :mod:`restore_r1.agent.plan`    — tool plans as text: the VLM prompt and the strict parser.
* :mod:`restore_r1.agent.vlm`     — the second planner kind, a vision-language model (docs/vlm.md).
* :mod:`restore_r1.agent.vlm_trainer` — its GRPO with TRL's ``GRPOTrainer``.

Names are imported lazily so that ``restore_r1.agent.baselines`` does not pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PolicyConfig": "policy",
    "Policy": "policy",
    "save_policy": "policy",
    "load_policy": "policy",
    "STOP": "policy",
    "GRPOConfig": "grpo",
    "grpo_loss": "grpo",
    "group_advantages": "grpo",
    "ToolCache": "env",
    "Trajectory": "env",
    "rollout": "env",
    "rollout_many": "env",
    "run_episodes": "loop",
    "EpisodeState": "loop",
    "train": "trainer",
    "TrainResult": "trainer",
    "load_lq_images": "trainer",
    "PlanParseError": "plan",
    "parse_plan": "plan",
    "VLMPlanner": "vlm",
    "VLMPlannerConfig": "vlm",
    "save_vlm_planner": "vlm",
    "load_vlm_planner": "vlm",
    "VLMTrainConfig": "vlm_trainer",
    "train_vlm": "vlm_trainer",
    "load_agent": "inference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'restore_r1.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(f"restore_r1.agent.{module}"), name)
