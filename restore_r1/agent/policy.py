"""The tool-selection policy: a small MLP over frozen image features and the action history.

State (docs/method.md §1, *secondary*: "image features + history of actions taken") at decision step t:

    s_t = [ (f(I_t) - mean) / std,         normalised features of the current image, D floats
            counts of each tool so far,    K floats
            one-hot of the last action,    K + 1 floats (index K = "no action yet")
            one-hot of the step index t ]  max_steps + 1 floats

The MLP maps s_t to K + 1 logits: one per tool, in ``PolicyConfig.tool_names`` order, then STOP
(always the last action). ``max_steps`` is the largest number of tool calls in an episode, so the
decision at step ``t == max_steps`` may only be STOP; with ``forbid_repeat`` the tool called at
step t - 1 is masked at step t (a tool applied twice in a row is the redundant call the paper
removes), and with ``forbid_cycle`` also the tool called at step t - 2 (no A → B → A loops).

A checkpoint is a folder holding ``policy.safetensors`` (the weights) and ``policy.json`` (the
config, the tool list, the encoder name/config, the weights' sha256 and the format version).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restore_r1.agent.plan import STOP
from restore_r1.errors import ChecksumError, WeightsNotFoundError
from restore_r1.images import atomic_directory, sha256_file

#: Version of the checkpoint layout written by :func:`save_policy`.
POLICY_FORMAT_VERSION = 1
#: File names inside a checkpoint folder.
WEIGHTS_FILE = "policy.safetensors"
CONFIG_FILE = "policy.json"
#: Logit given to masked actions: finite, so log-softmax and entropy stay free of NaN, and
#: exp() of it is exactly 0 in float32.
MASKED_LOGIT = -1e9
#: Scale of the output layer's initial weights; a near-uniform first policy explores all tools
#: (the 0.01 actor-head init of cleanrl's ppo.py).
HEAD_INIT_SCALE = 0.01


@dataclass
class PolicyConfig:
    """Architecture and input description of a :class:`Policy`.

    Attributes:
        encoder_name: name of the frozen image encoder in ``restore_r1.encoders``.
        encoder_config: that encoder's ``config()``, so inference rebuilds the same encoder.
        feature_dim: length D of the encoder's feature vector.
        tool_names: the exact ordered tool list; action i is ``tool_names[i]``, action K is STOP.
        hidden_sizes: widths of the MLP's hidden layers.
        max_steps: largest number of tool calls in an episode (default 5).
        forbid_repeat: mask the tool called at the previous step (default on).
        forbid_cycle: also mask the tool called two steps before (A → B → A; default off, so
            that policies saved before it existed load unchanged).
        feature_mean: per-dimension mean subtracted from the features (D floats), or None.
        feature_std: per-dimension std the features are divided by (D floats, > 0), or None.
        extra: free-form JSON metadata kept in ``policy.json`` (the trainer records the judge
            and the GRPO settings here); not used by the network.
    """

    encoder_name: str
    encoder_config: dict
    feature_dim: int
    tool_names: list[str]
    hidden_sizes: tuple[int, ...] = (128, 128)
    max_steps: int = 5
    forbid_repeat: bool = True
    forbid_cycle: bool = False
    feature_mean: list[float] | None = None
    feature_std: list[float] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tool_names = list(self.tool_names)
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not self.tool_names:
            raise ValueError("PolicyConfig.tool_names is empty; a policy needs at least one tool")
        if len(set(self.tool_names)) != len(self.tool_names):
            dupes = sorted({n for n in self.tool_names if self.tool_names.count(n) > 1})
            raise ValueError(f"PolicyConfig.tool_names has duplicates: {dupes}")
        if STOP in self.tool_names:
            raise ValueError(f"{STOP!r} is reserved for the stop action and cannot be a tool name")
        if self.feature_dim <= 0:
            raise ValueError(f"PolicyConfig.feature_dim must be positive, got {self.feature_dim}")
        if self.max_steps < 1:
            raise ValueError(f"PolicyConfig.max_steps must be >= 1, got {self.max_steps}")
        if any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"PolicyConfig.hidden_sizes must be positive, got {self.hidden_sizes}")
        for name in ("feature_mean", "feature_std"):
            value = getattr(self, name)
            if value is None:
                continue
            value = [float(v) for v in value]
            if len(value) != self.feature_dim:
                raise ValueError(f"PolicyConfig.{name} has {len(value)} entries, expected feature_dim={self.feature_dim}")
            if not all(math.isfinite(v) for v in value):
                raise ValueError(f"PolicyConfig.{name} holds non-finite values")
            setattr(self, name, value)
        if self.feature_std is not None and min(self.feature_std) <= 0:
            raise ValueError(f"PolicyConfig.feature_std must be > 0, got min {min(self.feature_std)}")

    @property
    def num_tools(self) -> int:
        """K, the number of tools."""
        return len(self.tool_names)

    @property
    def num_actions(self) -> int:
        """K + 1 (the tools, then STOP)."""
        return len(self.tool_names) + 1

    @property
    def stop_action(self) -> int:
        """Index of STOP, always the last action."""
        return len(self.tool_names)

    @property
    def state_dim(self) -> int:
        """Length of the MLP input: D + K + (K + 1) + (max_steps + 1)."""
        k = self.num_tools
        return self.feature_dim + k + (k + 1) + (self.max_steps + 1)

    def action_name(self, action: int) -> str:
        """The tool name of ``action``, or ``"STOP"``."""
        if action == self.stop_action:
            return STOP
        if 0 <= action < self.num_tools:
            return self.tool_names[action]
        raise ValueError(f"action {action} out of range 0..{self.stop_action}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> PolicyConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PolicyConfig fields {unknown}")
        return cls(**data)


class Policy(nn.Module):
    """MLP policy over [normalised features, tool counts, last action, step] -> K + 1 logits.

    Args:
        config: the architecture.
        generator: seeds the initial weights; ``None`` uses a fixed seed (0). The global torch
            RNG is neither read nor advanced.
    """

    def __init__(self, config: PolicyConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        sizes = [config.state_dim, *config.hidden_sizes, config.num_actions]
        # nn.Linear initialises itself from the global RNG; fork it so nothing leaks, then
        # re-initialise from our own generator.
        with torch.random.fork_rng(devices=[]):
            layers: list[nn.Module] = []
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(fan_in, fan_out))
                if i < len(sizes) - 2:
                    layers.append(nn.Tanh())
            self.mlp = nn.Sequential(*layers)
        d = config.feature_dim
        mean = torch.tensor(config.feature_mean, dtype=torch.float32) if config.feature_mean else torch.zeros(d)
        std = torch.tensor(config.feature_std, dtype=torch.float32) if config.feature_std else torch.ones(d)
        # Part of the config (policy.json), not of the weights file.
        self.register_buffer("feature_mean", mean, persistent=False)
        self.register_buffer("feature_std", std, persistent=False)
        self.reset_parameters(generator if generator is not None else torch.Generator().manual_seed(0))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's default Linear init drawn from ``generator``; the output layer scaled down."""
        linears = [m for m in self.mlp if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for i, layer in enumerate(linears):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
                if i == len(linears) - 1:
                    layer.weight.mul_(HEAD_INIT_SCALE)
                    layer.bias.zero_()

    # ----------------------------------------------------------------------------- state
    def state(self, features: torch.Tensor | np.ndarray, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Builds the MLP input.

        Args:
            features: float [B, D] raw encoder features of the current images.
            histories: B lists of the actions (tool indices) taken so far; the step index of
                row b is ``len(histories[b])``.

        Returns:
            float32 [B, state_dim].
        """
        cfg = self.config
        feats = self._features(features)
        if feats.shape[0] != len(histories):
            raise ValueError(f"{feats.shape[0]} feature rows for {len(histories)} histories")
        b, k = feats.shape[0], cfg.num_tools
        counts = torch.zeros(b, k)
        last = torch.zeros(b, k + 1)
        step = torch.zeros(b, cfg.max_steps + 1)
        for row, history in enumerate(histories):
            t = len(history)
            if t > cfg.max_steps:
                raise ValueError(f"history of {t} actions exceeds max_steps={cfg.max_steps}")
            for a in history:
                if not 0 <= a < k:
                    raise ValueError(f"history action {a} is not a tool index (0..{k - 1})")
                counts[row, a] += 1.0
            last[row, history[-1] if t else k] = 1.0
            step[row, t] = 1.0
        normed = (feats - self.feature_mean) / self.feature_std
        return torch.cat([normed, counts, last, step], dim=1)

    def action_mask(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """bool [B, K + 1]: True where the action is allowed (STOP always is)."""
        cfg = self.config
        mask = torch.ones(len(histories), cfg.num_actions, dtype=torch.bool)
        for row, history in enumerate(histories):
            if len(history) >= cfg.max_steps:
                mask[row, : cfg.num_tools] = False
            else:
                if cfg.forbid_repeat and history:
                    mask[row, history[-1]] = False
                if cfg.forbid_cycle and len(history) >= 2:
                    mask[row, history[-2]] = False
        return mask

    def forward(self, features: torch.Tensor | np.ndarray, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Masked logits, float32 [B, K + 1]; masked actions get ``MASKED_LOGIT``."""
        logits = self.mlp(self.state(features, histories))
        return logits.masked_fill(~self.action_mask(histories), MASKED_LOGIT)

    def log_probs(
        self,
        features: torch.Tensor | np.ndarray,
        histories: Sequence[Sequence[int]],
        actions: torch.Tensor | Sequence[int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(a | s) and the entropy H(π(· | s)) of each row, both float32 [B]."""
        logp_all = torch.log_softmax(self(features, histories), dim=-1)
        actions = torch.as_tensor(actions, dtype=torch.long).reshape(-1, 1)
        logp = logp_all.gather(1, actions).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(dim=-1)
        return logp, entropy

    @torch.no_grad()
    def act(
        self,
        features: torch.Tensor | np.ndarray,
        history: Sequence[Sequence[int]],
        step: int | Sequence[int] | None = None,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Picks one action per row.

        Args:
            features: float [B, D] raw encoder features; a single [D] vector is one row.
            history: B lists of tool indices taken so far; with [D] features, one flat list.
            step: the step index (an int for all rows, or one per row); it must equal the
                history length and is only checked. ``None`` skips the check.
            greedy: argmax (deterministic inference) when True, else sample from π.
            generator: the torch generator sampling draws from (required when sampling).

        Returns:
            ``(actions, log_probs)``: int64 [B] action indices (K = STOP) and float32 [B]
            log π(action | state).
        """
        single = (features.ndim if isinstance(features, (np.ndarray, torch.Tensor)) else np.ndim(features)) == 1
        feats = self._features(features)
        histories = [[int(a) for a in history]] if single else [[int(a) for a in h] for h in history]
        if step is not None:
            steps = [int(step)] * len(histories) if isinstance(step, (int, np.integer)) else [int(s) for s in step]
            lengths = [len(h) for h in histories]
            if steps != lengths:
                raise ValueError(f"step {steps} does not match the history lengths {lengths}")
        logp_all = torch.log_softmax(self(feats, histories), dim=-1)
        if greedy:
            actions = logp_all.argmax(dim=-1)
        else:
            if generator is None:
                raise ValueError("sampling (greedy=False) needs a torch.Generator")
            actions = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(1)
        return actions, logp_all.gather(1, actions.reshape(-1, 1)).squeeze(1)

    def _features(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        feats = torch.as_tensor(np.asarray(features, dtype=np.float32) if isinstance(features, np.ndarray) else features)
        feats = feats.to(torch.float32)
        if feats.ndim == 1:
            feats = feats.reshape(1, -1)
        if feats.ndim != 2 or feats.shape[1] != self.config.feature_dim:
            raise ValueError(f"features of shape {tuple(feats.shape)}; expected [B, {self.config.feature_dim}]")
        return feats


# --------------------------------------------------------------------------------- checkpoints
def save_policy(policy: Policy, directory: str | os.PathLike) -> Path:
    """Writes ``policy.safetensors`` + ``policy.json`` into ``directory`` atomically.

    Both files are written into a temporary sibling folder which then replaces ``directory``
    (an existing one is moved aside first and removed after), so a killed writer leaves the old
    checkpoint or the new one, never a mix.

    Returns:
        the checkpoint folder.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(POLICY_FORMAT_VERSION)})
        meta = {
            "format_version": POLICY_FORMAT_VERSION,
            "kind": "restore_r1.policy",
            "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
            "config": policy.config.to_dict(),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def read_policy_config(directory: str | os.PathLike) -> PolicyConfig:
    """Reads ``policy.json`` of a checkpoint folder (no weights)."""
    return _read_meta(Path(directory))[1]


def _read_meta(directory: Path) -> tuple[dict, PolicyConfig]:
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise WeightsNotFoundError(
            f"policy checkpoint {directory}: {config_path} not found; pass the folder written by save_policy (training writes it to <out_dir>/policy/)"
        )
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != POLICY_FORMAT_VERSION:
        raise ValueError(f"{config_path}: format_version {version!r} is not supported (expected {POLICY_FORMAT_VERSION})")
    return meta, PolicyConfig.from_dict(meta["config"])


def load_policy(directory: str | os.PathLike, available_tools: Sequence[str] | None = None) -> Policy:
    """Loads a checkpoint folder written by :func:`save_policy`.

    Args:
        directory: the folder holding ``policy.safetensors`` and ``policy.json``.
        available_tools: names of the tools that can run here; when given, it must be the same
            set as the policy's tool list.

    Raises:
        WeightsNotFoundError: a file is missing; the message names the path.
        ChecksumError: the weights differ from the sha256 recorded in ``policy.json``.
        ValueError: unsupported format, or the tool lists differ (missing and extra named).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta, config = _read_meta(directory)
    if available_tools is not None:
        check_tools(config.tool_names, available_tools)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise WeightsNotFoundError(f"policy checkpoint {directory}: weights file {weights_path} not found")
    expected = meta.get("weights_sha256")
    if expected is not None:
        digest = sha256_file(weights_path)
        if digest != expected:
            raise ChecksumError(f"{weights_path}: sha256 {digest} differs from {expected} recorded in {CONFIG_FILE}")
    policy = Policy(config)
    try:
        policy.load_state_dict(load_file(str(weights_path)), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights_path}: weights do not fit the config in {CONFIG_FILE} ({exc})") from None
    policy.eval()
    return policy


def check_tools(policy_tools: Sequence[str], available_tools: Sequence[str]) -> None:
    """Raises ValueError when the policy's tools and the available tools are not the same set.

    The message names the tools the policy needs that are missing here, and the available tools
    the policy does not know.
    """
    policy_set, available_set = set(policy_tools), set(available_tools)
    if policy_set == available_set:
        return
    missing = [t for t in policy_tools if t not in available_set]
    extra = sorted(available_set - policy_set)
    raise ValueError(
        f"the policy's tool list differs from the available tools: missing here {missing}, "
        f"not known to the policy {extra} (the policy was trained on {list(policy_tools)})"
    )
