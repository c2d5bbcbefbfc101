"""The agent loop, once: policy -> tool -> ... until STOP or the step cap, each image scored by a judge.

Training, evaluation and the in-process agent (:func:`restore_r1.agent.env.rollout_many`: batched
lockstep episodes over in-process tools and caches) and the served agent
(:func:`restore_r1.serving.backend.run_episode`: one episode over Triton BLS calls) run this
loop. What differs between them is injected:

* ``decide``, the policy step: the running episodes -> one ``(action index, action name)`` each
  (``"STOP"`` ends the episode), or None to end every episode (a lockstep partner says no
  process has a running episode left);
* ``call_tool``, the tool caller: ``(episode, tool name) -> (output image, output key)``;
* ``score``, the judge: episodes -> the score of each one's current image (against its start for
  a relative judge);
* ``failures`` and ``on_failure``, the failure handling: an exception of ``failures`` raised by
  ``decide`` or ``call_tool`` ends the episodes of that step (``on_failure`` turns it into the
  episode's ``failure`` record, or raises); such an episode answers with its best image so far.

Keys are opaque per-image tokens the loop carries for the injected callables (the image digest
of the caches in-process; None when served).

The loop imports numpy only, so the Triton agent model loads it without the policy's torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from restore_r1.agent.plan import STOP


@dataclass
class EpisodeState:
    """One episode while the loop runs it, and after.

    Attributes:
        index: position among the loop's start images.
        start: uint8 RGB H×W×3, the start image (the same object that was passed in).
        limit: cap on tool calls.
        start_key: the start image's key (see the module docstring).
        image: the current image: the last successful tool's output (or the start); after a
            failure, the best image so far.
        key: the current image's key.
        actions: the decisions taken: tool indices, then the STOP action if the policy stopped
            (a failed step adds none).
        names: their names (a tool or ``"STOP"``).
        scores: judge scores of the start and after each successful tool call.
        step_seconds: seconds of each decision step (its tool call and score included), the
            failed step too.
        failure: what ``on_failure`` made of the exception that ended the episode, else None.
        best: the highest-scoring image of ``scores`` (the earliest on ties), with
            ``best_key`` and ``best_score``.
    """

    index: int
    start: np.ndarray
    limit: int
    start_key: Any = None
    image: np.ndarray | None = None
    key: Any = None
    actions: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    scores: list = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    failure: Any = None
    best: np.ndarray | None = None
    best_key: Any = None
    best_score: Any = None

    @property
    def tools(self) -> list[str]:
        """The tools called successfully, in order."""
        return [n for n in self.names if n != STOP]

    @property
    def stopped(self) -> bool:
        """Whether the policy chose STOP."""
        return bool(self.names) and self.names[-1] == STOP

    @property
    def running(self) -> bool:
        """Whether the episode takes another decision: no STOP, no failure, under its cap."""
        return not self.stopped and self.failure is None and len(self.actions) < self.limit


#: ``decide(running episodes) -> [(action index, action name)]`` one per episode, or None.
Decide = Callable[[list[EpisodeState]], Sequence[tuple[int, str]] | None]
#: ``call_tool(episode, tool name) -> (output image, output key)``.
CallTool = Callable[[EpisodeState, str], tuple[np.ndarray, Any]]
#: ``score(episodes) -> [score of each one's current image]``.
Score = Callable[[list[EpisodeState]], Sequence]
#: ``on_failure(episode, 1-based step, tool name or None for the policy, exception) -> record``.
OnFailure = Callable[[EpisodeState, int, "str | None", BaseException], Any]


def run_episodes(
    starts: Sequence[np.ndarray],
    limits: Sequence[int],
    decide: Decide,
    call_tool: CallTool,
    score: Score,
    keys: Sequence | None = None,
    failures: tuple[type[BaseException], ...] = (),
    on_failure: OnFailure | None = None,
    on_step: Callable[[EpisodeState, str, float], None] | None = None,
    lockstep: bool = False,
) -> list[EpisodeState]:
    """Runs one episode per start image, all in step: one ``decide`` and one ``score`` call per step.

    Each step: the running episodes (no STOP, no failure, fewer tool calls than their limit; the
    decision at the limit could only be STOP, so it is not asked) go to ``decide`` together;
    then each episode that chose a tool calls it, in order; then the episodes that moved are
    scored together.

    Args:
        starts: start images, uint8 RGB H×W×3 (checked by the caller).
        limits: one cap on tool calls per start image.
        decide: the policy step (see the module docstring).
        call_tool: the tool caller.
        score: the judge; called first on every start image.
        keys: the start images' keys (None: all None).
        failures: the exceptions of ``decide`` and ``call_tool`` that end the episodes of their
            step instead of propagating (an exception of ``decide`` ends every episode it was
            deciding); empty: every exception propagates.
        on_failure: makes the episode's ``failure`` record of such an exception (the exception
            itself when None); may raise instead, e.g. when nothing succeeded before.
        on_step: called with (episode, action name, seconds) after each successful decision
            step (its tool call and score included).
        lockstep: keep calling ``decide`` while no episode here runs, with none, until it
            returns None (other processes decide their episodes in the same calls).

    Returns:
        the episodes, in the order of ``starts``.
    """
    if len(limits) != len(starts):
        raise ValueError(f"{len(limits)} limits for {len(starts)} start images")
    keys = [None] * len(starts) if keys is None else list(keys)
    episodes = [EpisodeState(i, im, int(cap), key, im, key) for i, (im, cap, key) in enumerate(zip(starts, limits, keys))]
    for ep, s in zip(episodes, score(episodes)):
        ep.scores.append(s)
        ep.best, ep.best_key, ep.best_score = ep.image, ep.key, s
    running = episodes
    while True:
        running = [ep for ep in running if ep.running]
        if not running and not lockstep:
            break
        t0 = time.perf_counter()
        try:
            decided = decide(running)
        except failures as exc:
            for ep in running:
                _fail(ep, None, exc, t0, on_failure)
            continue
        if decided is None:
            break
        moved: list[tuple[EpisodeState, str]] = []
        for ep, (action, name) in zip(running, decided):
            if name == STOP:
                ep.actions.append(int(action))
                ep.names.append(STOP)
                seconds = time.perf_counter() - t0
                ep.step_seconds.append(seconds)
                if on_step is not None:
                    on_step(ep, STOP, seconds)
                continue
            try:
                image, key = call_tool(ep, name)
            except failures as exc:
                _fail(ep, name, exc, t0, on_failure)
                continue
            ep.image, ep.key = image, key
            ep.actions.append(int(action))
            ep.names.append(name)
            moved.append((ep, name))
        if moved:
            for (ep, _), s in zip(moved, score([ep for ep, _ in moved])):
                ep.scores.append(s)
                if s > ep.best_score:
                    ep.best, ep.best_key, ep.best_score = ep.image, ep.key, s
            for ep, name in moved:
                seconds = time.perf_counter() - t0
                ep.step_seconds.append(seconds)
                if on_step is not None:
                    on_step(ep, name, seconds)
    return episodes


def _fail(ep: EpisodeState, name: str | None, exc: BaseException, t0: float, on_failure: OnFailure | None) -> None:
    """Ends ``ep`` at its next step: the failure record, the step's seconds, the best image so far."""
    step = len(ep.actions) + 1  # a running episode's actions are its tool calls
    record = None if on_failure is None else on_failure(ep, step, name, exc)
    ep.failure = exc if record is None else record
    ep.step_seconds.append(time.perf_counter() - t0)
    ep.image, ep.key = ep.best, ep.best_key
