"""Episodes of tool calls: apply a tool per step until STOP, scored by a judge.

The expensive calls are the tools, the encoder and the judge. Inside a GRPO group the G
trajectories start from the same image and share prefixes (many pick the same first tool), so
every result is cached by the digest of its input image (:func:`restore_r1.images.image_digest`):
tool outputs under (digest, tool name), features and judge scores under the digest. Trajectories
are run in lockstep so that the encoder and the judge see one batch per step across all of them:
:func:`rollout_many` is :func:`restore_r1.agent.loop.run_episodes` (the one agent loop, which
the served agent runs too) with the policy, these caches and in-process tools injected.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from restore_r1.agent.grpo import step_rewards
from restore_r1.agent.loop import EpisodeState, run_episodes
from restore_r1.agent.policy import STOP, Policy
from restore_r1.images import check_rgb, image_digest
from restore_r1.judges.relative import is_relative, score_images

#: Default number of entries a cache keeps before evicting the least recently used.
DEFAULT_CACHE_ENTRIES = 4096


class _LRU:
    """An ordered dict with hit/miss counters and least-recently-used eviction."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"cache max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def lookup(self, key):
        if key in self._data:
            self._data.move_to_end(key)
            self.hits += 1
            return True, self._data[key]
        self.misses += 1
        return False, None

    def store(self, key, value) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def reset_counters(self) -> None:
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


class ToolCache(_LRU):
    """Tool outputs keyed by (input image digest, tool name); stores the output and its digest.

    Args:
        max_entries: least recently used entries beyond this are dropped.
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        super().__init__(max_entries)

    def apply(self, tool_name: str, tool: Callable[[np.ndarray], np.ndarray], image: np.ndarray, digest: str | None = None) -> tuple[np.ndarray, str]:
        """``tool(image)`` (uint8 RGB H×W×3), computed once per (digest, tool name).

        Returns:
            ``(output, output_digest)``; the output array is shared, never modify it.
        """
        digest = image_digest(image) if digest is None else digest
        found, value = self.lookup((digest, tool_name))
        if found:
            return value
        out = check_rgb(tool(image), name=f"output of tool {tool_name!r}")
        out.setflags(write=False)
        value = (out, image_digest(out))
        self.store((digest, tool_name), value)
        return value


class DigestCache(_LRU):
    """Per-image values (features, judge scores) keyed by image digest, computed in batches.

    Args:
        compute: maps a list of images to a list (or array) of values, one per image.
        max_entries: least recently used entries beyond this are dropped.
    """

    def __init__(self, compute: Callable[[list[np.ndarray]], Sequence], max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        super().__init__(max_entries)
        self.compute = compute

    def get_many(self, images: Sequence[np.ndarray], digests: Sequence[str] | None = None) -> list:
        """The value of each image; the missing ones (deduplicated) go to ``compute`` in one call."""
        digests = [image_digest(im) for im in images] if digests is None else list(digests)
        values: list = [None] * len(images)
        todo: dict[str, list[int]] = {}
        for i, d in enumerate(digests):
            if d in todo:  # a duplicate of an image already queued in this call
                self.hits += 1
                todo[d].append(i)
                continue
            found, value = self.lookup(d)
            if found:
                values[i] = value
            else:
                todo[d] = [i]
        if todo:
            batch = [images[idx[0]] for idx in todo.values()]
            computed = list(self.compute(batch))
            if len(computed) != len(batch):
                raise ValueError(f"cache compute returned {len(computed)} values for {len(batch)} images")
            for (d, idx), value in zip(todo.items(), computed):
                self.store(d, value)
                for i in idx:
                    values[i] = value
        return values


def feature_cache(encoder, max_entries: int = DEFAULT_CACHE_ENTRIES) -> DigestCache:
    """A :class:`DigestCache` of ``encoder.encode`` rows (float32 [D] each)."""

    def compute(images: list[np.ndarray]) -> list[np.ndarray]:
        feats = np.asarray(encoder.encode(images), dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != len(images):
            raise ValueError(f"encoder {encoder.name!r} returned shape {feats.shape} for {len(images)} images")
        return list(feats)

    return DigestCache(compute, max_entries)


def score_cache(judge, max_entries: int = DEFAULT_CACHE_ENTRIES) -> DigestCache:
    """A :class:`DigestCache` of judge scores (floats, higher is better) of ``(start image, image)``
    pairs (:func:`restore_r1.judges.relative.score_images`: only a relative judge looks at the
    start). Key them by :func:`score_key`."""

    def compute(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        return score_images(judge, [p[1] for p in pairs], [p[0] for p in pairs])

    return DigestCache(compute, max_entries)


def score_key(judge, start_digest: str, digest: str) -> str:
    """The score cache's key: the image's digest, prefixed by its start's for a relative judge."""
    return f"{start_digest}>{digest}" if is_relative(judge) else digest


