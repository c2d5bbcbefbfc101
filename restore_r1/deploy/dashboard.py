"""The Grafana dashboards of Restore-R1, each generated from one table of panels.

Two boards, one generator: "Restore-R1 serving" (:data:`SERVING`: Triton, GPUs, the agent) and
"Restore-R1 training" (:data:`TRAINING`: the live metrics of a GRPO run,
restore_r1.agent.train_metrics). The chart ships the generated JSON
(``charts/restore-r1/dashboards/restore-r1.json`` and ``restore-r1-training.json``) in a ConfigMap
labelled for the kube-prometheus-stack Grafana sidecar. Regenerate them after editing a table::

    python -m restore_r1.deploy.dashboard charts/restore-r1/dashboards/restore-r1.json
    python -m restore_r1.deploy.dashboard --training charts/restore-r1/dashboards/restore-r1-training.json

A test checks that each committed file equals :func:`build_dashboard`'s output.

Every serving query uses the ``$datasource`` variable (a Prometheus data source picked in Grafana),
the ``$job`` variable (the metrics Service of a release) and, for per-model panels, ``$model``.
Triton's latency counters are cumulative microseconds (Triton docs, user_guide/metrics.md), so
averages are ``rate(<duration>) / rate(<count>)``. Every training query uses ``$datasource``,
``$job`` (the PodMonitor's or the Pushgateway's job) and ``$run`` (the run label).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from restore_r1.agent import train_metrics as tm
from restore_r1.serving import metrics as agent

#: Dashboard identity: a stable uid keeps links and the sidecar's provisioning idempotent.
DASHBOARD_UID = "restore-r1-serving"
DASHBOARD_TITLE = "Restore-R1 serving"
TRAINING_UID = "restore-r1-training"
TRAINING_TITLE = "Restore-R1 training"
#: Grafana dashboard JSON schema version the layout follows: that of the Grafana release whose
#: ``@grafana/schema`` the dashboard is type-checked against (tools/grafana-schema/package.json,
#: ``defaultDashboard.schemaVersion``; restore_r1.deploy.grafana_schema).
SCHEMA_VERSION = 42
#: Panel grid: Grafana rows are 24 units wide.
GRID_WIDTH = 24
PANEL_HEIGHT = 8
PANELS_PER_ROW = 3

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job=~"$job"'
JOB_MODEL = 'job=~"$job", model=~"$model"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Target:
    """One query of a panel.

    Attributes:
        expr: PromQL (Grafana variables allowed).
        legend: legend format, e.g. ``{{model}}``.
    """

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One time-series panel.

    Attributes:
        title: panel title.
        unit: Grafana unit id (``percentunit``, ``bytes``, ``watt``, ``ms``, ``reqps``, ``s``...).
        targets: its queries.
        description: hover text.
    """

    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""


def _avg(duration: str, count: str, sel: str, by: str, scale: str = "") -> str:
    """``sum by (by) rate(duration) / sum by (by) rate(count)``, optionally scaled."""
    ratio = f"sum by ({by}) (rate({duration}{{{sel}}}[{RATE}])) / sum by ({by}) (rate({count}{{{sel}}}[{RATE}]))"
    return f"({ratio}){scale}"


def _quantile(q: float, histogram: str, by: str = "") -> str:
    """``histogram_quantile`` of an agent histogram, optionally split by a label."""
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket{{{JOB}}}[{RATE}])))"


def _hist_avg(histogram: str) -> str:
    return f"sum(rate({histogram}_sum{{{JOB}}}[{RATE}])) / sum(rate({histogram}_count{{{JOB}}}[{RATE}]))"


def _outcome_share(outcome: str) -> str:
    """Share (0-1) of agent requests with ``outcome`` among all agent requests."""
    return f'sum(rate({agent.REQUESTS_TOTAL}{{{JOB}, outcome="{outcome}"}}[{RATE}])) / sum(rate({agent.REQUESTS_TOTAL}{{{JOB}}}[{RATE}]))'


