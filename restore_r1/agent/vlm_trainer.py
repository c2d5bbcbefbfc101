r"""GRPO training of the VLM planner with TRL's ``GRPOTrainer`` (the MLP policy keeps its own GRPO).

The objective is the MLP policy's (:mod:`restore_r1.agent.grpo`), with a plan in place of a
trajectory. For each training image I_0 the model writes a group of G answers o_1..o_G (sampled at
``temperature``). Answer i is parsed (:func:`restore_r1.agent.plan.parse_plan`); a plan
a_1..a_T is applied with the same tools and scored with the same judge as the MLP's episodes
(:func:`restore_r1.agent.env.apply_plans`), and earns the MLP's return

    R_i = Σ_t [Q(I_t) - Q(I_{t-1}) - c] = Q(I_T) - Q(I_0) - c·T        (judge gain minus cost per call)

while an answer that is not a plan earns R_i = -parse_penalty, its own penalty (no fallback plan).
TRL then forms the group-normalised advantages A_i = (R_i - mean R) / std R and minimises the
clipped surrogate with β·KL to the initial model (``loss_type="grpo"``: each answer's tokens
averaged, then the answers; TRL's GRPO documentation writes out the per-token form).

Training reads only the degraded (``lq``) images of a data set. The final model (LoRA adapters
merged in, when ``lora_rank`` > 0) is saved as a planner folder (:func:`restore_r1.agent.vlm.save_vlm_planner`)
at ``out_dir/policy``, beside ``train_log.jsonl``. Runs are not resumable (a killed run starts
over); docs/vlm.md says what was tested and what a real run costs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.agent.env import EnvCaches, apply_plans
from restore_r1.agent.plan import PlanParseError, check_tool_names, parse_plan
from restore_r1.agent.vlm import (
    DEFAULT_MAX_NEW_TOKENS,
    DTYPES,
    VLMPlanner,
    VLMPlannerConfig,
    load_vlm_model,
    prompt_messages,
    resolve_vlm_model,
    save_vlm_planner,
)
from restore_r1.images import atomic_write_bytes, check_rgb

#: Files and folders inside ``out_dir`` (the MLP trainer's names).
LOG_FILE = "train_log.jsonl"
POLICY_DIR = "policy"
#: TRL's own output folder inside ``out_dir`` (nothing is saved there: ``save_strategy="no"``).
TRL_DIR = "trl"
#: Precisions: "auto" is bf16 where CUDA supports it, else fp32.
PRECISIONS = ("auto", "fp32", "bf16")
#: TRL loss aggregations accepted here ("grpo": the paper's per-answer mean, as the MLP's loss).
LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")
#: The keys of TRL's log records that ``train_log.jsonl`` keeps, under our names.
LOG_KEYS = {
    "reward": "mean_return",
    "reward_std": "reward_std",
    "kl": "kl",
    "entropy": "entropy",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "completions/mean_length": "mean_answer_tokens",
    "completions/clipped_ratio": "clipped_answer_rate",
    "parse_failure_rate": "parse_failure_rate",
    "mean_steps": "mean_steps",
}


@dataclass
class VLMTrainConfig:
    """Hyper-parameters of VLM planner training (one line each)."""

    group_size: int = 8  #: G, answers sampled per image (TRL's num_generations).
    batch_images: int = 4  #: images per update; each gets a group of G answers.
    updates: int = 100  #: number of policy updates (TRL's max_steps).
    lr: float = 1e-5  #: AdamW learning rate (1e-5 suits full fine-tuning; LoRA takes ~1e-4).
    kl_beta: float = 0.04  #: β, weight of the KL penalty towards the initial model (0: no reference model).
    clip_eps: float = 0.2  #: ε, the ratio is clipped to [1 - ε, 1 + ε].
    loss_type: str = "grpo"  #: TRL's loss aggregation, one of LOSS_TYPES.
    temperature: float = 1.0  #: sampling temperature of the answers during training.
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  #: generation budget of one answer.
    max_steps: int = 5  #: the most tools a plan may call (longer plans are parse failures).
    tool_cost: float = 0.0  #: c, reward subtracted per tool call.
    parse_penalty: float = 1.0  #: reward of an answer that is not a plan, negated (judge units).
    lora_rank: int = 0  #: LoRA rank through peft; 0 trains every weight.
    lora_alpha: int = 32  #: LoRA scaling numerator (scale = alpha / rank).
    lora_dropout: float = 0.05  #: dropout on the LoRA branch.
    precision: str = "auto"  #: one of PRECISIONS (the compute; TRL's bf16 flag is autocast).
    weights_dtype: str = "float32"  #: dtype the weights are loaded and trained in (bfloat16 halves the memory; with LoRA).
    gradient_checkpointing: bool = True  #: trade compute for memory (TRL's default).
    seed: int = 0  #: seeds TRL (sampling, data order, LoRA init).

    def __post_init__(self) -> None:
        for name in ("group_size", "batch_images", "max_new_tokens", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VLMTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"VLMTrainConfig.group_size must be >= 2 for group-relative advantages, got {self.group_size}")
        if self.updates < 0 or self.lora_rank < 0 or self.lora_alpha < 1:
            raise ValueError(f"VLMTrainConfig.updates ({self.updates}) and lora_rank ({self.lora_rank}) must be >= 0, lora_alpha ({self.lora_alpha}) >= 1")
        for name in ("kl_beta", "tool_cost", "parse_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"VLMTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"VLMTrainConfig.lr ({self.lr}) and temperature ({self.temperature}) must be > 0")
        if not 0.0 < self.clip_eps < 1.0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"VLMTrainConfig.clip_eps ({self.clip_eps}) must be in (0, 1), lora_dropout ({self.lora_dropout}) in [0, 1)")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"VLMTrainConfig.loss_type {self.loss_type!r} must be one of {', '.join(LOSS_TYPES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"VLMTrainConfig.precision {self.precision!r} must be one of {', '.join(PRECISIONS)}")
        if self.weights_dtype not in DTYPES:
            raise ValueError(f"VLMTrainConfig.weights_dtype {self.weights_dtype!r} must be one of {', '.join(DTYPES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VLMTrainConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown VLMTrainConfig fields {unknown} (known: {', '.join(cls.__dataclass_fields__)})")
        return cls(**data)


# ------------------------------------------------------------------------------------ reward
def answer_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or a conversation whose assistant turns are joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            else:
                raise TypeError(f"completion message {message!r:.80} has no text content")
        return "".join(parts)
    raise TypeError(f"a completion is a string or a list of messages, got {type(completion).__name__}")


def image_array(image: Any) -> np.ndarray:
    """uint8 RGB H×W×3 of a data set image (a PIL image, as TRL hands them over, or an array)."""
    if isinstance(image, np.ndarray):
        return check_rgb(image, name="training image")
    if hasattr(image, "convert"):
        return check_rgb(np.asarray(image.convert("RGB"), dtype=np.uint8), name="training image")
    raise TypeError(f"a training image is a PIL image or an array, got {type(image).__name__}")


@dataclass
class RewardBatch:
    """The rewards of a batch of answers and what they were made of.

    Attributes:
        rewards: one float per answer: R_i of its plan, or -parse_penalty.
        plans: the parsed plan of each answer, None for a parse failure.
        failures: the :class:`PlanParseError` reason of each failure, None for a plan.
    """

    rewards: list[float]
    plans: list[tuple[str, ...] | None]
    failures: list[str | None]

    @property
    def parse_failure_rate(self) -> float:
        return sum(p is None for p in self.plans) / len(self.plans) if self.plans else 0.0

    @property
    def mean_steps(self) -> float:
        """Mean tool calls of the answers that are plans (NaN when none is)."""
        lengths = [len(p) for p in self.plans if p is not None]
        return float(np.mean(lengths)) if lengths else math.nan


def plan_rewards(
    answers: Sequence[str],
    images: Sequence[np.ndarray],
    tool_names: Sequence[str],
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    judge,
    max_steps: int,
    tool_cost: float,
    parse_penalty: float,
    caches: EnvCaches | None = None,
) -> RewardBatch:
    """R_i for answer i on image i (see the module docstring).

    Args:
        answers: the model's answers as text.
        images: uint8 RGB H×W×3, the start image of each answer.
        tool_names: the names a plan may use.
        tools: name -> callable for each of them (in-process or a server's).
        judge: the reward judge, as for the MLP policy.
        max_steps, tool_cost, parse_penalty: see :class:`VLMTrainConfig`.
        caches: shared tool/score caches (a group's answers share their work).
    """
    if len(answers) != len(images):
        raise ValueError(f"{len(answers)} answers for {len(images)} images")
    plans: list[tuple[str, ...] | None] = []
    failures: list[str | None] = []
    for text in answers:
        try:
            plans.append(parse_plan(text, tool_names, max_steps))
            failures.append(None)
        except PlanParseError as exc:
            plans.append(None)
            failures.append(exc.reason)
    valid = [i for i, p in enumerate(plans) if p is not None]
    outcomes = apply_plans([images[i] for i in valid], [plans[i] for i in valid], tools, judge, tool_cost=tool_cost, caches=caches)
    rewards = [-float(parse_penalty)] * len(answers)
    for i, outcome in zip(valid, outcomes):
        rewards[i] = outcome.ret
    return RewardBatch(rewards=rewards, plans=plans, failures=failures)


class PlanReward:
    """TRL reward function: ``reward(prompts, completions, image, ...) -> one float per completion``.

    TRL passes the data set's other columns by name: ``image`` holds the start image of each
    completion. The batch's parse-failure rate and mean plan length go to TRL's log through
    ``log_metric``.
    """

    __name__ = "plan_reward"  # TRL names the reward's log columns after it

    def __init__(
        self,
        tool_names: Sequence[str],
        tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
        judge,
        max_steps: int,
        tool_cost: float,
        parse_penalty: float,
        caches: EnvCaches | None = None,
    ) -> None:
        self.tool_names = check_tool_names(tool_names)
        missing = [n for n in self.tool_names if n not in tools]
        if missing:
            raise ValueError(f"tools {missing} of the planner are not in the tool set {sorted(tools)}")
        self.tools = tools
        self.judge = judge
        self.max_steps = max_steps
        self.tool_cost = tool_cost
        self.parse_penalty = parse_penalty
        self.caches = caches or EnvCaches()

    def __call__(self, prompts, completions, image=None, log_metric: Callable[[str, float], None] | None = None, **kwargs) -> list[float]:
        if image is None:
            raise ValueError("the reward needs the data set's 'image' column (the start image of each completion)")
        batch = plan_rewards(
            [answer_text(c) for c in completions],
            [image_array(im) for im in image],
            self.tool_names,
            self.tools,
            self.judge,
            self.max_steps,
            self.tool_cost,
            self.parse_penalty,
            self.caches,
        )
        if log_metric is not None:
            log_metric("parse_failure_rate", batch.parse_failure_rate)
            if not math.isnan(batch.mean_steps):
                log_metric("mean_steps", batch.mean_steps)
        return batch.rewards


# ------------------------------------------------------------------------------------ training
@dataclass
class VLMTrainResult:
    """What :func:`train_vlm` returns (the fields :class:`~restore_r1.agent.trainer.TrainResult` has)."""

    planner: VLMPlanner
    out_dir: Path
    policy_dir: Path
    log_path: Path
    updates: int
    resumed_from: int | None = None
    records: list[dict] = field(default_factory=list)


def training_dataset(images: Sequence[np.ndarray], prompt: str):
    """The ``datasets.Dataset`` TRL reads: a ``prompt`` conversation and the ``image`` of each row."""
    from datasets import Dataset

    from restore_r1.agent.vlm import to_pil

    return Dataset.from_dict({"prompt": [prompt_messages(prompt) for _ in images], "image": [to_pil(im) for im in images]})


def resolve_precision(precision: str) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (``"auto"``: bf16 where CUDA supports it)."""
    import torch

    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    elif precision in ("fp32", "bf16"):
        return precision
    else:
        raise ValueError(f"precision {precision!r} must be one of {', '.join(PRECISIONS)}")


def _trl_config(config: VLMTrainConfig, out_dir: Path, n_images: int, progress: bool):
    import torch
    from trl import GRPOConfig

    per_update = min(config.batch_images, n_images)
    return GRPOConfig(
        output_dir=str(out_dir / TRL_DIR),
        num_generations=config.group_size,
        per_device_train_batch_size=per_update * config.group_size,
        gradient_accumulation_steps=1,
        max_steps=config.updates,
        learning_rate=config.lr,
        beta=config.kl_beta,
        epsilon=config.clip_eps,
        loss_type=config.loss_type,
        temperature=config.temperature,
        max_completion_length=config.max_new_tokens,
        bf16=resolve_precision(config.precision) == "bf16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=config.gradient_checkpointing,
        seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        log_completions=False,
    )


def _log_callback(log_path: Path, records: list[dict]):
    """A TrainerCallback appending one line per update to ``train_log.jsonl`` (wall time included)."""
    from transformers import TrainerCallback

    class _Log(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # the end-of-training summary
                return
            record = {"update": int(state.global_step)}
            record.update({ours: _number(logs[theirs]) for theirs, ours in LOG_KEYS.items() if theirs in logs})
            record["seconds"] = time.perf_counter() - self.started
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            records.append(record)

    return _Log()


def _number(value: Any) -> float | None:
    value = float(value) if value is not None else None
    return value if value is not None and math.isfinite(value) else None


def train_vlm(
    images: Sequence[np.ndarray] | str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | os.PathLike | None,
    judge,
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    config: VLMTrainConfig,
    progress: bool = True,
) -> VLMTrainResult:
    """Trains a VLM planner with TRL's GRPOTrainer against ``judge``.

    Args:
        images: uint8 RGB H×W×3 training images, or a data set folder (its ``lq`` images only).
        out_dir: run folder: ``train_log.jsonl`` and the final planner ``policy/`` (an old log is replaced).
        model: the base model: a local transformers VLM folder or a registry URI (None:
            ``$RESTORE_R1_VLM_MODEL``). Never downloaded; missing is an error naming the path.
        judge: reward model (``.name``, ``.score`` or ``.score_relative``), higher is better.
        tools: name -> callable ``uint8 RGB -> uint8 RGB``; the dict order is the prompt's order.
        config: hyper-parameters.
        progress: show TRL's progress bar.

    Returns:
        a :class:`VLMTrainResult`.
    """
    from trl import GRPOTrainer

    from restore_r1.agent.trainer import load_lq_images

    base = resolve_vlm_model(model)  # first: a missing model fails before any data is read
    if isinstance(images, (str, os.PathLike)):
        images = load_lq_images(images)
    images = [check_rgb(im, name=f"training image {i}") for i, im in enumerate(images)]
    if not images:
        raise ValueError("train_vlm: no training images")
    if not tools:
        raise ValueError("train_vlm: no tools")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_FILE
    log_path.unlink(missing_ok=True)
    planner_config = VLMPlannerConfig(
        tool_names=list(tools),
        max_steps=config.max_steps,
        max_new_tokens=config.max_new_tokens,
        base_model=str(model) if model else str(base),
        extra={"judge": getattr(judge, "name", type(judge).__name__), "trainer": "trl.GRPOTrainer", "vlm_grpo": config.to_dict()},
    )
    base_model, processor = load_vlm_model(base, dtype=config.weights_dtype, device="cpu")  # TRL moves it to the GPU
    processor.tokenizer.padding_side = "left"  # what GRPOTrainer requires (and sets when it loads a processor itself)
    reward = PlanReward(planner_config.tool_names, tools, judge, config.max_steps, config.tool_cost, config.parse_penalty)
    peft_config = None
    if config.lora_rank:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules="all-linear")
    records: list[dict] = []
    trainer = GRPOTrainer(
        model=base_model,
        reward_funcs=reward,
        args=_trl_config(config, out_dir, len(images), progress),
        train_dataset=training_dataset(images, planner_config.prompt),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[_log_callback(log_path, records)],
    )
    if not progress:  # with tqdm off, transformers prints every log record instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if config.updates:
        trainer.train()
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()
    planner = VLMPlanner(trained.to("cpu"), processor, planner_config)  # saved in weights_dtype
    policy_dir = save_vlm_planner(planner, out_dir / POLICY_DIR)
    planner.folder = policy_dir
    if not log_path.exists():
        atomic_write_bytes(log_path, b"")
    return VLMTrainResult(planner=planner, out_dir=out_dir, policy_dir=policy_dir, log_path=log_path, updates=config.updates, records=records)