@dataclass
class EnvCaches:
    """The three caches an episode uses; share one across a training run."""

    tools: ToolCache = field(default_factory=ToolCache)
    features: DigestCache | None = None
    scores: DigestCache | None = None

    def bind(self, encoder, judge) -> EnvCaches:
        """Creates the feature/score caches on first use."""
        if self.features is None:
            self.features = feature_cache(encoder)
        if self.scores is None:
            self.scores = score_cache(judge)
        return self


@dataclass
class Trajectory:
    """One episode.

    Attributes:
        actions: the decisions, tool indices and finally STOP (= number of tools) unless the
            episode hit ``max_steps``; one per decision.
        action_names: the same as names ("STOP" for stop).
        log_probs: log π(a_t | s_t) of each decision under the acting policy.
        features: float32 [decisions, D] encoder features of the image each decision saw.
        scores: judge scores Q(I_0), Q(I_1), ... (decisions + 1 values; STOP repeats the last);
            with a relative judge Q(I_t | I_0), so Q(I_0) = 0.
        rewards: r_t = Q(I_{t+1}) - Q(I_t) - c·[tool call], one per decision.
        final_image: uint8 RGB H×W×3 after the last tool (read-only when a tool ran).
        steps: number of tool calls.
    """

    actions: list[int]
    action_names: list[str]
    log_probs: list[float]
    features: np.ndarray
    scores: list[float]
    rewards: list[float]
    final_image: np.ndarray
    steps: int

    @property
    def ret(self) -> float:
        """R = Σ_t r_t."""
        return float(sum(self.rewards))

    @property
    def histories(self) -> list[list[int]]:
        """The tool history seen at each decision (actions before it)."""
        return [self.actions[:t] for t in range(len(self.actions))]

    @property
    def tools_called(self) -> list[str]:
        """Names of the tools called, in order."""
        return [n for n in self.action_names if n != STOP]