#: The dashboard: rows of panels, in display order.
ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "GPU",
        (
            Panel(
                "GPU utilisation",
                "percentunit",
                (Target(f"avg by (instance, gpu_uuid) (nv_gpu_utilization{{{JOB}}})", "{{instance}} {{gpu_uuid}}"),),
                "Triton's DCGM GPU utilisation (0-1) per GPU",
            ),
            Panel(
                "GPU memory used",
                "bytes",
                (
                    Target(f"max by (instance, gpu_uuid) (nv_gpu_memory_used_bytes{{{JOB}}})", "used {{instance}} {{gpu_uuid}}"),
                    Target(f"max by (instance, gpu_uuid) (nv_gpu_memory_total_bytes{{{JOB}}})", "total {{instance}} {{gpu_uuid}}"),
                ),
                "Used and total GPU memory per GPU",
            ),
            Panel(
                "GPU power",
                "watt",
                (Target(f"max by (instance, gpu_uuid) (nv_gpu_power_usage{{{JOB}}})", "{{instance}} {{gpu_uuid}}"),),
                "Instantaneous GPU power per GPU",
            ),
        ),
    ),
    (
        "Triton models",
        (
            Panel(
                "Request rate per model",
                "reqps",
                (Target(f"sum by (model) (rate(nv_inference_request_success{{{JOB_MODEL}}}[{RATE}]))", "{{model}}"),),
                "Successful inference requests per second, per model (tool models, policy, agent)",
            ),
            Panel(
                "Queue time per request",
                "ms",
                (Target(_avg("nv_inference_queue_duration_us", "nv_inference_request_success", JOB_MODEL, "model", " / 1000"), "{{model}}"),),
                "Average time a request waits in Triton's scheduling queue",
            ),
            Panel(
                "Compute time per request",
                "ms",
                (Target(_avg("nv_inference_compute_infer_duration_us", "nv_inference_request_success", JOB_MODEL, "model", " / 1000"), "{{model}}"),),
                "Average time a request spends executing in the backend",
            ),
            Panel(
                "Average batch size",
                "short",
                (Target(_avg("nv_inference_count", "nv_inference_exec_count", JOB_MODEL, "model"), "{{model}}"),),
                "Inferences per execution: how well the dynamic batcher groups requests",
            ),
            Panel(
                "Pending requests",
                "short",
                (Target(f"sum by (model) (nv_inference_pending_request_count{{{JOB_MODEL}}})", "{{model}}"),),
                "Requests queued or executing; the autoscaling signal",
            ),
            Panel(
                "End-to-end request time",
                "ms",
                (Target(_avg("nv_inference_request_duration_us", "nv_inference_request_success", JOB_MODEL, "model", " / 1000"), "{{model}}"),),
                "Average request handling time inside Triton",
            ),
        ),
    ),
    (
        "Agent",
        (
            Panel(
                "Agent requests by outcome",
                "reqps",
                (Target(f"sum by (outcome) (rate({agent.REQUESTS_TOTAL}{{{JOB}}}[{RATE}]))", "{{outcome}}"),),
                "Restore requests per second handled by restore_r1_agent",
            ),
            Panel(
                "Tool calls by tool",
                "ops",
                (Target(f"sum by (tool) (rate({agent.TOOL_CALLS_TOTAL}{{{JOB}}}[{RATE}]))", "{{tool}}"),),
                "Tool calls per second, by tool",
            ),
            Panel(
                "Steps per request",
                "short",
                (Target(_hist_avg(agent.STEPS), "mean"), Target(_quantile(0.95, agent.STEPS), "p95")),
                "Tool calls per restore request",
            ),
            Panel(
                "Judge-score gain",
                "short",
                (Target(_hist_avg(agent.JUDGE_GAIN), "mean"), Target(_quantile(0.5, agent.JUDGE_GAIN), "p50"), Target(_quantile(0.05, agent.JUDGE_GAIN), "p5")),
                "Judge score of the result minus that of the input (1-5 scale)",
            ),
            Panel(
                "Step latency p95 by tool",
                "s",
                (Target(_quantile(0.95, agent.STEP_LATENCY_SECONDS, "tool"), "{{tool}}"),),
                "Seconds per agent step (encoder, policy, tool, judge)",
            ),
            Panel(
                "Agent request latency",
                "s",
                (Target(_quantile(0.5, agent.REQUEST_LATENCY_SECONDS), "p50"), Target(_quantile(0.95, agent.REQUEST_LATENCY_SECONDS), "p95")),
                "Seconds per restore request inside the agent",
            ),
        ),
    ),
    (
        "Failures",
        (
            Panel(
                "Agent failures by reason",
                "ops",
                (Target(f"sum by (reason) (rate({agent.ERRORS_TOTAL}{{{JOB}}}[{RATE}]))", "{{reason}}"),),
                "Failed or partial agent requests per second, by reason",
            ),
            Panel(
                "Triton failures by model and reason",
                "ops",
                (Target(f"sum by (model, reason) (rate(nv_inference_request_failure{{{JOB_MODEL}}}[{RATE}]))", "{{model}} {{reason}}"),),
                "Failed inference requests per second (reason label where Triton sets one)",
            ),
            Panel(
                "Partial answers",
                "percentunit",
                (Target(_outcome_share(agent.OUTCOME_PARTIAL), agent.OUTCOME_PARTIAL), Target(_outcome_share(agent.OUTCOME_ERROR), agent.OUTCOME_ERROR)),
                "Share of agent requests answered partially (a tool or the policy failed after a successful step: "
                "the best image so far is returned, flagged partial) and share that ended in an error; the reasons are in Agent failures by reason",
            ),
        ),
    ),
)

