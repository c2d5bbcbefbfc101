"""The Grafana dashboard: generated file up to date, Grafana's schema (tsc), expressions parse, metric names exist."""

from __future__ import annotations

import copy
import json
import os
import urllib.request
from pathlib import Path

import pytest

from restore_r1.deploy import chart, dashboard, grafana_schema, live, prometheus, promql

DASHBOARD_FILE = chart.CHART_DIR / "dashboards" / "restore-r1.json"
SCRAPE_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def board() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def _used_names(board: dict) -> set[str]:
    used: set[str] = set()
    for expr in promql.dashboard_expressions(board):
        used |= promql.metric_names(expr)
    return used


def test_committed_dashboard_is_generated():
    assert DASHBOARD_FILE.read_text() == dashboard.dashboard_text(), (
        "regenerate: python -m restore_r1.deploy.dashboard charts/restore-r1/dashboards/restore-r1.json"
    )


def test_datasource_is_templated(board):
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_panels_cover_the_issue(board):
    titles = {p["title"] for p in board["panels"]}
    for wanted in (
        "GPU utilisation",
        "GPU memory used",
        "GPU power",
        "Request rate per model",
        "Queue time per request",
        "Compute time per request",
        "Average batch size",
        "Tool calls by tool",
        "Steps per request",
        "Judge-score gain",
        "Agent failures by reason",
        "Partial answers",
    ):
        assert wanted in titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_partial_answers_panel_shows_the_partial_outcome(board):
    from restore_r1.serving import metrics as m

    (panel,) = [p for p in board["panels"] if p["title"] == "Partial answers"]
    exprs = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    assert set(exprs) == {m.OUTCOME_PARTIAL, m.OUTCOME_ERROR} and panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
    for outcome, expr in exprs.items():
        assert f'outcome="{outcome}"' in expr and promql.metric_names(expr) == {m.REQUESTS_TOTAL}


def test_every_expression_parses(board):
    exprs = promql.dashboard_expressions(board)
    assert len(exprs) >= 20
    for expr in exprs:
        assert promql.metric_names(expr), expr


def test_unparsable_expression_is_reported():
    with pytest.raises(promql.PromQLError, match="does not parse"):
        promql.metric_names("sum(rate(x[5m])")
    with pytest.raises(promql.PromQLError, match="without a fixed metric name"):
        promql.metric_names('{job="a"}')


def test_dashboard_names_are_documented_exports(board):
    assert promql.unknown_names(_used_names(board), promql.documented_names()) == set()


def test_unknown_names_catches_a_typo():
    used = {"nv_inference_request_sucess", "nv_gpu_utilization", "kube_deployment_status_replicas_available"}
    assert promql.unknown_names(used, promql.documented_names()) == {"nv_inference_request_sucess"}
    assert promql.unknown_names(used, promql.documented_names(), gpu_exported=True) == {"nv_inference_request_sucess", "nv_gpu_utilization"}


def test_exported_names_of_a_scrape():
    text = (
        "# HELP nv_inference_count Number of inferences\n# TYPE nv_inference_count counter\n"
        'nv_inference_count{model="nlm_denoise",version="1"} 3\n'
        "# TYPE restore_r1_agent_steps histogram\n"
        'restore_r1_agent_steps_bucket{le="1"} 2\nrestore_r1_agent_steps_sum 3\nrestore_r1_agent_steps_count 2\n'
    )
    assert promql.exported_names(text) == {
        "nv_inference_count",
        "restore_r1_agent_steps",
        "restore_r1_agent_steps_bucket",
        "restore_r1_agent_steps_sum",
        "restore_r1_agent_steps_count",
    }


def test_gpu_allow_list_is_only_gpu_metrics():
    assert all(name.startswith(("nv_gpu_", "nv_energy_")) for name in promql.GPU_ONLY_METRICS)
    assert all(promql.TRITON_METRICS_DOC in cite for cite in promql.GPU_ONLY_METRICS.values())


def _live_scrape(tmp_path) -> tuple[str, bool]:
    """Metrics text of a live Triton with the agent loaded, and whether it has a GPU.

    $RESTORE_R1_METRICS_URL points at a running server's /metrics (e.g. a GPU deployment);
    otherwise the serving package's local server runs over triton_models/ (CPU configs).
    """
    url = os.environ.get("RESTORE_R1_METRICS_URL")
    if url:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
        return text, "nv_gpu_utilization" in text
    from restore_r1.serving.server import DEFAULT_VENV, VENV_ENV

    venv = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"no Triton venv at {venv} (build it with `make triton-venv` or set ${VENV_ENV}); the live /metrics check needs the local tritonserver")
    return live.scrape_after_requests(tmp_path)


@pytest.mark.slow
def test_dashboard_and_alert_names_in_live_scrape(board, tmp_path):
    text, has_gpu = _live_scrape(tmp_path)
    exported = promql.exported_names(text)
    rule = chart.one(chart.render({"gpu": {"enabled": True}}), "PrometheusRule")
    used = _used_names(board)
    for expr in promql.rule_expressions(rule["spec"]["groups"]).values():
        used |= promql.metric_names(expr)
    assert promql.unknown_names(used, exported, gpu_exported=has_gpu) == set()
    # The scrape really came from our server: Triton per-model series and the agent's own.
    assert promql.agent_metric_names() <= exported
    assert 'model="restore_r1_agent"' in text


