"""GRPO trainer, rollouts and caches on a toy problem whose best tool order is known."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from restore_r1.agent.env import EnvCaches, ToolCache, rollout, rollout_many
from restore_r1.agent.grpo import GRPOConfig
from restore_r1.agent.policy import Policy, PolicyConfig, load_policy
from restore_r1.agent.trainer import load_lq_images, train
from restore_r1.images import write_image

# --- The toy world. The image's channel means encode what was done to it:
# fix_a sets R to 200; fix_b sets G to 200 after fix_a, but only to 100 before it; harm raises B.
# The judge gives 1 for R fixed, 2 for G fixed (0.5 for the half fix) and -1 for B raised, so the
# best episode under a tool cost is fix_a, fix_b, STOP (b, a, b reaches the same score in 3 calls).


def fix_a(img):
    out = img.copy()
    out[..., 0] = 200
    return out


def fix_b(img):
    out = img.copy()
    out[..., 1] = 200 if img[..., 0].mean() >= 150 else 100
    return out


def noop(img):
    return img.copy()


def harm(img):
    out = img.astype(np.int16)
    out[..., 2] += 80
    return np.clip(out, 0, 255).astype(np.uint8)


TOOLS = {"noop": noop, "fix_b": fix_b, "harm": harm, "fix_a": fix_a}


class ToyEncoder:
    name = "toy-means"
    dim = 3

    def __init__(self):
        self.calls = []

    def encode(self, imgs):
        self.calls.append(len(imgs))
        return np.array([im.reshape(-1, 3).mean(0) / 255.0 for im in imgs], np.float32)

    def config(self):
        return {"kind": "channel-means"}


class ToyJudge:
    name = "toy-judge"

    def __init__(self):
        self.calls = []

    def score(self, imgs):
        self.calls.append(len(imgs))
        out = []
        for im in imgs:
            r, g, b = im.reshape(-1, 3).mean(0)
            out.append(1.0 * (r >= 150) + 2.0 * (g >= 150) + 0.5 * (80 < g < 150) - 1.0 * (b >= 100))
        return out


def toy_images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [(40 + rng.integers(0, 10, (16, 16, 3))).astype(np.uint8) for _ in range(n)]


def toy_config(**kw):
    base = dict(
        group_size=8, batch_images=4, updates=20, lr=0.01, hidden_sizes=(32, 32), tool_cost=0.2, max_steps=4, update_epochs=4, checkpoint_every=0, seed=0
    )
    base.update(kw)
    return GRPOConfig(**base)


def test_toy_training_learns_order_and_stops(tmp_path):
    t0 = time.perf_counter()
    result = train(toy_images(), tmp_path / "run", ToyEncoder(), ToyJudge(), TOOLS, toy_config(), progress=False)
    assert time.perf_counter() - t0 < 30
    policy = load_policy(result.policy_dir, available_tools=list(TOOLS))
    for img in toy_images(3, seed=1):  # unseen images of the same world
        traj = rollout(policy, ToyEncoder(), img, TOOLS, ToyJudge(), greedy=True, tool_cost=0.2)
        assert traj.action_names == ["fix_a", "fix_b", "STOP"]
        assert traj.rewards == pytest.approx([0.8, 1.8, 0.0])
        assert traj.steps == 2
    records = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["update"] for r in records] == list(range(1, 21))
    expected_keys = {"mean_reward", "mean_return", "advantage_std", "kl", "entropy", "mean_steps", "tool_cache_hit_rate", "seconds"}
    assert expected_keys <= set(records[0])
    assert records[-1]["mean_return"] > records[0]["mean_return"] + 1.5
    assert records[-1]["tool_cache_hit_rate"] > 0.9


def test_untrained_policy_does_not_solve_toy():
    # guards the test above against a toy world every policy solves
    policy = Policy(PolicyConfig("toy-means", {}, 3, list(TOOLS), hidden_sizes=(32, 32), max_steps=4))
    names = [
        rollout(policy, ToyEncoder(), img, TOOLS, ToyJudge(), greedy=False, generator=torch.Generator().manual_seed(i)).action_names
        for i, img in enumerate(toy_images(8))
    ]
    assert sum(n == ["fix_a", "fix_b", "STOP"] for n in names) < 4


def test_killed_run_resumes_to_identical_weights(tmp_path):
    images = toy_images()
    cfg = toy_config(updates=6, checkpoint_every=3, batch_images=2, group_size=4)
    straight = train(images, tmp_path / "a", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False)

    class Killed(Exception):
        pass

    def kill_at_5(update, record):
        if update == 4:  # the 5th update is done but not checkpointed (checkpoints at 3 and 6)
            raise Killed

    with pytest.raises(Killed):
        train(images, tmp_path / "b", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False, callback=kill_at_5)
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "update_000003"
    resumed = train(images, tmp_path / "b", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False)
    assert resumed.resumed_from == 3 and [r["update"] for r in resumed.records] == [4, 5, 6]
    sa, sb = straight.policy.state_dict(), resumed.policy.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    la = [json.loads(x) for x in straight.log_path.read_text().splitlines()]
    lb = [json.loads(x) for x in resumed.log_path.read_text().splitlines()]
    assert [r["update"] for r in lb] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(la, lb):
        assert ra["mean_return"] == rb["mean_return"] and ra["loss"] == rb["loss"]
    # saved final policies are byte-identical
    assert (straight.policy_dir / "policy.safetensors").read_bytes() == (resumed.policy_dir / "policy.safetensors").read_bytes()
    # resuming with other settings is refused, naming the field
    with pytest.raises(ValueError, match="lr"):
        train(
            images,
            tmp_path / "b",
            ToyEncoder(),
            ToyJudge(),
            TOOLS,
            toy_config(updates=6, checkpoint_every=3, batch_images=2, group_size=4, lr=0.5),
            progress=False,
        )


def test_training_leaves_global_rng_alone_and_is_seeded(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    t_state, n_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    cfg = toy_config(updates=2, batch_images=2, group_size=4)
    r1 = train(toy_images(), tmp_path / "a", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False)
    assert torch.equal(torch.get_rng_state(), t_state)
    assert np.array_equal(np.random.get_state()[1], n_state)
    r2 = train(toy_images(), tmp_path / "b", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False, resume=False)
    r3 = train(toy_images(), tmp_path / "c", ToyEncoder(), ToyJudge(), TOOLS, toy_config(updates=2, batch_images=2, group_size=4, seed=1), progress=False)
    assert torch.equal(r1.policy.mlp[0].weight, r2.policy.mlp[0].weight)
    assert not torch.equal(r1.policy.mlp[0].weight, r3.policy.mlp[0].weight)


def test_group_rollout_shares_work_and_batches_calls():
    encoder, judge = ToyEncoder(), ToyJudge()
    counts = {name: 0 for name in TOOLS}

    def counted(name):
        def run(img):
            counts[name] += 1
            return TOOLS[name](img)

        return run

    tools = {name: counted(name) for name in TOOLS}
    policy = Policy(PolicyConfig("toy-means", {}, 3, list(TOOLS), hidden_sizes=(8,), max_steps=3))
    caches = EnvCaches()
    img = toy_images(1)[0]
    trajs = rollout_many(policy, encoder, [img] * 8, tools, judge, greedy=True, caches=caches)
    # greedy from one image: the 8 trajectories are the same episode, computed once
    assert all(t.actions == trajs[0].actions for t in trajs)
    assert sum(counts.values()) == trajs[0].steps
    assert all(c == 1 for c in encoder.calls) and all(c == 1 for c in judge.calls)
    assert len(encoder.calls) == len(trajs[0].actions)  # one batched call per decision step
    assert caches.tools.hits == 7 * trajs[0].steps and caches.tools.misses == trajs[0].steps
    assert len(trajs[0].scores) == len(trajs[0].actions) + 1
    assert trajs[0].features.shape == (len(trajs[0].actions), 3)
    with pytest.raises(ValueError, match="fix_a"):
        rollout(policy, encoder, img, {"noop": noop}, judge)


def test_tool_cache_counts_hits_and_evicts():
    cache = ToolCache(max_entries=2)
    imgs = toy_images(3)
    out1, d1 = cache.apply("fix_a", fix_a, imgs[0])
    out2, d2 = cache.apply("fix_a", fix_a, imgs[0])
    assert out1 is out2 and d1 == d2 and (cache.hits, cache.misses) == (1, 1)
    assert cache.hit_rate == 0.5
    cache.apply("fix_a", fix_a, imgs[1])
    cache.apply("fix_a", fix_a, imgs[2])
    assert len(cache) == 2
    cache.apply("fix_a", fix_a, imgs[0])  # evicted: computed again
    assert cache.misses == 4


def test_dataset_dir_reads_lq_only(tmp_path):
    imgs = toy_images(2)
    (tmp_path / "lq").mkdir()
    lines = []
    for i, img in enumerate(imgs):
        write_image(tmp_path / "lq" / f"{i}.png", img)
        lines.append(json.dumps({"id": str(i), "lq": f"lq/{i}.png", "gt": f"gt/{i}.png"}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    loaded = load_lq_images(tmp_path)  # gt/ does not exist: reading it would fail
    assert len(loaded) == 2 and all(np.array_equal(a, b) for a, b in zip(loaded, imgs))
    result = train(tmp_path, tmp_path / "run", ToyEncoder(), ToyJudge(), TOOLS, toy_config(updates=1, batch_images=2, group_size=2), progress=False)
    assert result.updates == 1
    with pytest.raises(FileNotFoundError, match="manifest.jsonl"):
        load_lq_images(tmp_path / "lq")
