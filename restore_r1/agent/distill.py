"""A cold start for GRPO from the judge's own greedy search (label-free).

GRPO on its own learns from sampled episodes whose only signal is the judge's score of where
they end. The exploration baseline (:func:`restore_r1.agent.baselines.run_exploration`) asks the
same judge a denser question at every state: the score of *every* tool's output. This module
records those answers on the training images and fits the policy to them before GRPO starts,
in the spirit of the supervised cold start that precedes RL in R1-style training. It reads only
the degraded images and the judge: no clean image and no degradation label, as GRPO.

At a visited state s (current image I, history h), the value of each allowed action is

    v(s, tool k) = Q(k(I)) - Q(I) - c          v(s, STOP) = 0

with Q the judge's score (a relative judge: against the episode's input) and c the tool cost,
i.e. exactly the one-step reward GRPO uses (:func:`restore_r1.agent.grpo.step_rewards`). The
search then moves to the best action (STOP when no tool has a positive value), so the states
are those greedy exploration visits. The policy is fitted by cross-entropy to the soft target

    p*(a | s) = softmax_a(v(s, a) / τ)        over the allowed actions,

which keeps the judge's near-ties (τ → 0 is plain imitation of the argmax).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from restore_r1.agent.policy import Policy, PolicyConfig
from restore_r1.images import atomic_write_bytes
from restore_r1.judges.relative import score_images

ToolFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Demonstration:
    """One visited state and the judge's value of every action there.

    Attributes:
        features: float32 [D], the encoder's features of the current image.
        history: tool indices applied so far (the step is ``len(history)``).
        values: float32 [K + 1], v(s, a) in judge units (dB for the shipped judge); STOP (last)
            is 0; NaN where the action is masked.
    """

    features: np.ndarray
    history: list[int]
    values: np.ndarray


@dataclass
class DistillConfig:
    """Hyper-parameters of the cold start (one line each)."""

    temperature: float = 0.1  #: τ of the soft target, in judge units.
    epochs: int = 400  #: full-batch Adam steps.
    lr: float = 3e-3  #: Adam learning rate.
    weight_decay: float = 1e-4  #: Adam's L2 penalty.
    seed: int = 0  #: seeds the initial weights.

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"DistillConfig: temperature ({self.temperature}) and lr ({self.lr}) must be > 0, weight_decay ({self.weight_decay}) >= 0")
        if self.epochs < 1:
            raise ValueError(f"DistillConfig.epochs must be >= 1, got {self.epochs}")

    def to_dict(self) -> dict:
        return asdict(self)


def allowed_tools(history: Sequence[int], num_tools: int, max_steps: int, forbid_repeat: bool, forbid_cycle: bool) -> list[int]:
    """Tool indices the policy may call after ``history`` (the rule of :meth:`Policy.action_mask`)."""
    if len(history) >= max_steps:
        return []
    banned = set()
    if forbid_repeat and history:
        banned.add(history[-1])
    if forbid_cycle and len(history) >= 2:
        banned.add(history[-2])
    return [k for k in range(num_tools) if k not in banned]


def demonstrate(
    image: np.ndarray,
    tools: Mapping[str, ToolFn],
    judge,
    encoder,
    *,
    tool_cost: float,
    max_steps: int,
    forbid_repeat: bool = True,
    forbid_cycle: bool = True,
) -> list[Demonstration]:
    """The judge-greedy search from one degraded image, recorded state by state.

    Args:
        image: uint8 RGB H×W×3, the episode's input.
        tools: name -> tool; the dict order is the action order.
        judge: the reward model (relative or absolute).
        encoder: the policy's frozen encoder (``.encode(list of images) -> [B, D]``).
        tool_cost: c, subtracted from each tool's gain.
        max_steps: the policy's step limit (the decision after it is STOP).
        forbid_repeat, forbid_cycle: the policy's masks.

    Returns:
        one :class:`Demonstration` per visited state, the last one a STOP.
    """
    names = list(tools)
    k = len(names)
    current, history = image, []
    current_score = score_images(judge, [image], [image])[0]
    demos: list[Demonstration] = []
    while True:
        features = np.asarray(encoder.encode([current]), dtype=np.float32)[0]
        values = np.full(k + 1, np.nan, dtype=np.float32)
        values[k] = 0.0
        allowed = allowed_tools(history, k, max_steps, forbid_repeat, forbid_cycle)
        outputs = [tools[names[i]](current) for i in allowed]
        if outputs:
            scores = score_images(judge, outputs, [image] * len(outputs))
            for i, s in zip(allowed, scores):
                values[i] = s - current_score - tool_cost
        demos.append(Demonstration(features=features, history=list(history), values=values))
        best = int(np.nanargmax(values))
        if best == k or values[best] <= 0.0:
            return demos
        j = allowed.index(best)
        current, current_score = outputs[j], current_score + float(values[best]) + tool_cost
        history.append(best)


_WORKER: dict = {}


def _init_worker(tools, judge, encoder, kw) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER.update(tools=tools, judge=judge, encoder=encoder, kw=kw)


def _demonstrate_one(image: np.ndarray) -> list[Demonstration]:
    return demonstrate(image, _WORKER["tools"], _WORKER["judge"], _WORKER["encoder"], **_WORKER["kw"])


def demonstrate_many(
    images: Sequence[np.ndarray],
    tools: Mapping[str, ToolFn],
    judge,
    encoder,
    *,
    workers: int = 1,
    progress: bool = False,
    **kw,
) -> list[list[Demonstration]]:
    """:func:`demonstrate` on each image; one list per image, in order.

    With ``workers`` > 1 the images are shared out to that many spawned processes (one thread
    each), which receive pickled copies of ``tools``, ``judge`` and ``encoder``; the search is
    deterministic, so the result does not depend on ``workers``.
    """
    from tqdm.auto import tqdm

    bar = {"total": len(images), "disable": not progress, "desc": "greedy demos", "unit": "image"}
    if workers <= 1 or len(images) <= 1:
        return [demonstrate(im, tools, judge, encoder, **kw) for im in tqdm(images, **bar)]
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(images)), initializer=_init_worker, initargs=(tools, judge, encoder, kw)) as pool:
        return list(tqdm(pool.imap(_demonstrate_one, images), **bar))


def soft_targets(values: torch.Tensor, temperature: float) -> torch.Tensor:
    """p* = softmax(v / τ) over the finite entries of each row; float32 [B, K + 1] → [B, K + 1]."""
    logits = torch.where(torch.isfinite(values), values / temperature, torch.full_like(values, -torch.inf))
    return torch.softmax(logits, dim=-1)


def distill_loss(policy: Policy, features: torch.Tensor, histories: Sequence[Sequence[int]], targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy -Σ_a p*(a|s) log π(a|s), averaged over the states."""
    logp = torch.log_softmax(policy(features, histories), dim=-1)
    return -(targets * logp).sum(dim=-1).mean()


