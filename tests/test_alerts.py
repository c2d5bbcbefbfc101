"""The chart's alerts: promtool unit tests, one case per alert, expressions and metric names."""

from __future__ import annotations

import pytest
import yaml

from restore_r1.deploy import chart, promql


@pytest.fixture(scope="module")
def gpu_rule() -> dict:
    """The PrometheusRule with every alert (GPU on), default thresholds, the test release."""
    return chart.one(chart.render({"gpu": {"enabled": True}}), "PrometheusRule")


def _alerts(rule: dict) -> set[str]:
    return set(promql.rule_expressions(rule["spec"]["groups"]))


def test_promtool_rule_tests_pass(gpu_rule, tmp_path):
    result = chart.run_rule_tests(gpu_rule, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_cases_fail_when_a_threshold_moves(tmp_path):
    rule = chart.one(chart.render({"prometheusRule": {"queueTimeMs": 400}}), "PrometheusRule")
    result = chart.run_rule_tests(rule, tmp_path)
    assert result.returncode != 0 and "RestoreR1QueueTimeHigh" in result.stdout + result.stderr


def test_every_alert_has_a_firing_case(gpu_rule):
    cases = yaml.safe_load(chart.RULE_TESTS.read_text())
    fired = {t["alertname"] for group in cases["tests"] for t in group.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert _alerts(gpu_rule) == fired
    assert {"RestoreR1QueueTimeHigh", "RestoreR1InferenceFailures", "RestoreR1GpuMemoryNearLimit", "RestoreR1NoReadyReplica"} <= _alerts(gpu_rule)


def test_every_alert_has_severity_and_text(gpu_rule):
    for group in gpu_rule["spec"]["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert rule["for"]


def test_alert_expressions_parse_and_use_exported_names(gpu_rule):
    used: set[str] = set()
    for name, expr in promql.rule_expressions(gpu_rule["spec"]["groups"]).items():
        names = promql.metric_names(expr)
        assert names, name
        used |= names
    assert promql.unknown_names(used, promql.documented_names()) == set()


def test_alerts_select_the_release_job(gpu_rule):
    """Each serving alert reads only this release's metrics Service (Prometheus sets job=<service>)."""
    for name, expr in promql.rule_expressions(gpu_rule["spec"]["groups"]).items():
        if name != "RestoreR1NoReadyReplica":
            assert 'job="restore-r1-metrics"' in expr, name
