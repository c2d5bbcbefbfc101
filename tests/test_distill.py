"""The cold start from the judge's greedy search (restore_r1.agent.distill) and its use by the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restore_r1.agent import distill
from restore_r1.agent.env import rollout
from restore_r1.agent.policy import PolicyConfig, load_policy
from restore_r1.agent.trainer import COLD_START_FILE, COLD_START_REPORT, train
from tests.test_trainer import TOOLS, ToyEncoder, ToyJudge, toy_config, toy_images

NAMES = list(TOOLS)  # noop, fix_b, harm, fix_a
COST = 0.2


def toy_demos(**kw):
    return distill.demonstrate(toy_images(1)[0], TOOLS, ToyJudge(), ToyEncoder(), tool_cost=COST, max_steps=4, **kw)


def test_greedy_search_records_every_action_value_and_stops():
    demos = toy_demos()
    assert [d.history for d in demos] == [[], [3], [3, 1]]  # fix_a, then fix_b, then STOP
    # judge gains minus the tool cost (module doc of test_trainer: fix_a +1, fix_b +0.5 before fix_a, harm -1)
    np.testing.assert_allclose(demos[0].values, [-0.2, 0.3, -1.2, 0.8, 0.0], atol=1e-6)
    np.testing.assert_allclose(demos[1].values[[0, 1, 2]], [-0.2, 1.8, -1.2], atol=1e-6)
    assert np.isnan(demos[1].values[3])  # fix_a was just called: masked (forbid_repeat)
    assert np.isnan(demos[2].values[[1, 3]]).all()  # fix_b just called, fix_a two steps before (forbid_cycle)
    assert np.nanmax(demos[2].values[:4]) < 0 and demos[2].values[4] == 0.0
    np.testing.assert_allclose(demos[0].features, ToyEncoder().encode(toy_images(1))[0])


def test_greedy_search_respects_the_step_limit_and_masks():
    demos = distill.demonstrate(toy_images(1)[0], TOOLS, ToyJudge(), ToyEncoder(), tool_cost=COST, max_steps=1)
    assert [d.history for d in demos] == [[], [3]]
    assert np.isnan(demos[1].values[:4]).all()  # at the limit only STOP is left
    assert distill.allowed_tools([3, 1], 4, 4, forbid_repeat=True, forbid_cycle=False) == [0, 2, 3]
    assert distill.allowed_tools([3, 1], 4, 4, forbid_repeat=False, forbid_cycle=False) == [0, 1, 2, 3]
    assert distill.allowed_tools([3, 1], 4, 2, forbid_repeat=True, forbid_cycle=True) == []


def test_soft_targets_ignore_masked_actions():
    values = torch.tensor([[1.0, float("nan"), 0.0], [0.0, 0.0, 0.0]])
    p = distill.soft_targets(values, temperature=0.5)
    e2 = float(np.exp(2.0))
    np.testing.assert_allclose(p[0].numpy(), [e2 / (e2 + 1), 0.0, 1 / (e2 + 1)], rtol=1e-6)
    np.testing.assert_allclose(p[1].numpy(), [1 / 3] * 3, rtol=1e-6)


def test_workers_give_the_same_demonstrations():
    images = toy_images(3)
    kw = dict(tool_cost=COST, max_steps=4)
    one = distill.demonstrate_many(images, TOOLS, ToyJudge(), ToyEncoder(), workers=1, **kw)
    two = distill.demonstrate_many(images, TOOLS, ToyJudge(), ToyEncoder(), workers=2, **kw)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert [d.history for d in a] == [d.history for d in b]
        for da, db in zip(a, b):
            np.testing.assert_array_equal(da.values, db.values)
            np.testing.assert_array_equal(da.features, db.features)


def test_demonstrations_round_trip_and_their_key(tmp_path):
    per_image = distill.demonstrate_many(toy_images(2), TOOLS, ToyJudge(), ToyEncoder(), tool_cost=COST, max_steps=4)
    path = tmp_path / "demos.npz"
    distill.save_demonstrations(path, per_image, {"judge": "toy", "cost": COST})
    back = distill.load_demonstrations(path, {"judge": "toy", "cost": COST})
    assert [[d.history for d in demos] for demos in back] == [[d.history for d in demos] for demos in per_image]
    np.testing.assert_array_equal(back[1][0].values, per_image[1][0].values)
    assert distill.load_demonstrations(path, {"judge": "toy", "cost": 0.1}) is None
    assert distill.load_demonstrations(tmp_path / "missing.npz", {}) is None
    assert not list(tmp_path.glob("*.tmp*"))


def test_fit_policy_imitates_the_search_on_unseen_images():
    demos = [d for img in toy_images(4) for d in distill.demonstrate(img, TOOLS, ToyJudge(), ToyEncoder(), tool_cost=COST, max_steps=4)]
    config = PolicyConfig("toy-means", {}, 3, NAMES, hidden_sizes=(32, 32), max_steps=4, forbid_cycle=True)
    policy, stats = distill.fit_policy(demos, config, distill.DistillConfig(epochs=200, lr=0.01))
    assert stats["agreement"] == 1.0 and stats["states"] == len(demos)
    assert stats["stop_share"] == pytest.approx(1 / 3)
    assert policy.config.feature_mean is not None  # normalised with the demonstrated states
    for img in toy_images(3, seed=1):
        traj = rollout(policy, ToyEncoder(), img, TOOLS, ToyJudge(), greedy=True, tool_cost=COST)
        assert traj.action_names == ["fix_a", "fix_b", "STOP"]


def test_fit_policy_refuses_nothing_and_bad_settings():
    config = PolicyConfig("toy-means", {}, 3, NAMES, max_steps=4)
    with pytest.raises(ValueError, match="no demonstrations"):
        distill.fit_policy([], config, distill.DistillConfig())
    with pytest.raises(ValueError, match="temperature"):
        distill.DistillConfig(temperature=0)
    with pytest.raises(ValueError, match="cold_start_temperature"):
        toy_config(cold_start_temperature=-1)


def test_trainer_cold_start_then_grpo(tmp_path):
    config = toy_config(updates=0, cold_start=True, cold_start_epochs=200, forbid_cycle=True)
    result = train(toy_images(), tmp_path / "run", ToyEncoder(), ToyJudge(), TOOLS, config, progress=False)
    report = json.loads((tmp_path / "run" / COLD_START_REPORT).read_text())
    assert report["images"] == 6 and report["agreement"] == 1.0 and not report["search_reused"]
    assert report["mean_greedy_steps"] == 2.0
    policy = load_policy(result.policy_dir, available_tools=NAMES)
    assert policy.config.extra["grpo"]["cold_start"] is True
    for img in toy_images(3, seed=1):  # no GRPO update at all: the cold start alone solves the toy
        assert rollout(policy, ToyEncoder(), img, TOOLS, ToyJudge(), greedy=True, tool_cost=COST).action_names == ["fix_a", "fix_b", "STOP"]
    # A new run in the same folder reuses the saved search; GRPO then starts from the fitted policy.
    judge = ToyJudge()
    result = train(toy_images(), tmp_path / "run", ToyEncoder(), judge, TOOLS, toy_config(**{**config.to_dict(), "updates": 3}), progress=False, resume=False)
    assert json.loads((tmp_path / "run" / COLD_START_REPORT).read_text())["search_reused"] is True
    assert (tmp_path / "run" / COLD_START_FILE).is_file()
    assert result.updates == 3 and result.records[0]["mean_final_score"] > 2.0  # already near the best episode's score 3
