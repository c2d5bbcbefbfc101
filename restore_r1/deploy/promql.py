"""Metric names used by the dashboard and the alerts, checked against what is really exported.

Every PromQL expression of the dashboard and of the PrometheusRule is parsed (``promql-parser``)
and its metric names are collected. A name passes when a live scrape of Triton's ``/metrics``
(with the agent model loaded) exports it, or when it is on one of two explicit allow-lists:

- :data:`GPU_ONLY_METRICS`: Triton's DCGM GPU metrics, absent from a CPU-only scrape;
- :data:`PLATFORM_METRICS`: series produced by the monitoring stack itself, not by our server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

TRITON_METRICS_DOC = "https://github.com/triton-inference-server/server/blob/main/docs/user_guide/metrics.md#gpu-metrics"

#: Triton's GPU metrics (collected through DCGM, switched off by --allow-gpu-metrics=false and
#: never exported by a server without a GPU). Source: TRITON_METRICS_DOC, table "GPU Metrics".
GPU_ONLY_METRICS: Mapping[str, str] = {
    "nv_gpu_utilization": f"{TRITON_METRICS_DOC} (GPU Utilization, 0.0-1.0, per GPU)",
    "nv_gpu_memory_total_bytes": f"{TRITON_METRICS_DOC} (GPU Total Memory, bytes, per GPU)",
    "nv_gpu_memory_used_bytes": f"{TRITON_METRICS_DOC} (GPU Used Memory, bytes, per GPU)",
    "nv_gpu_power_usage": f"{TRITON_METRICS_DOC} (Power Usage, watts, per GPU)",
    "nv_gpu_power_limit": f"{TRITON_METRICS_DOC} (Power Limit, watts, per GPU)",
    "nv_energy_consumption": f"{TRITON_METRICS_DOC} (Energy Consumption, joules, per GPU)",
}

#: Series our server does not export but the monitoring stack does (kube-prometheus-stack ships
#: kube-state-metrics). Used by the "no ready replica" alert only.
PLATFORM_METRICS: Mapping[str, str] = {
    "kube_deployment_status_replicas_available": ("https://github.com/kubernetes/kube-state-metrics/blob/main/docs/metrics/workload/deployment-metrics.md"),
}

#: Triton's per-model metrics as documented (TRITON_METRICS_DOC, "Inference Request Metrics";
#: pending count: "Pending Request Count", Triton >= 23.x). The offline check uses them; the live
#: scrape test is the authority.
TRITON_MODEL_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
    }
)
#: Sample suffixes of a Prometheus histogram family.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def agent_metric_names() -> set[str]:
    """Sample names the agent model exports (restore_r1.serving.metrics), histograms expanded."""
    from restore_r1.serving import metrics as agent

    names: set[str] = set()
    for spec in agent.AGENT_METRICS:
        names.add(spec.name)
        if spec.kind == agent.HISTOGRAM:
            names.update(spec.name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def documented_names() -> set[str]:
    """Names our server exports by the documentation: Triton's per-model metrics + the agent's."""
    return set(TRITON_MODEL_METRICS) | agent_metric_names()


#: Grafana's built-in interval variables, replaced by a duration before parsing (the parser only
#: accepts durations inside ``[...]``). Other ``$variables`` only occur inside label strings.
GRAFANA_DURATION_VARIABLES = ("$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}", "$__range", "${__range}")
GRAFANA_DURATION_STANDIN = "5m"

#: Grafana's ``label_values(<selector>, <label>)`` variable query.
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)\s*$")
#: A sample line of the Prometheus text format: the metric name is everything before ``{`` or
#: the first blank.
_SAMPLE_NAME = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)")


class PromQLError(ValueError):
    """An expression does not parse or names no metric."""

    def __init__(self, expr: str, reason: str):
        super().__init__(f"PromQL {expr!r}: {reason}")
        self.expr = expr


def expand_grafana_variables(expr: str) -> str:
    """Replace Grafana's interval variables by :data:`GRAFANA_DURATION_STANDIN`."""
    for name in GRAFANA_DURATION_VARIABLES:
        expr = expr.replace(name, GRAFANA_DURATION_STANDIN)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects.

    Args:
        expr: PromQL, possibly with Grafana variables.

    Returns:
        The set of names (``foo`` in ``foo{...}`` and ``{__name__="foo"}``).

    Raises:
        PromQLError: if the expression does not parse, or selects a series without a fixed name.
    """
    import promql_parser

    text = expand_grafana_variables(expr)
    try:
        tree = promql_parser.parse(text)
    except ValueError as exc:
        raise PromQLError(expr, f"does not parse: {exc}") from exc
    names: set[str] = set()
    unnamed: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
                return
            fixed = [m.value for m in node.matchers.matchers if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal]
            if fixed:
                names.update(fixed)
            else:
                unnamed.append(str(node))

    promql_parser.walk(tree, visit)
    if unnamed:
        raise PromQLError(expr, f"selector without a fixed metric name: {unnamed[0]}")
    return names


def variable_query_expr(query: str) -> str:
    """The PromQL inside a Grafana variable query (``label_values(sel, label)`` -> ``sel``)."""
    match = _LABEL_VALUES.match(query)
    return match["selector"] if match else query


def dashboard_expressions(dashboard: Mapping) -> list[str]:
    """Every PromQL expression of a Grafana dashboard: panel targets and query variables."""
    exprs: list[str] = []

    def panels(items: Iterable[Mapping]) -> Iterable[Mapping]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, Mapping) else query
            exprs.append(variable_query_expr(query))
    return exprs


def rule_expressions(rule_groups: Iterable[Mapping]) -> dict[str, str]:
    """``{alert or record name: expr}`` of Prometheus rule groups (the ``groups`` list)."""
    return {rule.get("alert") or rule["record"]: rule["expr"] for group in rule_groups for rule in group["rules"]}


def exported_names(exposition: str) -> set[str]:
    """Metric names in a Prometheus text-format scrape: every sample name and every family.

    A histogram family ``h`` contributes ``h`` (from ``# TYPE``) and ``h_bucket``/``h_sum``/
    ``h_count`` (from its samples).
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            parts = line.split()
            if len(parts) >= 3:
                names.add(parts[2])
        elif line and not line.startswith("#"):
            match = _SAMPLE_NAME.match(line)
            if match:
                names.add(match["name"])
    return names


def unknown_names(used: Iterable[str], exported: Iterable[str], *, gpu_exported: bool = False) -> set[str]:
    """Names used but neither exported nor allow-listed.

    Args:
        used: metric names from expressions.
        exported: names of a live scrape.
        gpu_exported: True when the scrape came from a GPU server (then GPU names must be in it
            and the GPU allow-list is not applied).
    """
    allowed = set(exported) | set(PLATFORM_METRICS)
    if not gpu_exported:
        allowed |= set(GPU_ONLY_METRICS)
    return set(used) - allowed
