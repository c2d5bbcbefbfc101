"""The one agent loop (restore_r1.agent.loop.run_episodes) with scripted callers.

Training and evaluation (rollout_many, tests/test_trainer.py) and serving (run_episode,
tests/test_serving_backend.py) test it through their callers; these check its own rules.
"""

from __future__ import annotations

import numpy as np
import pytest

from restore_r1.agent.loop import STOP, run_episodes


class Boom(RuntimeError):
    pass


def images(n: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), 10 * (i + 1), np.uint8) for i in range(n)]


def scripted(plans: list[list[str]], calls: list[list[int]]):
    """decide from per-episode plans of names; records which episodes each call decided."""

    def decide(running):
        calls.append([ep.index for ep in running])
        return [(len(ep.actions) if plans[ep.index][len(ep.actions)] != STOP else 9, plans[ep.index][len(ep.actions)]) for ep in running]

    return decide


def add(value: int):
    def tool(ep, name):
        if name == "boom":
            raise Boom(f"{name} failed")
        return np.clip(ep.image.astype(int) + value * (1 if name == "up" else -1), 0, 255).astype(np.uint8), name

    return tool


def mean_score(episodes):
    return [float(ep.image.mean()) for ep in episodes]


def test_episodes_run_in_step_and_stop_at_stop_or_their_cap():
    calls: list[list[int]] = []
    scored: list[list[int]] = []

    def score(episodes):
        scored.append([ep.index for ep in episodes])
        return mean_score(episodes)

    plans = [["up", STOP], ["up", "up", "up", "up"], [STOP]]
    eps = run_episodes(images(3), [5, 2, 5], scripted(plans, calls), add(5), score)
    assert calls == [[0, 1, 2], [0, 1]]  # episode 1 hits its cap of 2 and is not asked again
    assert scored == [[0, 1, 2], [0, 1], [1]]
    assert [ep.names for ep in eps] == [["up", STOP], ["up", "up"], [STOP]]
    assert [ep.tools for ep in eps] == [["up"], ["up", "up"], []]
    assert eps[0].stopped and not eps[1].stopped and eps[2].stopped
    assert eps[1].scores == [20.0, 25.0, 30.0] and eps[1].key == "up"
    assert [len(ep.step_seconds) for ep in eps] == [2, 2, 1]
    assert all(ep.failure is None for ep in eps)


def test_a_failing_tool_ends_its_episode_alone_with_the_best_image_so_far():
    calls: list[list[int]] = []
    seen = []
    plans = [["down", "up", "boom", "up"], ["up", "up", STOP]]

    def on_failure(ep, step, name, exc):
        seen.append((ep.index, step, name, str(exc)))
        return {"step": step}

    starts = images(2)
    eps = run_episodes(starts, [5, 5], scripted(plans, calls), add(5), mean_score, failures=(Boom,), on_failure=on_failure)
    assert seen == [(0, 3, "boom", "boom failed")]
    assert eps[0].failure == {"step": 3} and eps[0].tools == ["down", "up"] and eps[0].scores == [10.0, 5.0, 10.0]
    assert eps[0].image is starts[0]  # the start ties the last step: the earliest wins
    assert len(eps[0].step_seconds) == 3
    assert eps[1].tools == ["up", "up"] and eps[1].failure is None and eps[1].stopped
    assert calls == [[0, 1], [0, 1], [0, 1]]


def test_a_failing_decision_ends_every_episode_it_decided_and_on_failure_may_raise():
    def decide(running):
        if running[0].actions:
            raise Boom("policy broke")
        return [(0, "up") for _ in running]

    eps = run_episodes(images(2), [5, 5], decide, add(5), mean_score, failures=(Boom,))
    assert all(isinstance(ep.failure, Boom) and ep.tools == ["up"] for ep in eps)
    np.testing.assert_array_equal(eps[0].image, images(1)[0] + 5)

    def refuse(ep, step, name, exc):
        raise ValueError(f"step {step}: nothing to answer with")

    with pytest.raises(ValueError, match="step 1"):
        run_episodes(images(1), [5], lambda running: [(0, "boom")], add(5), mean_score, failures=(Boom,), on_failure=refuse)
    with pytest.raises(Boom):  # not one of the failures: it propagates
        run_episodes(images(1), [5], lambda running: [(0, "boom")], add(5), mean_score)


def test_lockstep_keeps_deciding_with_no_episode_until_told_to_end():
    calls: list[list[int]] = []

    def decide(running):
        calls.append([ep.index for ep in running])
        if len(calls) == 4:
            return None
        return [(9, STOP) for _ in running]

    eps = run_episodes(images(1), [5], decide, add(5), mean_score, lockstep=True)
    assert calls == [[0], [], [], []] and eps[0].stopped
    with pytest.raises(ValueError, match="2 limits for 1"):
        run_episodes(images(1), [5, 5], decide, add(5), mean_score)
