"""The promotion gate: register a new policy only if it beats production on the same evaluation.

"The same evaluation" means the same held-out inputs and scoring: the settings in
:data:`SAME_EVALUATION_KEYS`. If the production version recorded an evaluation with exactly those
settings, its recorded metric is used; otherwise the production policy is evaluated again on the
candidate's settings (a ``reevaluate`` callable does that), so the two numbers always compare
like with like. With no production version the gate passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: Evaluation settings that must agree for two metric values to be compared.
SAME_EVALUATION_KEYS = ("cases", "per_case", "seed", "crop", "images", "judge", "metrics")
#: Key under which a registered version keeps the settings of the evaluation behind its metrics.
EVALUATION_PARAM = "evaluation"


@dataclass
class GateDecision:
    """Whether the candidate may be registered, and why.

    Attributes:
        passed: register it.
        reason: one sentence for the run's log and report.
        metric: the compared key metric (e.g. ``policy_psnr``).
        candidate: the new policy's value.
        incumbent: production's value on the same evaluation (None without production).
        incumbent_version: production's version number (None without production).
        reevaluated: production's value was measured in this run (its recorded evaluation differed).
    """

    passed: bool
    reason: str
    metric: str
    candidate: float | None
    incumbent: float | None = None
    incumbent_version: int | None = None
    reevaluated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        verdict = "PASSED: the policy will be registered" if self.passed else "NOT PASSED: the policy is not registered"
        lines = [
            "# Promotion gate",
            "",
            f"**{verdict}.**",
            "",
            self.reason,
            "",
            "| | value |",
            "|---|---|",
            f"| metric | `{self.metric}` |",
            f"| candidate | {_num(self.candidate)} |",
        ]
        if self.incumbent_version is not None:
            how = "re-evaluated in this run" if self.reevaluated else "recorded with the same evaluation"
            lines.append(f"| production (v{self.incumbent_version}, {how}) | {_num(self.incumbent)} |")
        return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def evaluation_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The part of an evaluation config (``results["config"]``) that defines "the same evaluation"."""
    return {k: config.get(k) for k in SAME_EVALUATION_KEYS}


def lower_is_better(metric_key: str) -> bool:
    """Direction of a key metric ``METHOD_METRIC`` from the metrics catalogue (``seconds``/``tool_calls``: lower)."""
    from restore_r1.metrics import METRICS

    metric = metric_key.split("_", 1)[1] if "_" in metric_key else metric_key
    if metric in ("seconds", "tool_calls"):
        return True
    return METRICS.get(metric).lower_better


def decide(
    metric: str, candidate: float | None, incumbent: float | None, incumbent_version: int | None, min_delta: float = 0.0, reevaluated: bool = False
) -> GateDecision:
    """Pure decision: pass without an incumbent, else only if the candidate is better by more than ``min_delta``.

    Raises:
        ValueError: the candidate has no value for ``metric``, or ``min_delta`` < 0.
    """
    if min_delta < 0:
        raise ValueError(f"min_delta {min_delta} must be >= 0")
    if candidate is None:
        raise ValueError(f"the candidate's evaluation has no value for {metric!r}; evaluate with that metric or gate on another")
    if incumbent_version is None:
        return GateDecision(True, f"No production version yet: the candidate ({metric} = {candidate:.4f}) is registered.", metric, candidate)
    if incumbent is None:
        return GateDecision(
            True, f"Production v{incumbent_version} has no {metric}; the candidate is registered.", metric, candidate, None, incumbent_version, reevaluated
        )
    lower = lower_is_better(metric)
    gain = (incumbent - candidate) if lower else (candidate - incumbent)
    better = "lower" if lower else "higher"
    passed = gain > min_delta
    verb = "beats" if passed else "does not beat"
    reason = (
        f"The candidate {verb} production v{incumbent_version} on {metric} ({better} is better): {candidate:.4f} vs "
        f"{incumbent:.4f}, margin {gain:+.4f} (required > {min_delta:g})."
    )
    return GateDecision(passed, reason, metric, candidate, incumbent, incumbent_version, reevaluated)


def gate(
    results: dict[str, Any],
    registry,
    name: str,
    metric: str = "policy_psnr",
    min_delta: float = 0.0,
    reevaluate: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
) -> GateDecision:
    """Compares the candidate's evaluation ``results`` with ``name``'s production version in ``registry``.

    Args:
        results: the candidate's ``results.json``.
        registry: a :class:`restore_r1.registry.Registry`.
        metric: key metric (:func:`restore_r1.pipeline.report.key_metrics`) to compare.
        reevaluate: ``(production ModelVersion, candidate eval config) -> results`` for a production
            version whose recorded evaluation differs; None makes such a case fail the gate.
    """
    from restore_r1.pipeline.report import key_metrics
    from restore_r1.registry import VersionNotFoundError

    candidate = key_metrics(results).get(metric)
    try:
        production = registry.get(name, "production")
    except VersionNotFoundError:
        return decide(metric, candidate, None, None, min_delta)
    wanted = evaluation_settings(results.get("config", {}))
    if production.parameters.get(EVALUATION_PARAM) == wanted and metric in production.metrics:
        return decide(metric, candidate, production.metrics[metric], production.version, min_delta)
    if reevaluate is None:
        return GateDecision(
            False,
            f"Production v{production.version} was evaluated with other settings and no re-evaluation was allowed; not registering.",
            metric,
            candidate,
            None,
            production.version,
        )
    again = key_metrics(reevaluate(production, results.get("config", {}))).get(metric)
    return decide(metric, candidate, again, production.version, min_delta, reevaluated=True)