#: A multi-value variable's selection on load: every value (Grafana's "All").
ALL_SELECTED = {"selected": True, "text": ["All"], "value": ["$__all"]}
#: Time-series panel options. Every field the timeseries panel's ``Options`` type requires is set
#: (legend ``calcs`` and ``showLegend``, tooltip ``sort``): Grafana fills absent ones with
#: defaults, but the schema check holds the file to the type.
TIMESERIES_OPTIONS = {
    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
    "tooltip": {"mode": "multi", "sort": "none"},
}

#: Template variables: data source, release (metrics job) and model.
VARIABLES = (
    # No "current": Grafana selects the default Prometheus data source on load (an empty
    # {"current": {}} is not a VariableOption: the schema check rejects it).
    {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "hide": 0, "refresh": 1},
    {
        "name": "job",
        "label": "Release",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": "label_values(nv_inference_request_success, job)", "refId": "job"},
        "includeAll": True,
        "multi": True,
        "current": ALL_SELECTED,
        "hide": 0,
        "refresh": 2,
        "sort": 1,
    },
    {
        "name": "model",
        "label": "Model",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": 'label_values(nv_inference_request_success{job=~"$job"}, model)', "refId": "model"},
        "includeAll": True,
        "multi": True,
        "current": ALL_SELECTED,
        "hide": 0,
        "refresh": 2,
        "sort": 1,
    },
)


# ------------------------------------------------------------------------------------ training
RUN = 'job=~"$job", run=~"$run"'
CACHE_HIT = f'result="{tm.CACHE_HIT}"'


def _train(name: str, extra: str = "") -> str:
    """A training series of the selected runs (``extra``: more label matchers)."""
    return f"{name}{{{RUN}{', ' + extra if extra else ''}}}"


def _train_rate(name: str, extra: str = "", by: str = "run") -> str:
    return f"sum by ({by}) (rate({_train(name, extra)}[{RATE}]))"


#: The training dashboard: one row per question (is it progressing, is the reward rising, is the
#: policy moving, what do the rollouts cost).
TRAINING_ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Progress",
        (
            Panel(
                "Updates done",
                "percentunit",
                (Target(f"max by (run) ({_train(tm.UPDATE)}) / max by (run) ({_train(tm.UPDATES_PLANNED)})", "{{run}}"),),
                "Finished GRPO updates over those planned",
            ),
            Panel(
                "Seconds per update",
                "s",
                (
                    Target(f"{_train_rate(tm.UPDATE_SECONDS + '_sum')} / {_train_rate(tm.UPDATE_SECONDS + '_count')}", "mean {{run}}"),
                    Target(
                        f"histogram_quantile(0.95, sum by (le, run) (rate({_train(tm.UPDATE_SECONDS + '_bucket')}[{RATE}])))",
                        "p95 {{run}}",
                    ),
                ),
                "Wall seconds per update on rank 0: rollouts of the whole batch, the gradient steps, the checkpoint",
            ),
            Panel(
                "Rollouts per second",
                "ops",
                (Target(_train_rate(tm.ROLLOUTS_TOTAL), "{{run}}"),),
                "Episodes rolled out per second, all ranks together",
            ),
        ),
    ),
    (
        "Reward",
        (
            Panel(
                "Episode reward",
                "short",
                (
                    Target(f"max by (run) ({_train(tm.REWARD_MEAN)})", "mean {{run}}"),
                    Target(f"max by (run) ({_train(tm.REWARD_STD)})", "std {{run}}"),
                ),
                "Mean and std of the episode returns R (sum of the judge-score gains minus the tool cost) of each update's batch",
            ),
            Panel(
                "Advantage std",
                "short",
                (Target(f"max by (run) ({_train(tm.ADVANTAGE_STD)})", "{{run}}"),),
                "Std of the group-normalised advantages: near 0 when the G trajectories of each image tie (nothing to learn)",
            ),
            Panel(
                "Tool calls per episode",
                "short",
                (Target(f"max by (run) ({_train(tm.MEAN_STEPS)})", "{{run}}"),),
                "Mean tool calls per episode of each update's batch",
            ),
        ),
    ),
    (
        "Policy",
        (
            Panel(
                "KL to the reference policy",
                "short",
                (Target(f"max by (run) ({_train(tm.KL)})", "{{run}}"),),
                "k3 estimate of KL(policy || initial policy), step-weighted, at the last gradient step of each update",
            ),
            Panel(
                "Entropy",
                "short",
                (Target(f"max by (run) ({_train(tm.ENTROPY)})", "{{run}}"),),
                "Mean policy entropy over the decision steps (nats)",
            ),
            Panel(
                "Gradient norm and clipped share",
                "short",
                (
                    Target(f"max by (run) ({_train(tm.GRAD_NORM)})", "grad norm {{run}}"),
                    Target(f"max by (run) ({_train(tm.CLIP_FRAC)})", "clipped share {{run}}"),
                ),
                "Global gradient norm before clipping, and the share of steps whose probability ratio left [1-eps, 1+eps]",
            ),
        ),
    ),
    (
        "Tools",
        (
            Panel(
                "Tool-call mix",
                "percentunit",
                (
                    Target(
                        f"{_train_rate(tm.TOOL_CALLS_TOTAL, by='run, tool')} / on (run) group_left {_train_rate(tm.TOOL_CALLS_TOTAL)}",
                        "{{tool}} {{run}}",
                    ),
                ),
                "Share of the rollouts' tool calls that went to each tool",
            ),
            Panel(
                "Tool-cache hit rate",
                "percentunit",
                (
                    Target(
                        f"{_train_rate(tm.TOOL_CACHE_LOOKUPS_TOTAL, CACHE_HIT)} / {_train_rate(tm.TOOL_CACHE_LOOKUPS_TOTAL)}",
                        "{{run}}",
                    ),
                ),
                "Tool calls answered from the cache (the G trajectories of a group share prefixes)",
            ),
            Panel(
                "Tool calls per second",
                "ops",
                (Target(_train_rate(tm.TOOL_CALLS_TOTAL, by="run, tool"), "{{tool}} {{run}}"),),
                "Tool calls per second in the rollouts, by tool",
            ),
        ),
    ),
)