def rollout_many(
    policy: Policy,
    encoder,
    images: Sequence[np.ndarray],
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    judge,
    greedy: bool,
    generator: torch.Generator | None = None,
    tool_cost: float = 0.0,
    caches: EnvCaches | None = None,
    max_steps: int | None = None,
    timings: dict[str, float] | None = None,
    on_step: Callable[[str], None] | None = None,
    lockstep=None,
) -> list[Trajectory]:
    """Runs one episode per start image, in lockstep (one encoder and one judge batch per step).

    Pass the same image G times to draw a GRPO group. Each episode stops at STOP or after
    ``policy.config.max_steps`` tool calls.

    Args:
        policy: acts on the raw encoder features.
        encoder: ``.encode(list of images) -> float32 [N, D]``.
        images: start images, uint8 RGB H×W×3.
        tools: name -> callable for every name in ``policy.config.tool_names``.
        judge: ``.score(list of images) -> list of floats``, higher is better; or a relative
            judge (``.score_relative(starts, images)``), which scores each image against its
            episode's start image.
        greedy: argmax actions (inference) or sampled ones (training).
        generator: torch generator for sampling.
        tool_cost: c in the reward.
        caches: shared caches; a fresh set when None.
        max_steps: stop after this many tool calls (at most the policy's ``max_steps``); with
            greedy actions this equals the first ``max_steps`` calls of an uncapped episode.
        timings: when given, seconds are added to it under ``"encoder"``, ``"policy"``,
            ``"judge"`` and ``"tool:NAME"`` (where an episode's time goes).
        on_step: called with the action's name (a tool or ``"STOP"``) after each decision step
            of the first episode (a progress bar).
        lockstep: decides every step together with other processes
            (:class:`restore_r1.agent.distributed.GlobalBatchActor`): its ``act(policy, features,
            histories, greedy, generator)`` returns this process's rows of the decision, or None
            once no process has a running episode; it is called at each step, also when this
            process has none left. None: the policy decides on these episodes alone.

    Returns:
        one :class:`Trajectory` per start image, in order.
    """
    cfg = policy.config
    missing = [name for name in cfg.tool_names if name not in tools]
    if missing:
        raise ValueError(f"tools {missing} of the policy are not in the tool set {sorted(tools)}")
    limit = cfg.max_steps if max_steps is None else int(max_steps)
    if not 0 <= limit <= cfg.max_steps:
        raise ValueError(f"max_steps {max_steps} must be between 0 and the policy's {cfg.max_steps}")
    caches = (caches or EnvCaches()).bind(encoder, judge)
    starts = [check_rgb(im, name=f"start image {i}") for i, im in enumerate(images)]
    log_probs: list[list[float]] = [[] for _ in starts]
    feats: list[list[np.ndarray]] = [[] for _ in starts]
    clock = _Clock(timings)

    def decide(running: list[EpisodeState]) -> list[tuple[int, str]] | None:
        with clock("encoder"):
            batch_feats = caches.features.get_many([ep.image for ep in running], [ep.key for ep in running]) if running else []
        histories = [ep.actions for ep in running]
        with torch.no_grad(), clock("policy"):
            if lockstep is None:
                chosen, logp = policy.act(np.stack(batch_feats), histories, greedy=greedy, generator=generator)
            else:
                stacked = np.stack(batch_feats) if batch_feats else np.zeros((0, cfg.feature_dim), np.float32)
                decided = lockstep.act(policy, stacked, histories, greedy, generator)
                if decided is None:
                    return None
                chosen, logp = decided
        out = []
        for j, ep in enumerate(running):
            a = int(chosen[j])
            log_probs[ep.index].append(float(logp[j]))
            feats[ep.index].append(batch_feats[j])
            out.append((a, cfg.action_name(a)))
        return out

    def call_tool(ep: EpisodeState, name: str) -> tuple[np.ndarray, str]:
        with clock(f"tool:{name}"):
            return caches.tools.apply(name, tools[name], ep.image, ep.key)

    def score(episodes: list[EpisodeState]) -> list[float]:
        with clock("judge"):
            return caches.scores.get_many([(ep.start, ep.image) for ep in episodes], [score_key(judge, ep.start_key, ep.key) for ep in episodes])

    def step(ep: EpisodeState, name: str, seconds: float) -> None:
        if ep.index == 0:
            on_step(name)

    episodes = run_episodes(
        starts,
        [limit] * len(starts),
        decide,
        call_tool,
        score,
        keys=[image_digest(im) for im in starts],
        on_step=None if on_step is None else step,
        lockstep=lockstep is not None,
    )
    out = []
    for ep in episodes:
        calls = [a != cfg.stop_action for a in ep.actions]
        scores = (ep.scores + ep.scores[-1:]) if ep.stopped else ep.scores  # STOP repeats the last score
        i = ep.index
        out.append(
            Trajectory(
                actions=ep.actions,
                action_names=[cfg.action_name(a) for a in ep.actions],
                log_probs=log_probs[i],
                features=np.stack(feats[i]).astype(np.float32) if feats[i] else np.zeros((0, cfg.feature_dim), np.float32),
                scores=scores,
                rewards=step_rewards(scores, calls, tool_cost),
                final_image=ep.image,
                steps=sum(calls),
            )
        )
    return out