def test_dashboard_satisfies_grafana_schema(board, tmp_path):
    """tsc --strict against the pinned @grafana/schema: the dashboard and every panel's options."""
    assert grafana_schema.typecheck(board, tmp_path) == []


def test_schema_version_is_the_pinned_grafanas():
    assert dashboard.SCHEMA_VERSION == grafana_schema.default_schema_version()


def test_schema_check_reports_each_defect(board, tmp_path):
    broken = copy.deepcopy(board)
    broken["templating"]["list"][1]["current"] = {}  # what the generator used to write
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    panel["gridPos"]["w"] = "8"
    panel["options"]["tooltip"]["mode"] = "multiple"
    problems = grafana_schema.typecheck(broken, tmp_path)
    assert len(problems) == 3, problems
    assert any('"current": {}' in p and "VariableOption" in p for p in problems)
    assert any('"w": "8"' in p and "TS2322" in p for p in problems)
    assert any('"mode": "multiple"' in p for p in problems)


def test_schema_check_refuses_an_unknown_panel_type(board):
    broken = copy.deepcopy(board)
    broken["panels"][1]["type"] = "graph"
    with pytest.raises(ValueError, match="type 'graph': no options type known"):
        grafana_schema.typescript_module(broken)


def test_schema_check_without_packages_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(grafana_schema.CACHE_ENV, str(tmp_path))
    with pytest.raises(grafana_schema.SchemaCheckError, match="run `make grafana-schema`"):
        grafana_schema.typecheck({}, tmp_path / "work")


def test_grafana_variables_are_replaced_or_refused():
    assert prometheus.alternation(["a.b", "c"]) == r"(a\.b|c)"
    expr = 'rate(x{job=~"$job", model=~"${model}"}[$__rate_interval])'
    assert prometheus.grafana_query(expr, {"job": "(j)", "model": "(m)"}, "1m") == 'rate(x{job=~"(j)", model=~"(m)"}[1m])'
    with pytest.raises(ValueError, match=r"unknown Grafana variable \$model in"):
        prometheus.grafana_query(expr, {"job": "(j)"}, "1m")


# ------------------------------------------------------------------------------ training board
TRAINING_FILE = chart.CHART_DIR / "dashboards" / "restore-r1-training.json"


@pytest.fixture(scope="module")
def training_board() -> dict:
    return json.loads(TRAINING_FILE.read_text())


def test_committed_training_dashboard_is_generated():
    assert TRAINING_FILE.read_text() == dashboard.dashboard_text(dashboard.TRAINING), (
        "regenerate: python -m restore_r1.deploy.dashboard --training charts/restore-r1/dashboards/restore-r1-training.json"
    )


def test_training_board_is_its_own_dashboard_with_templated_datasource(training_board, board):
    assert training_board["uid"] == "restore-r1-training" != board["uid"] and training_board["title"] == "Restore-R1 training"
    variables = {v["name"]: v for v in training_board["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "run"] and variables["datasource"]["type"] == "datasource"
    for panel in training_board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert 'job=~"$job"' in target["expr"] and 'run=~"$run"' in target["expr"], target["expr"]
    ids = [p["id"] for p in training_board["panels"]]
    assert len(ids) == len(set(ids))


def test_training_panels_cover_the_issue(training_board):
    from restore_r1.agent import train_metrics as tm

    used_by_title = {p["title"]: set().union(*(promql.metric_names(t["expr"]) for t in p["targets"])) for p in training_board["panels"] if p["type"] != "row"}
    wanted = {
        "Episode reward": {tm.REWARD_MEAN, tm.REWARD_STD},
        "Advantage std": {tm.ADVANTAGE_STD},
        "KL to the reference policy": {tm.KL},
        "Entropy": {tm.ENTROPY},
        "Tool calls per episode": {tm.MEAN_STEPS},
        "Tool-call mix": {tm.TOOL_CALLS_TOTAL},
        "Rollouts per second": {tm.ROLLOUTS_TOTAL},
        "Tool-cache hit rate": {tm.TOOL_CACHE_LOOKUPS_TOTAL},
        "Seconds per update": {tm.UPDATE_SECONDS + "_sum", tm.UPDATE_SECONDS + "_count", tm.UPDATE_SECONDS + "_bucket"},
    }
    for title, names in wanted.items():
        assert used_by_title[title] == names, title


def test_training_expressions_parse_and_name_only_exported_metrics(training_board):
    from restore_r1.agent import train_metrics as tm

    exprs = promql.dashboard_expressions(training_board)
    assert len(exprs) >= 15
    used = set().union(*(promql.metric_names(e) for e in exprs))
    assert promql.unknown_names(used, tm.sample_names()) == set()
    assert promql.unknown_names(used | {"restore_r1_train_reward_men"}, tm.sample_names()) == {"restore_r1_train_reward_men"}


def test_training_dashboard_satisfies_grafana_schema(training_board, tmp_path):
    assert grafana_schema.typecheck(training_board, tmp_path) == []
