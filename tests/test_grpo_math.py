"""GRPO maths against hand-computed numbers (restore_r1.agent.grpo)."""

from __future__ import annotations

import math

import pytest
import torch

from restore_r1.agent.grpo import (
    GRPOConfig,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    kl_k3,
    policy_ratio,
    step_rewards,
)


def test_advantages_hand_computed_population_std():
    # mean 2, population std sqrt(2/3) = 0.81650 -> (R - 2) / 0.81650
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0]]), eps=0.0)
    assert adv.tolist()[0] == pytest.approx([-1.2247449, 0.0, 1.2247449], abs=1e-6)
    # the sample std (ddof=1) would give +-1.0; we use the population std
    assert abs(adv[0, 0].item() + 1.0) > 0.2


def test_advantages_per_group_and_eps():
    returns = torch.tensor([[0.0, 4.0], [10.0, 10.0]])
    adv = group_advantages(returns, eps=1e-6)
    # group 1: mean 2, std 2 -> -1, +1 (std + eps in the denominator)
    assert adv[0].tolist() == pytest.approx([-2 / (2 + 1e-6), 2 / (2 + 1e-6)], rel=1e-6)
    assert adv[1].tolist() == [0.0, 0.0]


def test_constant_returns_give_exact_zero_advantage_even_with_rounding():
    # 2.6 repeated: the float32 mean is off by an ulp; a tie must still be exactly zero.
    adv = group_advantages(torch.full((1, 8), 2.6, dtype=torch.float32), eps=1e-6)
    assert torch.equal(adv, torch.zeros(1, 8))


def test_constant_rewards_give_zero_policy_gradient():
    logits = torch.tensor([[0.3, -0.2, 0.5], [0.1, 0.4, -0.7]], requires_grad=True)
    actions = torch.tensor([2, 1])
    logp = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    adv = group_advantages(torch.tensor([[1.5, 1.5]]), eps=1e-6).reshape(-1)
    loss, _ = grpo_loss(logp, logp.detach() - 0.05, logp.detach(), adv, torch.zeros(2), clip_eps=0.2, kl_beta=0.0, entropy_coef=0.0)
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0
    assert loss.item() == 0.0


def test_ratio_is_one_at_old_policy():
    logp = torch.tensor([-0.1, -2.3, -0.7])
    assert torch.equal(policy_ratio(logp, logp.clone()), torch.ones(3))
    assert policy_ratio(torch.tensor([0.0]), torch.tensor([math.log(0.5)])).item() == pytest.approx(2.0)


def test_clipped_surrogate_values():
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    adv = torch.tensor([2.0, -2.0, 2.0, -2.0, 1.0])
    # min(r A, clip(r) A): 1.2*2, 1.5*-2, 0.5*2, 0.8*-2, 1.1*1
    expected = [2.4, -3.0, 1.0, -1.6, 1.1]
    assert clipped_surrogate(ratio, adv, 0.2).tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("ratio", "adv", "zero_grad"),
    [
        (1.5, 1.0, True),  # above 1+eps, positive advantage: clipped, no push further up
        (0.5, -1.0, True),  # below 1-eps, negative advantage: clipped, no push further down
        (1.5, -1.0, False),  # above 1+eps, negative advantage: the unclipped term is the min
        (0.5, 1.0, False),  # below 1-eps, positive advantage: the unclipped term is the min
        (1.1, 1.0, False),  # inside the trust region
    ],
)
def test_clipping_stops_gradient_outside_trust_region(ratio, adv, zero_grad):
    logp_old = torch.tensor([-1.0])
    logp_new = (logp_old + math.log(ratio)).clone().requires_grad_(True)
    loss, stats = grpo_loss(logp_new, logp_old, logp_new.detach(), torch.tensor([adv]), torch.zeros(1), clip_eps=0.2, kl_beta=0.0, entropy_coef=0.0)
    loss.backward()
    if zero_grad:
        assert logp_new.grad.item() == 0.0
    else:
        # d(-ratio*A)/dlogp = -ratio*A
        assert logp_new.grad.item() == pytest.approx(-ratio * adv, rel=1e-5)
    assert stats["clip_frac"] == (1.0 if abs(ratio - 1) > 0.2 else 0.0)


def test_kl_k3_zero_at_reference_and_hand_value():
    logp = torch.tensor([-0.3, -1.2, -4.0])
    assert torch.equal(kl_k3(logp, logp.clone()), torch.zeros(3))
    # logp_ref - logp = log 2: 2 - ln 2 - 1 = 0.306853
    value = kl_k3(torch.tensor([math.log(0.25)]), torch.tensor([math.log(0.5)]))
    assert value.item() == pytest.approx(2 - math.log(2) - 1, abs=1e-6)
    # always >= 0
    assert (kl_k3(torch.randn(50, generator=torch.Generator().manual_seed(0)), torch.zeros(50)) >= 0).all()


def test_grpo_loss_combines_terms_with_weights():
    logp_new = torch.tensor([math.log(0.5), math.log(0.25)])
    logp_old = torch.tensor([math.log(0.5), math.log(0.5)])  # ratios 1.0 and 0.5
    logp_ref = torch.tensor([math.log(0.5), math.log(0.5)])  # k3: 0 and 2 - ln2 - 1
    adv = torch.tensor([1.0, 1.0])
    entropy = torch.tensor([0.6, 0.2])
    weights = torch.tensor([0.75, 0.25])
    loss, stats = grpo_loss(logp_new, logp_old, logp_ref, adv, entropy, clip_eps=0.2, kl_beta=0.1, entropy_coef=0.01, weights=weights)
    per_step = [-1.0 + 0 - 0.006, -0.5 + 0.1 * (1 - math.log(2)) - 0.002]
    assert loss.item() == pytest.approx(0.75 * per_step[0] + 0.25 * per_step[1], abs=1e-6)
    assert stats["kl"] == pytest.approx(0.25 * (1 - math.log(2)), abs=1e-6)
    assert stats["entropy"] == pytest.approx(0.5, abs=1e-6)
    assert stats["clip_frac"] == 0.5


def test_step_rewards_telescoping_with_tool_cost():
    scores = [2.0, 2.5, 3.25, 3.25]
    rewards = step_rewards(scores, [True, True, False], tool_cost=0.1)
    assert rewards == pytest.approx([0.4, 0.65, 0.0])
    assert sum(rewards) == pytest.approx(scores[-1] - scores[0] - 0.2)
    with pytest.raises(ValueError, match="scores"):
        step_rewards([1.0], [True], 0.0)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="clip_eps"):
        GRPOConfig(clip_eps=1.5)
    cfg = GRPOConfig(hidden_sizes=[8, 4])
    assert GRPOConfig.from_dict(cfg.to_dict()) == cfg