#: Training template variables: data source, job (PodMonitor or Pushgateway) and run.
TRAINING_VARIABLES = (
    VARIABLES[0],
    {
        "name": "job",
        "label": "Job",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f"label_values({tm.UPDATE}, job)", "refId": "job"},
        "includeAll": True,
        "multi": True,
        "current": ALL_SELECTED,
        "hide": 0,
        "refresh": 2,
        "sort": 1,
    },
    {
        "name": "run",
        "label": "Run",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f'label_values({tm.UPDATE}{{job=~"$job"}}, run)', "refId": "run"},
        "includeAll": True,
        "multi": True,
        "current": ALL_SELECTED,
        "hide": 0,
        "refresh": 2,
        "sort": 1,
    },
)


@dataclass(frozen=True)
class DashboardSpec:
    """What makes one board: identity, rows of panels and template variables."""

    uid: str
    title: str
    tags: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]
    variables: tuple[dict, ...]
    refresh: str = "30s"


SERVING = DashboardSpec(DASHBOARD_UID, DASHBOARD_TITLE, ("restore-r1", "triton", "gpu"), ROWS, VARIABLES)
TRAINING = DashboardSpec(TRAINING_UID, TRAINING_TITLE, ("restore-r1", "training", "grpo"), TRAINING_ROWS, TRAINING_VARIABLES, refresh="10s")


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    width = GRID_WIDTH // PANELS_PER_ROW
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": width, "h": PANEL_HEIGHT},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": copy.deepcopy(TIMESERIES_OPTIONS),
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend} for i, t in enumerate(panel.targets)],
    }


def build_dashboard(spec: DashboardSpec = SERVING) -> dict:
    """A dashboard as Grafana JSON (a dict ready for ``json.dump``)."""
    panels: list[dict] = []
    panel_id = 1
    y = 0
    width = GRID_WIDTH // PANELS_PER_ROW
    for row_title, row_panels in spec.rows:
        panels.append(
            {"id": panel_id, "type": "row", "title": row_title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1}, "panels": []}
        )
        panel_id += 1
        y += 1
        for i, panel in enumerate(row_panels):
            col = i % PANELS_PER_ROW
            if i and col == 0:
                y += PANEL_HEIGHT
            panels.append(_panel_json(panel, panel_id, col * width, y))
            panel_id += 1
        y += PANEL_HEIGHT
    return {
        "uid": spec.uid,
        "title": spec.title,
        "tags": list(spec.tags),
        "timezone": "browser",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": spec.refresh,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [copy.deepcopy(v) for v in spec.variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_text(spec: DashboardSpec = SERVING) -> str:
    """A dashboard file's exact text (sorted keys, two-space indent, final newline)."""
    return json.dumps(build_dashboard(spec), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the serving dashboard (``--training``: the training one) to the path given."""
    args = list(sys.argv[1:] if argv is None else argv)
    spec = SERVING
    if args[:1] == ["--training"]:
        spec, args = TRAINING, args[1:]
    if len(args) != 1:
        print("usage: python -m restore_r1.deploy.dashboard [--training] OUT.json", file=sys.stderr)
        return 2
    out = Path(args[0])
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(dashboard_text(spec))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
