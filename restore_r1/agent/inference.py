"""Deterministic inference: load a trained policy with its encoder, tools and judge, restore images.

Where a policy comes from, in order: an explicit path (``--policy``), ``$RESTORE_R1_POLICY``, the
default policy shipped inside the package (``restore_r1/data/default_policy``). ``registry://``
and ``s3://`` URIs are resolved by :func:`restore_r1.registry.local_policy`, a layer up.

A policy folder is one of two planner kinds (:data:`PLANNER_KINDS`, told apart by
:func:`planner_kind`): ``mlp``, the MLP policy over encoder features that decides one step at a
time (``policy.json``, :class:`Agent`), or ``vlm``, a vision-language model that writes the whole
plan from the input image (``planner.json``, :class:`VLMAgent`). :func:`load_agent` loads either.

The policy's tools must all be available here (a missing one is an error naming it). Tools that
are available but unknown to the policy (e.g. a paper tool whose weights were added after
training) are simply not used: the policy can only pick tools it was trained with.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.errors import WeightsNotFoundError
from restore_r1.weights import REGISTRY_SCHEMES

#: The default policy shipped inside the package (trained by ``make default-policy``).
DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "data" / "default_policy"
#: Environment variable naming a policy folder or registry URI.
POLICY_ENV = "RESTORE_R1_POLICY"
#: The planner kinds a policy folder can hold (docs/vlm.md).
PLANNER_KINDS = ("mlp", "vlm")


def resolve_policy(spec: str | os.PathLike | None = None) -> Path:
    """The local policy folder for ``spec``, ``$RESTORE_R1_POLICY`` or the default.

    Registry URIs are resolved a layer up, by :func:`restore_r1.registry.local_policy` (the
    command line, the evaluation, the demo and the pipeline call it): the agent layer never
    imports the registry.

    Raises:
        WeightsNotFoundError: the folder does not exist, or ``spec`` is a registry URI; the
            message says how to supply one.
    """
    raw = str(spec) if spec is not None else os.environ.get(POLICY_ENV)
    if raw and raw.startswith(REGISTRY_SCHEMES):
        raise WeightsNotFoundError(f"policy {raw} is a registry URI: resolve it with restore_r1.registry.local_policy first (restore-r1 commands do)")
    path = Path(raw).expanduser() if raw else DEFAULT_POLICY_DIR
    if not path.is_dir():
        origin = "--policy" if spec is not None else (f"${POLICY_ENV}" if raw else "the packaged default")
        raise WeightsNotFoundError(f"policy folder {path} ({origin}) not found; train one with `restore-r1 train` and pass --policy DIR, or set ${POLICY_ENV}")
    return path


def planner_kind(folder: str | os.PathLike) -> str:
    """``"mlp"`` for a folder holding ``policy.json``, ``"vlm"`` for one holding ``planner.json``.

    Raises:
        WeightsNotFoundError: neither file is there; the message names the folder.
    """
    from restore_r1.agent.policy import CONFIG_FILE
    from restore_r1.agent.vlm import PLANNER_FILE

    folder = Path(folder)
    if (folder / CONFIG_FILE).is_file():
        return "mlp"
    if (folder / PLANNER_FILE).is_file():
        return "vlm"
    raise WeightsNotFoundError(
        f"policy folder {folder} holds neither {CONFIG_FILE} (an MLP policy) nor {PLANNER_FILE} (a VLM planner); "
        "pass the <out>/policy folder that `restore-r1 train` writes"
    )


def load_agent(policy: str | os.PathLike | None = None, judge: str | object = "default", max_steps: int | None = None, device: str = "cpu"):
    """The agent of a local policy folder of either planner kind (see :func:`resolve_policy`; a
    registry URI goes through :func:`restore_r1.registry.local_policy` first).

    Args:
        policy: a local folder; None for ``$RESTORE_R1_POLICY`` or the shipped (MLP) default.
        judge: judge name or object; it reports the scores (and is the MLP's reward at training).
        max_steps: cap on tool calls per image; None keeps the planner's own.
        device: where a VLM planner runs (``"cpu"`` or ``"cuda[:N]"``); the MLP runs on CPU.

    Returns:
        an :class:`Agent` (``mlp``) or a :class:`VLMAgent` (``vlm``).
    """
    folder = resolve_policy(policy)
    kind = planner_kind(folder)
    if kind == "mlp":
        return Agent.load(folder, judge=judge, max_steps=max_steps)
    elif kind == "vlm":
        return VLMAgent.load(folder, judge=judge, max_steps=max_steps, device=device)
    else:
        raise ValueError(f"unknown planner kind {kind!r}; expected one of {PLANNER_KINDS}")


def available_tool_map(names: list[str] | None = None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """name -> tool for ``names`` (default: every available tool, catalogue order).

    Raises:
        ValueError: a named tool is unavailable here; the message gives each reason.
    """
    from restore_r1.tools import get_tool, list_tools

    if names is None:
        return {t.name: t for t in list_tools(available_only=True)}
    tools, missing = {}, []
    for name in names:
        tool = get_tool(name)
        ok, reason = tool.availability()
        if ok:
            tools[name] = tool
        else:
            missing.append(f"{name} ({reason})")
    if missing:
        raise ValueError(f"the policy needs tools that are unavailable here: {'; '.join(missing)}")
    return tools


@dataclass
class RestoreResult:
    """One restored image.

    Attributes:
        image: uint8 RGB H×W×3.
        tools: tool names in the order applied.
        scores: judge score of the input and after each tool (len(tools) + 1 values).
        seconds: wall-clock time of the whole episode (encoder, policy, tools, judge).
        partial: a served agent cut the episode short (a tool or the policy failed after a
            successful step); ``image`` is then the best-scoring image so far. Always False
            in-process, where a failing tool raises.
        failed: for a partial result, the failed step as the server reported it (``step``,
            ``tool``, ``model``, ``reason``, ``message``: see
            :class:`restore_r1.serving.backend.StepFailure`); None otherwise.
        policy_version: the served policy model version that made the last decision (the
            Triton model version, e.g. ``"2"``); None in-process.
        timings: where ``seconds`` went, in-process: ``encoder``, ``policy``, ``judge`` and
            ``tool:NAME`` seconds (see :func:`restore_r1.agent.env.rollout_many`); empty when served.
    """

    image: np.ndarray
    tools: list[str]
    scores: list[float]
    seconds: float
    partial: bool = False
    failed: dict[str, Any] | None = None
    policy_version: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Agent:
    """A loaded policy with everything it needs to run."""

    policy: object
    encoder: object
    judge: object
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]]
    policy_dir: Path | None = None
    max_steps: int | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, policy: str | os.PathLike | None = None, judge: str | object = "default", max_steps: int | None = None) -> Agent:
        """Loads a policy folder (see :func:`resolve_policy`) with its encoder, tools and a judge.

        Args:
            policy: a local folder; None for ``$RESTORE_R1_POLICY`` or the default.
            judge: judge name (``restore_r1.judges``) or a judge object.
            max_steps: cap on tool calls per image; None keeps the policy's own.
        """
        from restore_r1.agent.policy import load_policy
        from restore_r1.encoders import create_encoder
        from restore_r1.judges import create_judge

        folder = resolve_policy(policy)
        if planner_kind(folder) != "mlp":
            raise ValueError(f"{folder} holds a VLM planner, not an MLP policy; load it with restore_r1.agent.inference.load_agent")
        pol = load_policy(folder)
        tools = available_tool_map(list(pol.config.tool_names))
        if max_steps is not None and not 0 <= max_steps <= pol.config.max_steps:
            raise ValueError(f"max_steps {max_steps} must be between 0 and the policy's {pol.config.max_steps}")
        config = dict(pol.config.encoder_config)
        name = config.pop("name", pol.config.encoder_name)
        encoder = create_encoder(name, **config)
        judge_obj = create_judge(judge) if isinstance(judge, str) else judge
        return cls(policy=pol, encoder=encoder, judge=judge_obj, tools=tools, policy_dir=folder, max_steps=max_steps)

    def restore(self, img: np.ndarray, progress: bool = False, desc: str = "restore") -> RestoreResult:
        """Runs one deterministic (argmax) episode on a uint8 RGB H×W×3 image; ``progress`` shows
        a bar of its steps (on stderr, named ``desc``)."""
        from tqdm.auto import tqdm

        from restore_r1.agent.env import rollout

        timings: dict[str, float] = {}
        limit = self.policy.config.max_steps if self.max_steps is None else self.max_steps
        with tqdm(total=limit, desc=desc, unit="step", disable=not progress, leave=False) as bar:

            def step(name: str) -> None:
                bar.set_postfix_str(name)
                bar.update(1)

            start = time.perf_counter()
            traj = rollout(self.policy, self.encoder, img, self.tools, self.judge, greedy=True, max_steps=self.max_steps, timings=timings, on_step=step)
            seconds = time.perf_counter() - start
        scores = [float(s) for s in traj.scores[: traj.steps + 1]]
        return RestoreResult(image=traj.final_image, tools=traj.tools_called, scores=scores, seconds=seconds, timings=timings)


@dataclass
class VLMAgent:
    """A loaded VLM planner with its tools and a judge (the judge only reports scores here)."""

    planner: object
    judge: object
    tools: Mapping[str, Callable[[np.ndarray], np.ndarray]]
    policy_dir: Path | None = None
    max_steps: int | None = None

    @classmethod
    def load(cls, folder: str | os.PathLike, judge: str | object = "default", max_steps: int | None = None, device: str = "cpu") -> VLMAgent:
        """Loads a planner folder (checksums verified) with its tools and a judge.

        Raises:
            WeightsNotFoundError / ChecksumError: the folder is incomplete or corrupt.
            ValueError: a tool of the planner is unavailable here, or ``max_steps`` is out of range.
        """
        from restore_r1.agent.vlm import load_vlm_planner, read_vlm_planner_config
        from restore_r1.judges import create_judge

        folder = Path(folder)
        config = read_vlm_planner_config(folder)
        tools = available_tool_map(list(config.tool_names))
        if max_steps is not None and not 0 <= max_steps <= config.max_steps:
            raise ValueError(f"max_steps {max_steps} must be between 0 and the planner's {config.max_steps}")
        planner = load_vlm_planner(folder, available_tools=list(tools), device=device)
        judge_obj = create_judge(judge) if isinstance(judge, str) else judge
        return cls(planner=planner, judge=judge_obj, tools=tools, policy_dir=folder, max_steps=max_steps)

    def restore(self, img: np.ndarray) -> RestoreResult:
        """Plans once from ``img`` (greedy), applies the plan's first ``max_steps`` tools, scores each step.

        Raises:
            PlanParseError: the model's answer is not a plan (never replaced by a default plan).
        """
        from restore_r1.agent.env import apply_plans

        start = time.perf_counter()
        plan = self.planner.plan(img)
        if self.max_steps is not None:
            plan = plan[: self.max_steps]
        outcome = apply_plans([img], [plan], self.tools, self.judge)[0]
        seconds = time.perf_counter() - start
        return RestoreResult(image=outcome.final_image, tools=outcome.tools, scores=[float(s) for s in outcome.scores], seconds=seconds)