class _Clock:
    """``with clock(key):`` adds the block's seconds to ``timings[key]`` (nothing when None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.key, self.t0 = timings, "", 0.0

    def __call__(self, key: str) -> _Clock:
        self.key = key
        return self

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        if self.timings is not None:
            self.timings[self.key] = self.timings.get(self.key, 0.0) + time.perf_counter() - self.t0


def rollout(
    policy: Policy,
    encoder,
    image: np.ndarray,
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    judge,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    tool_cost: float = 0.0,
    caches: EnvCaches | None = None,
    max_steps: int | None = None,
    timings: dict[str, float] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> Trajectory:
    """One episode from ``image`` (uint8 RGB H×W×3); see :func:`rollout_many`."""
    return rollout_many(policy, encoder, [image], tools, judge, greedy, generator, tool_cost, caches, max_steps, timings, on_step)[0]


@dataclass
class PlanOutcome:
    """One plan applied to one image (the VLM planner's episode: the plan is fixed up front).

    Attributes:
        tools: the tool names applied, in order.
        scores: judge scores Q(I_0), Q(I_1), ..., Q(I_T) (T + 1 values; relative judge: Q(I_0) = 0).
        rewards: r_t = Q(I_{t+1}) - Q(I_t) - c, one per tool call (the MLP's step rewards).
        final_image: uint8 RGB H×W×3 after the last tool (read-only when a tool ran).
    """

    tools: list[str]
    scores: list[float]
    rewards: list[float]
    final_image: np.ndarray

    @property
    def ret(self) -> float:
        """R = Σ_t r_t = Q(I_T) - Q(I_0) - c·T."""
        return float(sum(self.rewards))

    @property
    def steps(self) -> int:
        """T, the number of tool calls."""
        return len(self.tools)


def apply_plans(
    images: Sequence[np.ndarray],
    plans: Sequence[Sequence[str]],
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    judge,
    tool_cost: float = 0.0,
    caches: EnvCaches | None = None,
) -> list[PlanOutcome]:
    """Applies plan i to image i, in lockstep (one judge batch per step), scored as :func:`rollout_many`.

    The same caches serve both planners: a tool is computed once per (input digest, tool name) and
    an image is scored once, so the G plans of a GRPO group that share a prefix share its work.

    Args:
        images: start images, uint8 RGB H×W×3.
        plans: one sequence of tool names per image (may be empty).
        tools: name -> callable ``uint8 RGB -> uint8 RGB`` (in-process or a server's).
        judge: as in :func:`rollout_many`.
        tool_cost: c in the reward.
        caches: shared caches; a fresh set when None.

    Returns:
        one :class:`PlanOutcome` per image, in order.
    """
    if len(images) != len(plans):
        raise ValueError(f"{len(images)} images for {len(plans)} plans")
    missing = sorted({name for plan in plans for name in plan if name not in tools})
    if missing:
        raise ValueError(f"plans call tools {missing} that are not in the tool set {sorted(tools)}")
    caches = caches or EnvCaches()
    if caches.scores is None:  # no encoder here: only the tool and score caches are used
        caches.scores = score_cache(judge)
    starts = [check_rgb(im, name=f"start image {i}") for i, im in enumerate(images)]
    start_digests = [image_digest(im) for im in starts]
    current, digests = list(starts), list(start_digests)
    scores = [[s] for s in caches.scores.get_many(list(zip(starts, current)), [score_key(judge, d, d) for d in start_digests])]
    for step in range(max((len(p) for p in plans), default=0)):
        moved = [i for i, plan in enumerate(plans) if len(plan) > step]
        for i in moved:
            name = plans[i][step]
            current[i], digests[i] = caches.tools.apply(name, tools[name], current[i], digests[i])
        new_scores = caches.scores.get_many([(starts[i], current[i]) for i in moved], [score_key(judge, start_digests[i], digests[i]) for i in moved])
        for i, s in zip(moved, new_scores):
            scores[i].append(s)
    return [
        PlanOutcome(tools=list(plan), scores=scores[i], rewards=step_rewards(scores[i], [True] * len(plan), tool_cost), final_image=current[i])
        for i, plan in enumerate(plans)
    ]
