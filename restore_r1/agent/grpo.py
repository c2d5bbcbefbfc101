r"""Group Relative Policy Optimisation (GRPO) for tool selection, written against the paper.

The objective (docs/method.md §1; GRPO as in DeepSeekMath, with the per-step reward of Restore-R1):

    For each training image I_0, draw a group of G trajectories o_1..o_G from π_old. Trajectory
    i visits images I_0, I_1, ..., I_{T_i} and earns step rewards

        r_t = Q(I_{t+1}) - Q(I_t) - c·[a_t is a tool call]          (Q = the judge's score)

    (STOP leaves the image unchanged and earns 0). Its return is R_i = Σ_t r_t and its advantage,
    shared by every step of the trajectory, is the group-normalised return

        A_i = (R_i - mean(R_1..R_G)) / (std(R_1..R_G) + eps)        (population std, ddof = 0)

    With ratio_t = π_θ(a_t | s_t) / π_old(a_t | s_t), the loss minimised is

        L(θ) = 1/G Σ_i 1/T_i Σ_t [ -min(ratio_t·A_i, clip(ratio_t, 1-ε, 1+ε)·A_i)
                                    + β·KL_t(π_θ || π_ref) - entropy_coef·H(π_θ(· | s_t)) ]

    where KL_t is the k3 estimator exp(logp_ref - logp) - (logp_ref - logp) - 1 (unbiased,
    always >= 0) and π_ref is the initial policy. Each batch of rollouts is used for μ epochs of
    gradient steps, with the gradient norm clipped to ``max_grad_norm``.

Each term is one small function below; :func:`grpo_loss` combines them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch


@dataclass
class GRPOConfig:
    """Hyper-parameters of GRPO training (one line each)."""

    group_size: int = 8  #: G, trajectories drawn per image from the current policy.
    clip_eps: float = 0.2  #: ε, the ratio is clipped to [1 - ε, 1 + ε] in the surrogate.
    kl_beta: float = 0.01  #: β, weight of the k3 KL penalty towards the reference (initial) policy.
    entropy_coef: float = 0.01  #: weight of the entropy bonus (subtracted from the loss).
    update_epochs: int = 4  #: μ, gradient steps over each batch of rollouts.
    lr: float = 3e-4  #: Adam learning rate.
    max_grad_norm: float = 1.0  #: the gradient's global L2 norm is clipped to this.
    tool_cost: float = 0.0  #: c, reward subtracted per tool call (discourages redundant calls).
    max_steps: int = 5  #: largest number of tool calls per episode (the decision after it is STOP).
    updates: int = 100  #: number of policy updates (each: rollouts on one batch of images).
    batch_images: int = 4  #: images per update; each gets a group of G trajectories.
    seed: int = 0  #: seeds the initial weights, the image batches and the action sampling.
    checkpoint_every: int = 10  #: write a resumable checkpoint every this many updates (0: never).
    keep_checkpoints: int = 2  #: how many of the latest checkpoints to keep on disk.
    adv_eps: float = 1e-6  #: eps in the advantage's denominator std(R) + eps.
    hidden_sizes: tuple[int, ...] = (128, 128)  #: widths of the policy MLP's hidden layers.
    forbid_repeat: bool = True  #: mask a tool at the step right after it was called.
    forbid_cycle: bool = False  #: also mask the tool of two steps before (no A → B → A loops).
    normalize_features: bool = True  #: standardise encoder features with statistics of the data.
    norm_images: int = 16  #: images (and each tool applied once to them) used for those statistics.
    cold_start: bool = False  #: first fit the policy to the judge's greedy search (restore_r1.agent.distill).
    cold_start_temperature: float = 0.1  #: τ of that fit's soft targets, in judge units.
    cold_start_epochs: int = 400  #: full-batch Adam steps of that fit.

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        positive_ints = ("group_size", "update_epochs", "max_steps", "batch_images", "keep_checkpoints", "norm_images")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GRPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"GRPOConfig.group_size must be >= 2 for group-relative advantages, got {self.group_size}")
        if self.updates < 0 or self.checkpoint_every < 0:
            raise ValueError(f"GRPOConfig.updates ({self.updates}) and checkpoint_every ({self.checkpoint_every}) must be >= 0")
        if not 0.0 < self.clip_eps < 1.0:
            raise ValueError(f"GRPOConfig.clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.cold_start_temperature <= 0 or self.cold_start_epochs < 1:
            raise ValueError(
                f"GRPOConfig.cold_start_temperature ({self.cold_start_temperature}) must be > 0 and cold_start_epochs ({self.cold_start_epochs}) >= 1"
            )
        for name in ("kl_beta", "entropy_coef", "tool_cost", "adv_eps"):
            if getattr(self, name) < 0:
                raise ValueError(f"GRPOConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or self.max_grad_norm <= 0:
            raise ValueError(f"GRPOConfig.lr ({self.lr}) and max_grad_norm ({self.max_grad_norm}) must be > 0")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> GRPOConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown GRPOConfig fields {unknown}")
        return cls(**data)


def step_rewards(scores: Sequence[float], tool_calls: Sequence[bool], tool_cost: float) -> list[float]:
    """r_t = Q(I_{t+1}) - Q(I_t) - c·[a_t is a tool call].

    Args:
        scores: judge scores Q(I_0), Q(I_1), ..., Q(I_T) (T + 1 values).
        tool_calls: T flags, True where decision t called a tool (False for STOP).
        tool_cost: c.

    Returns:
        T rewards.
    """
    if len(scores) != len(tool_calls) + 1:
        raise ValueError(f"{len(scores)} scores for {len(tool_calls)} decisions; expected one more score than decisions")
    return [float(scores[t + 1]) - float(scores[t]) - (tool_cost if tool_calls[t] else 0.0) for t in range(len(tool_calls))]


def group_advantages(returns: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """A_i = (R_i - mean(R)) / (std(R) + eps) within each group, population std (ddof = 0).

    Computed in float64. A group whose std is below ``eps`` is a tie and gets exact zeros: the
    mean of G equal float32 values can differ from them by one ulp, and dividing that by
    ``eps`` alone would turn rounding noise into a sizeable advantage.

    Args:
        returns: float [num_groups, G] (or [G] for one group).
        eps: added to the std; also the tie threshold.

    Returns:
        float32 advantages of the same shape.
    """
    returns = torch.as_tensor(returns).to(torch.float64)
    mean = returns.mean(dim=-1, keepdim=True)
    std = returns.std(dim=-1, keepdim=True, unbiased=False)
    advantages = (returns - mean) / (std + eps)
    return torch.where(std < eps, torch.zeros_like(advantages), advantages).to(torch.float32)


def policy_ratio(logp_new: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
    """ratio = π_θ(a|s) / π_old(a|s) = exp(logp_new - logp_old); π_old carries no gradient."""
    return torch.exp(logp_new - logp_old.detach())


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """The PPO/GRPO surrogate objective min(ratio·A, clip(ratio, 1-ε, 1+ε)·A), per step (to maximise)."""
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return torch.minimum(ratio * advantages, clipped_ratio * advantages)


def kl_k3(logp_new: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(π_θ || π_ref) per step: exp(logp_ref - logp) - (logp_ref - logp) - 1 (>= 0)."""
    log_ratio = logp_ref.detach() - logp_new
    return torch.exp(log_ratio) - log_ratio - 1.0


