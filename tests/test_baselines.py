"""Baselines on toy tools whose effect and best order are known."""

from __future__ import annotations

import numpy as np
import pytest

from restore_r1.agent.baselines import (
    BASELINES,
    FIXED_ORDER,
    fixed_sequence,
    psnr,
    run_exploration,
    run_fixed,
    run_input,
    run_oracle,
    run_random,
    timed,
)

CLEAN = np.full((16, 16, 3), 100, np.uint8)


def _add(delta):
    def tool(img):
        return np.clip(img.astype(np.int16) + delta, 0, 255).astype(np.uint8)

    return tool


# Degraded = clean - 30. "up20" then "up10" restores it exactly; "down5" only hurts.
TOOLS = {"up20": _add(20), "up10": _add(10), "down5": _add(-5)}
DEGRADED = (CLEAN - 30).astype(np.uint8)


class DistanceJudge:
    """Scores closeness to the clean level (a judge that happens to know the answer)."""

    name = "toy"

    def score(self, imgs):
        return [-abs(float(i.mean()) - 100.0) for i in imgs]


def test_input_is_identity():
    res = run_input(DEGRADED)
    assert res.image is DEGRADED and res.tools == [] and res.tool_calls == 0


def test_random_is_seeded_and_bounded():
    a = run_random(DEGRADED, tools=TOOLS, rng=np.random.default_rng(3), max_steps=4)
    b = run_random(DEGRADED, tools=TOOLS, rng=np.random.default_rng(3), max_steps=4)
    assert a.tools == b.tools and np.array_equal(a.image, b.image)
    lengths = {len(run_random(DEGRADED, tools=TOOLS, rng=np.random.default_rng(s), max_steps=4).tools) for s in range(60)}
    assert lengths == {0, 1, 2, 3, 4}
    for s in range(30):
        seq = run_random(DEGRADED, tools=TOOLS, rng=np.random.default_rng(s), max_steps=4).tools
        assert all(x != y for x, y in zip(seq, seq[1:]))


def test_fixed_sequence_follows_the_documented_order():
    types = {"nlm": "noise", "dejpeg": "jpeg", "dcp": "haze", "clahe": "dark", "gamma": "dark"}
    assert fixed_sequence(types) == ["dejpeg", "nlm", "clahe", "dcp"]
    assert fixed_sequence(types, {"dark": "gamma"}) == ["dejpeg", "nlm", "gamma", "dcp"]
    with pytest.raises(KeyError, match="not available"):
        fixed_sequence(types, {"rain": "nope"})
    # every degradation type exactly once, and each has an available tool to undo it
    from restore_r1 import DEGRADATION_TYPES
    from restore_r1.tools import list_tools

    assert sorted(FIXED_ORDER) == sorted(DEGRADATION_TYPES) and len(set(FIXED_ORDER)) == len(FIXED_ORDER)
    available = {t.degradation for t in list_tools(available_only=True)}
    assert set(FIXED_ORDER) <= available, set(FIXED_ORDER) - available
    res = run_fixed(DEGRADED, tools=TOOLS, sequence=["up20", "down5"])
    assert res.tool_calls == 2 and int(res.image[0, 0, 0]) == 85


def test_exploration_keeps_best_and_counts_every_try():
    res = run_exploration(DEGRADED, tools=TOOLS, judge=DistanceJudge(), max_steps=5)
    # step 1 tries 3 tools (keeps up20: 90), step 2 tries the 2 others (keeps up10: 100),
    # step 3 tries 2 (up20 -> 120, down5 -> 95; both worse): rolled back, stop.
    assert res.tools == ["up20", "up10"]
    assert res.tool_calls == 3 + 2 + 2
    assert res.scores == [-30.0, -10.0, 0.0]
    np.testing.assert_array_equal(res.image, CLEAN)


def test_oracle_finds_best_sequence_and_counts_prefixes():
    res = run_oracle(DEGRADED, tools=TOOLS, clean=CLEAN, oracle_depth=2)
    assert sorted(res.tools) == ["up10", "up20"] and psnr(res.image, CLEAN) == float("inf")
    assert res.tool_calls == 3 + 3 * 2  # no tool twice in a row
    with pytest.raises(ValueError, match="clean"):
        run_oracle(DEGRADED, tools=TOOLS, clean=None)


def test_registry_and_timing():
    assert set(BASELINES.names()) == {"input", "random", "fixed", "exploration", "oracle"}
    res = timed(BASELINES.get("input"), DEGRADED)
    assert res.seconds >= 0.0
    with pytest.raises(KeyError, match="did you mean"):
        BASELINES.get("orcale")
