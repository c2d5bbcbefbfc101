"""Policy network, action masking and checkpoint format (restore_r1.agent.policy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restore_r1.agent.policy import (
    CONFIG_FILE,
    MASKED_LOGIT,
    POLICY_FORMAT_VERSION,
    WEIGHTS_FILE,
    Policy,
    PolicyConfig,
    load_policy,
    save_policy,
)
from restore_r1.errors import ChecksumError, WeightsNotFoundError

TOOLS = ["clahe", "denoise", "derain"]


def make_config(**kw) -> PolicyConfig:
    base = dict(encoder_name="toy", encoder_config={"size": 4}, feature_dim=4, tool_names=TOOLS, hidden_sizes=(16,), max_steps=3)
    base.update(kw)
    return PolicyConfig(**base)


def test_state_layout():
    cfg = make_config(feature_mean=[1.0] * 4, feature_std=[2.0] * 4)
    policy = Policy(cfg)
    assert cfg.state_dim == 4 + 3 + 4 + 4
    state = policy.state(np.full((2, 4), 3.0, np.float32), [[], [0, 2, 0]])
    assert state.shape == (2, cfg.state_dim)
    assert state[0, :4].tolist() == [1.0] * 4  # (3 - 1) / 2
    assert state[0, 4:7].tolist() == [0, 0, 0]  # counts
    assert state[0, 7:11].tolist() == [0, 0, 0, 1]  # last action: "none yet"
    assert state[0, 11:].tolist() == [1, 0, 0, 0]  # step 0
    assert state[1, 4:7].tolist() == [2, 0, 1]
    assert state[1, 7:11].tolist() == [1, 0, 0, 0]
    assert state[1, 11:].tolist() == [0, 0, 0, 1]  # step 3


def test_masks_last_step_and_repeats():
    policy = Policy(make_config())
    logits = policy(np.zeros((4, 4), np.float32), [[], [1], [1, 2, 0], [2]])
    stop = 3
    assert (logits[0] > MASKED_LOGIT).all()
    assert logits[1, 1] == MASKED_LOGIT and (logits[1, [0, 2, stop]] > MASKED_LOGIT).all()
    # step == max_steps: only STOP
    assert (logits[2, :stop] == MASKED_LOGIT).all() and logits[2, stop] > MASKED_LOGIT
    actions, logp = policy.act(np.zeros((1, 4), np.float32), [[1, 2, 0]], step=3, greedy=False, generator=torch.Generator().manual_seed(0))
    assert actions.tolist() == [stop] and logp.item() == pytest.approx(0.0, abs=1e-6)
    no_rule = Policy(make_config(forbid_repeat=False))
    assert (no_rule(np.zeros((1, 4), np.float32), [[1]]) > MASKED_LOGIT).all()


def test_forbid_cycle_masks_the_tool_of_two_steps_before_and_old_configs_load():
    cycle = Policy(make_config(forbid_cycle=True, max_steps=5))
    logits = cycle(np.zeros((2, 4), np.float32), [[0, 1], [2]])
    assert logits[0, 0] == MASKED_LOGIT and logits[0, 1] == MASKED_LOGIT and logits[0, 2] > MASKED_LOGIT
    assert logits[1, 2] == MASKED_LOGIT and (logits[1, [0, 1]] > MASKED_LOGIT).all()
    plain = Policy(make_config(max_steps=5))
    assert plain(np.zeros((1, 4), np.float32), [[0, 1]])[0, 0] > MASKED_LOGIT  # default: A -> B -> A allowed
    data = make_config().to_dict()
    data.pop("forbid_cycle")  # a policy.json written before the field existed
    assert PolicyConfig.from_dict(data).forbid_cycle is False


def test_masked_actions_never_sampled_and_entropy_finite():
    policy = Policy(make_config())
    gen = torch.Generator().manual_seed(1)
    feats = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    actions, _ = policy.act(feats, [[2]] * 200, greedy=False, generator=gen)
    assert 2 not in actions.tolist()
    _, entropy = policy.log_probs(feats[:2], [[2], [0, 1, 2]], [0, 3])
    assert torch.isfinite(entropy).all() and entropy[1].item() == pytest.approx(0.0, abs=1e-6)


def test_act_greedy_deterministic_and_sampling_seeded():
    policy = Policy(make_config(), generator=torch.Generator().manual_seed(3))
    feats = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    hist = [[]] * 16
    a1, _ = policy.act(feats, hist, greedy=True)
    a2, _ = policy.act(feats, hist, greedy=True)
    assert torch.equal(a1, a2)
    assert torch.equal(a1, policy(feats, hist).argmax(-1))
    s1, l1 = policy.act(feats, hist, greedy=False, generator=torch.Generator().manual_seed(7))
    s2, l2 = policy.act(feats, hist, greedy=False, generator=torch.Generator().manual_seed(7))
    assert torch.equal(s1, s2) and torch.equal(l1, l2)
    single, _ = policy.act(feats[0], [], step=0, greedy=True)
    assert single.tolist() == [a1[0].item()]
    with pytest.raises(ValueError, match="step"):
        policy.act(feats[:1], [[0]], step=0)
    with pytest.raises(ValueError, match="Generator"):
        policy.act(feats[:1], [[]], greedy=False)


def test_init_seeded_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    p1 = Policy(make_config(), generator=torch.Generator().manual_seed(5))
    p2 = Policy(make_config(), generator=torch.Generator().manual_seed(5))
    p3 = Policy(make_config(), generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), before)
    for k, v in p1.state_dict().items():
        assert torch.equal(v, p2.state_dict()[k])
    assert not torch.equal(p1.mlp[0].weight, p3.mlp[0].weight)
    # near-uniform first policy
    probs = torch.softmax(p1(np.zeros((1, 4), np.float32), [[]]), -1)
    assert probs.max().item() - probs.min().item() < 0.05


def test_save_load_roundtrip(tmp_path):
    cfg = make_config(feature_mean=[0.5, 0.1, 0.0, -1.0], feature_std=[1.0, 2.0, 0.5, 3.0])
    policy = Policy(cfg, generator=torch.Generator().manual_seed(9))
    out = save_policy(policy, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE])
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["format_version"] == POLICY_FORMAT_VERSION
    assert meta["config"]["tool_names"] == TOOLS and meta["config"]["encoder_name"] == "toy"
    loaded = load_policy(out, available_tools=list(reversed(TOOLS)))
    assert loaded.config == cfg
    for k, v in policy.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    feats = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    assert torch.equal(policy(feats, [[]] * 5), loaded(feats, [[]] * 5))
    # overwrite in place leaves exactly the new checkpoint and no temporary folders
    other = Policy(cfg, generator=torch.Generator().manual_seed(10))
    save_policy(other, out)
    assert torch.equal(load_policy(out).mlp[0].weight, other.mlp[0].weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_load_errors_name_tools_and_paths(tmp_path):
    out = save_policy(Policy(make_config()), tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"missing here \['derain'\].*not known to the policy \['dehaze'\]"):
        load_policy(out, available_tools=["clahe", "denoise", "dehaze"])
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "nowhere")):
        load_policy(tmp_path / "nowhere")
    (out / WEIGHTS_FILE).write_bytes((out / WEIGHTS_FILE).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ChecksumError, match=WEIGHTS_FILE):
        load_policy(out)
    (out / WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsNotFoundError, match=WEIGHTS_FILE):
        load_policy(out)


def test_config_validation():
    with pytest.raises(ValueError, match="duplicates"):
        make_config(tool_names=["a", "a"])
    with pytest.raises(ValueError, match="STOP"):
        make_config(tool_names=["a", "STOP"])
    with pytest.raises(ValueError, match="feature_std"):
        make_config(feature_std=[1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="feature_mean has 2"):
        make_config(feature_mean=[0.0, 0.0])
    with pytest.raises(ValueError, match="features of shape"):
        Policy(make_config())(np.zeros((1, 5), np.float32), [[]])
