"""Agent metrics of the Triton deployment: names, kinds, labels and buckets in one table.

How they are exported: the agent model (``restore_r1_agent``, a python-backend BLS model) creates
them with Triton's python-backend custom metrics API (``pb_utils.MetricFamily``, counters and
histograms, available in Triton 2.51), so they appear on **Triton's own metrics endpoint**
(``:8002/metrics``) beside Triton's ``nv_inference_*`` / ``nv_gpu_*`` families. No second HTTP
server is started. Each histogram is exposed as ``<name>_bucket{le=...}``, ``<name>_sum`` and
``<name>_count`` (Prometheus text format).

Dashboards and alerts are written against the constants below; renaming one is a breaking change.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Prefix of every agent metric.
PREFIX = "restore_r1_"

#: Counter: restore requests the agent received (label ``outcome``: ``ok`` | ``partial`` | ``error``).
REQUESTS_TOTAL = "restore_r1_agent_requests_total"
#: Counter: successful tool calls the agent made (label ``tool``: the tool name); failed calls are in ERRORS_TOTAL.
TOOL_CALLS_TOTAL = "restore_r1_agent_tool_calls_total"
#: Histogram: tool calls per request (no labels).
STEPS = "restore_r1_agent_steps"
#: Histogram: judge score of the result minus that of the input, 1–5 scale (no labels).
JUDGE_GAIN = "restore_r1_agent_judge_gain"
#: Histogram: seconds of one agent step, by tool (``tool``: a tool name or ``STOP``); a step is
#: encoder + policy + tool model call + judge.
STEP_LATENCY_SECONDS = "restore_r1_agent_step_latency_seconds"
#: Histogram: seconds of a whole request inside the agent (no labels).
REQUEST_LATENCY_SECONDS = "restore_r1_agent_request_latency_seconds"
#: Counter: failed requests and partial answers by reason (``reason``: one of :data:`ERROR_REASONS`),
#: one per failed episode; ``REQUESTS_TOTAL``'s outcome tells the two apart.
ERRORS_TOTAL = "restore_r1_agent_errors_total"

#: Values of the ``reason`` label of :data:`ERRORS_TOTAL`.
ERROR_INVALID_INPUT = "invalid_input"  # wrong dtype/shape, empty or oversized image
ERROR_TOOL_FAILED = "tool_failed"  # a tool model answered with an error or a bad image, or is not loaded
ERROR_TOOL_TIMEOUT = "tool_timeout"  # a tool model did not answer within the step timeout
ERROR_POLICY_FAILED = "policy_failed"  # the policy model answered with an error or not in time
ERROR_INTERNAL = "internal"  # anything else (a bug): see the server log
ERROR_REASONS = (ERROR_INVALID_INPUT, ERROR_TOOL_FAILED, ERROR_TOOL_TIMEOUT, ERROR_POLICY_FAILED, ERROR_INTERNAL)

#: Values of the ``outcome`` label of :data:`REQUESTS_TOTAL`.
OUTCOME_OK = "ok"
OUTCOME_PARTIAL = "partial"  # a tool or the policy failed after some steps: the best image so far, flagged
OUTCOME_ERROR = "error"
OUTCOMES = (OUTCOME_OK, OUTCOME_PARTIAL, OUTCOME_ERROR)

#: Histogram buckets. Steps: 0..max tool calls (policies default to 5).
STEPS_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0)
#: Judge gain on the 1–5 scale.
JUDGE_GAIN_BUCKETS = (-1.0, -0.5, -0.25, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
#: Seconds (embedded tools take 5 ms – 2 s on one CPU core at 512², see bench/results/tools.md).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COUNTER = "counter"
HISTOGRAM = "histogram"


@dataclass(frozen=True)
class MetricSpec:
    """One agent metric.

    Attributes:
        name: the exported family name.
        kind: :data:`COUNTER` or :data:`HISTOGRAM`.
        description: the HELP text.
        labels: label names (values are set per observation).
        buckets: histogram upper bounds (empty for counters).
    """

    name: str
    kind: str
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


#: Every agent metric, in export order.
AGENT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(REQUESTS_TOTAL, COUNTER, "Restore requests received by the agent, by outcome", ("outcome",)),
    MetricSpec(TOOL_CALLS_TOTAL, COUNTER, "Tool calls made by the agent, by tool", ("tool",)),
    MetricSpec(STEPS, HISTOGRAM, "Tool calls per restore request", (), STEPS_BUCKETS),
    MetricSpec(JUDGE_GAIN, HISTOGRAM, "Judge score of the result minus that of the input (1-5 scale)", (), JUDGE_GAIN_BUCKETS),
    MetricSpec(STEP_LATENCY_SECONDS, HISTOGRAM, "Seconds per agent step (encoder, policy, tool, judge), by tool", ("tool",), LATENCY_BUCKETS),
    MetricSpec(REQUEST_LATENCY_SECONDS, HISTOGRAM, "Seconds per restore request inside the agent", (), LATENCY_BUCKETS),
    MetricSpec(ERRORS_TOTAL, COUNTER, "Failed or partial restore requests, by reason", ("reason",)),
)

#: Series exported at 0 from the agent's start, for the labels whose values are known up front. A
#: counter series that first appears already at N shows no increase to Prometheus' rate(): a burst
#: of failures between two scrapes would be invisible to the dashboard and the alerts (seen with a
#: real Prometheus in tests/test_prometheus_live.py).
INITIAL_SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    REQUESTS_TOTAL: ("outcome", OUTCOMES),
    ERRORS_TOTAL: ("reason", ERROR_REASONS),
}
