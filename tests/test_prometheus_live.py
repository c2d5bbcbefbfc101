"""A real Prometheus with the chart's alert rules, scraping a real Triton (both on 127.0.0.1).

The chart's PrometheusRule (rendered for the test release, ``for`` shortened to
:data:`ALERT_FOR`) is Prometheus' rules file; its scrape job is named like the chart's metrics
Service (``restore-r1-metrics``), so ``job`` is what the Prometheus Operator would set. Triton
runs the model repository with a random test policy, CPU configs and explicit model control.

One sequence, in order: healthy traffic (restores and one rejected request) with no failure
alert; the second tool of the policy's plan swapped for a model that answers every request with
an error, so restores come back partial and the agent's tool-failure alert fires
(RestoreR1AgentFailures, reason tool_failed); then for one whose execute raises, which Triton
counts as failed requests, so the per-model alert fires for that tool model (Triton 2.51 counts
error responses as successes, so only the agent's own counters see the first kind); every dashboard expression
evaluated through the HTTP API with its variables resolved by its own variable queries (each runs;
each that needs no GPU has a finite value); everything stopped by process id.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from restore_r1.deploy import chart, prometheus, promql
from restore_r1.serving import backend as b
from restore_r1.serving import metrics as m
from restore_r1.serving import smoke
from restore_r1.serving.repository import MODEL_VERSION, write_repository
from restore_r1.serving.server import DEFAULT_VENV, VENV_ENV, TritonServer
from restore_r1.serving.testing import FAILING_MODEL, RAISING_MODEL, make_random_policy, swapped_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
VENV = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
if not (VENV / "bin" / "python").exists():
    pytest.skip(f"no Triton venv at {VENV}; run `make triton-venv`", allow_module_level=True)

DASHBOARD_FILE = chart.CHART_DIR / "dashboards" / "restore-r1.json"
#: Scrape and rule evaluation every second, so the test runs in about a minute.
INTERVAL = "1s"
#: The alerts' ``for``, shortened from 5m (the condition must still hold over two evaluations).
ALERT_FOR = "2s"
#: $__rate_interval as Grafana would set it for a short range: long enough to cover all of this
#: test's traffic (under a minute), so every rate has samples.
RATE_INTERVAL = "2m"
HEALTHY_RESTORES = 3
FAILING_RESTORES = 4
#: Seconds to wait for a scrape to show a change, and for an alert to fire.
SCRAPE_WAIT_S = 30
ALERT_WAIT_S = 60


def _crops() -> list[np.ndarray]:
    """Two degraded 128×96 crops of scikit-image photos (cases 1 and 4)."""
    from restore_r1.cleanimages import load_clean
    from restore_r1.degradations import apply_case

    return [
        apply_case(case, np.ascontiguousarray(load_clean(name)[:96, :128]), np.random.default_rng(case))[0] for case, name in ((1, "astronaut"), (4, "coffee"))
    ]


def _alert(prom: prometheus.PrometheusServer, name: str, state: str | None = None, **labels: str) -> list[dict]:
    return [
        a for a in prom.alerts() if a["labels"].get("alertname") == name and (state is None or a["state"] == state) and labels.items() <= a["labels"].items()
    ]


def _counter(prom: prometheus.PrometheusServer, expr: str) -> float:
    return sum(float(s["value"][1]) for s in prom.query(expr))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(Triton, Prometheus, the scrape job, the rule groups); both servers are stopped by process id at the end."""
    root = tmp_path_factory.mktemp("prometheus-live")
    repo = write_repository(root / "repo")
    make_random_policy(repo / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR)
    triton = TritonServer(repo, VENV, 0, 0, 0, extra_args=["--model-control-mode=explicit", "--load-model=*"], log_path=root / "tritonserver.log")
    # Every alert, the GPU one included (its expression must run, with no data, on CPU).
    rule = chart.one(chart.render({"gpu": {"enabled": True}, "prometheusRule": {"for": ALERT_FOR}}), "PrometheusRule")
    job = f"{chart.TEST_RELEASE}-metrics"  # the chart's metrics Service name for the test release
    triton.start()
    prom = prometheus.PrometheusServer({job: [f"{prometheus.HOST}:{triton.metrics_port}"]}, rule["spec"]["groups"], INTERVAL, INTERVAL)
    try:
        prom.start()
    except Exception:
        triton.stop()
        raise
    yield triton, prom, job, rule["spec"]["groups"]
    pids = (prom.pid, triton.pid)
    prom.stop()
    triton.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_rules_load_scrape_alert_and_every_dashboard_expression_has_data(stack):
    import tritonclient.http as httpclient

    from restore_r1.serving.client import RemoteError, TritonAgentClient

    triton, prom, job, rules = stack
    assert set(prom.rule_health()) == set(promql.rule_expressions(rules)) >= {"RestoreR1InferenceFailures", "RestoreR1GpuMemoryNearLimit"}
    prom.wait_for("Triton's metrics port scraped", lambda: any(prom.targets_up().values()), SCRAPE_WAIT_S)
    assert prom.query(f'up{{job="{job}"}}')[0]["value"][1] == "1"

    # The `helm test` pod's check: readiness and one complete restore.
    assert smoke.check(triton.http_url).image.shape == smoke.smoke_image().shape

    # Healthy traffic: full plans, and one request the agent rejects.
    client = TritonAgentClient(triton.http_url)
    img = _crops()[0]
    plans = [client.restore(img) for _ in range(HEALTHY_RESTORES)] + [client.restore(_crops()[1])]
    assert all(not r.partial for r in plans) and len(plans[0].tools) >= 2, plans[0].tools
    with pytest.raises(RemoteError):
        client.infer_raw(np.zeros((1, 0, 0, 3), np.uint8))
    ok = f'{m.REQUESTS_TOTAL}{{job="{job}", outcome="{m.OUTCOME_OK}"}}'
    prom.wait_for("the healthy restores scraped", lambda: _counter(prom, ok) >= len(plans), SCRAPE_WAIT_S)
    assert not _alert(prom, "RestoreR1InferenceFailures"), prom.alerts()

    assert not _alert(prom, "RestoreR1AgentFailures", reason=m.ERROR_TOOL_FAILED), prom.alerts()

    # The plan's second tool answers every request with an error (as our models report any
    # failure): partial answers; the agent's tool_failed alert fires. Then its execute raises (a
    # crash): Triton counts failed requests for it and the per-model failure alert fires.
    second = b.tool_model_name(plans[0].tools[1])
    admin = httpclient.InferenceServerClient(triton.http_url)
    try:
        with swapped_model(triton.repository, admin, plans[0].tools[1], FAILING_MODEL):
            results = [client.restore(img) for _ in range(FAILING_RESTORES)]
            assert all(r.partial and r.failed["model"] == second for r in results), [r.failed for r in results]
            tool_failed = prom.wait_for(
                "RestoreR1AgentFailures firing for tool_failed",
                lambda: _alert(prom, "RestoreR1AgentFailures", "firing", reason=m.ERROR_TOOL_FAILED, severity="critical"),
                ALERT_WAIT_S,
            )
        with swapped_model(triton.repository, admin, plans[0].tools[1], RAISING_MODEL):
            results = [client.restore(img) for _ in range(FAILING_RESTORES)]
            assert all(r.partial and r.failed["model"] == second for r in results), [r.failed for r in results]
            firing = prom.wait_for(
                f"RestoreR1InferenceFailures firing for {second}",
                lambda: _alert(prom, "RestoreR1InferenceFailures", "firing", model=second, severity="critical"),
                ALERT_WAIT_S,
            )
    finally:
        admin.close()
        client.close()
    assert "of agent requests fail with reason tool_failed" in tool_failed[0]["annotations"]["description"]
    assert f"of requests to {second} fail" in firing[0]["annotations"]["description"]
    assert {a["labels"]["model"] for a in _alert(prom, "RestoreR1InferenceFailures")} == {second}
    for quiet in ("RestoreR1QueueTimeHigh", "RestoreR1GpuMemoryNearLimit", "RestoreR1NoReadyReplica"):
        assert not _alert(prom, quiet), prom.alerts()
    assert all(h == "ok" for h, _ in prom.rule_health().values()), prom.rule_health()

    # Every dashboard query, its variables resolved by the dashboard's own variable queries.
    board = json.loads(DASHBOARD_FILE.read_text())
    variables = prometheus.resolve_variables(board, prom)
    assert job in variables["job"].replace("\\", "") and b.AGENT_MODEL in variables["model"] and second in variables["model"]
    queries = list(prometheus.dashboard_queries(board, variables, RATE_INTERVAL))
    assert len(queries) == sum(len(p.get("targets", [])) for p in board["panels"]) >= 20
    missing = []
    for q in queries:
        result = prom.query(q.expr)  # raises on any query Prometheus refuses
        needs_gpu = bool(promql.metric_names(q.expr) & set(promql.GPU_ONLY_METRICS))
        if needs_gpu:
            assert result == [], (q.panel, result)  # a CPU server exports no GPU series
        elif not prometheus.finite_values(result):
            missing.append(f"{q.panel} [{q.legend}]: {q.expr} -> {result}")
    assert not missing, "\n".join(missing)
    partial = next(q for q in queries if q.panel == "Partial answers" and q.legend == m.OUTCOME_PARTIAL)
    assert 0 < prometheus.finite_values(prom.query(partial.expr))[0] < 1
    # The same expression as a panel's range query (bench/dashboard_render.py draws these).
    now = time.time()
    series = prom.query_range(partial.expr, now - 30, now, 1)
    assert series and len(series[0]["values"]) >= 2 and 0 < float(series[0]["values"][-1][1]) < 1


def test_a_query_prometheus_refuses_is_an_error(stack):
    _, prom, _, _ = stack
    with pytest.raises(prometheus.PrometheusError, match="bad_data"):
        prom.query("sum(rate(nv_inference_count[5m])")