@dataclass
class StepTerms:
    """The per-step terms of the loss, each float [N] (``ratio`` etc. as in the module docstring).

    ``per_step`` = -surrogate + β·kl - entropy_coef·entropy carries the gradient; the loss is its
    weighted sum. Data-parallel ranks each hold the rows of their own trajectories.
    """

    ratio: torch.Tensor
    surrogate: torch.Tensor
    kl: torch.Tensor
    entropy: torch.Tensor
    per_step: torch.Tensor


def grpo_terms(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    clip_eps: float,
    kl_beta: float,
    entropy_coef: float,
) -> StepTerms:
    """The per-step terms of :func:`grpo_loss` (same arguments, without the weights)."""
    n = logp_new.shape[0]
    if not (logp_old.shape[0] == logp_ref.shape[0] == advantages.shape[0] == entropy.shape[0] == n):
        raise ValueError("grpo_loss: all per-step tensors must have the same length")
    ratio = policy_ratio(logp_new, logp_old)
    surrogate = clipped_surrogate(ratio, advantages, clip_eps)
    kl = kl_k3(logp_new, logp_ref)
    per_step = -surrogate + kl_beta * kl - entropy_coef * entropy
    return StepTerms(ratio=ratio, surrogate=surrogate, kl=kl, entropy=entropy, per_step=per_step)


def loss_stats(terms: StepTerms, weights: torch.Tensor, clip_eps: float) -> dict[str, float]:
    """The floats :func:`grpo_loss` reports, from the terms of all steps and their weights."""
    n = terms.ratio.shape[0]
    with torch.no_grad():
        return {
            "loss": float((weights * terms.per_step).sum()),
            "surrogate": float((weights * terms.surrogate).sum()),
            "kl": float((weights * terms.kl).sum()),
            "entropy": float((weights * terms.entropy).sum()),
            "clip_frac": float(((terms.ratio - 1.0).abs() > clip_eps).float().mean()) if n else 0.0,
            "ratio_mean": float(terms.ratio.mean()) if n else 1.0,
        }


def grpo_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    clip_eps: float,
    kl_beta: float,
    entropy_coef: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of the module docstring over a flat batch of decision steps.

    Args:
        logp_new: float [N], log π_θ(a_t | s_t) (with gradient).
        logp_old: float [N], log π_old(a_t | s_t) recorded at rollout time.
        logp_ref: float [N], log π_ref(a_t | s_t) of the reference policy.
        advantages: float [N], the advantage A_i of each step's trajectory.
        entropy: float [N], H(π_θ(· | s_t)) (with gradient).
        clip_eps, kl_beta, entropy_coef: ε, β and the entropy weight.
        weights: float [N] summing to 1; ``1 / (G·T_i)`` per step gives the paper's per-trajectory
            mean then group mean. ``None`` averages all steps equally.

    Returns:
        ``(loss, stats)``: the scalar loss and floats ``loss``, ``surrogate``, ``kl``, ``entropy``,
        ``clip_frac`` (share of steps whose ratio is outside [1-ε, 1+ε]) and ``ratio_mean``.
    """
    terms = grpo_terms(logp_new, logp_old, logp_ref, advantages, entropy, clip_eps, kl_beta, entropy_coef)
    n = logp_new.shape[0]
    if weights is None:
        weights = torch.full((n,), 1.0 / max(n, 1))
    loss = (weights * terms.per_step).sum()
    return loss, loss_stats(terms, weights, clip_eps)