def fit_policy(demos: Sequence[Demonstration], policy_config: PolicyConfig, config: DistillConfig) -> tuple[Policy, dict]:
    """A fresh :class:`Policy` of ``policy_config`` fitted to ``demos``.

    ``policy_config``'s feature mean/std are replaced by those of the demonstrated states.

    Returns:
        ``(policy, stats)``: stats has the final loss, the share of states whose argmax equals
        the judge's best action, and the share of STOP targets.
    """
    if not demos:
        raise ValueError("fit_policy: no demonstrations")
    feats = np.stack([d.features for d in demos]).astype(np.float64)
    std_floor = max(0.01 * float(feats.std(axis=0).mean()), 1e-6)
    policy_config = PolicyConfig.from_dict(
        {**policy_config.to_dict(), "feature_mean": feats.mean(axis=0).tolist(), "feature_std": np.maximum(feats.std(axis=0), std_floor).tolist()}
    )
    policy = Policy(policy_config, generator=torch.Generator().manual_seed(config.seed))
    features = torch.as_tensor(feats, dtype=torch.float32)
    histories = [d.history for d in demos]
    values = torch.as_tensor(np.stack([d.values for d in demos]), dtype=torch.float32)
    targets = soft_targets(values, config.temperature)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    policy.train()
    for _epoch in range(config.epochs):
        optimizer.zero_grad()
        loss = distill_loss(policy, features, histories, targets)
        loss.backward()
        optimizer.step()
    policy.eval()
    with torch.no_grad():
        best = torch.where(torch.isfinite(values), values, torch.full_like(values, -torch.inf)).argmax(dim=-1)
        chosen = policy(features, histories).argmax(dim=-1)
    stats = {
        "loss": float(distill_loss(policy, features, histories, targets).detach()),
        "agreement": float((chosen == best).float().mean()),
        "stop_share": float((best == policy_config.num_tools).float().mean()),
        "states": len(demos),
    }
    return policy, stats


def save_demonstrations(path: str | os.PathLike, per_image: Sequence[Sequence[Demonstration]], key: Mapping) -> None:
    """Writes ``per_image`` (as :func:`demonstrate_many` returns it) and its ``key`` (what they were
    made from) to one ``.npz`` file, atomically."""
    flat = [(i, d) for i, demos in enumerate(per_image) for d in demos]
    if not flat:
        raise ValueError("save_demonstrations: nothing to save")
    width = max(1, max(len(d.history) for _, d in flat))
    histories = np.full((len(flat), width), -1, dtype=np.int64)
    for row, (_, d) in enumerate(flat):
        histories[row, : len(d.history)] = d.history
    buf = io.BytesIO()
    np.savez(
        buf,
        key=np.frombuffer(json.dumps(dict(key), sort_keys=True).encode(), dtype=np.uint8),
        image=np.array([i for i, _ in flat], dtype=np.int64),
        images=np.array(len(per_image), dtype=np.int64),
        features=np.stack([d.features for _, d in flat]).astype(np.float32),
        values=np.stack([d.values for _, d in flat]).astype(np.float32),
        histories=histories,
    )
    atomic_write_bytes(Path(path), buf.getvalue())


def load_demonstrations(path: str | os.PathLike, key: Mapping) -> list[list[Demonstration]] | None:
    """What :func:`save_demonstrations` wrote, or None when the file is missing or was made from
    something else than ``key``."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if json.loads(z["key"].tobytes().decode()) != json.loads(json.dumps(dict(key), sort_keys=True)):
            return None
        per_image: list[list[Demonstration]] = [[] for _ in range(int(z["images"]))]
        for i, f, v, h in zip(z["image"], z["features"], z["values"], z["histories"]):
            per_image[int(i)].append(Demonstration(features=f.copy(), history=[int(a) for a in h if a >= 0], values=v.copy()))
    return per_image
