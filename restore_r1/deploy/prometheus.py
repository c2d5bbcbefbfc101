"""A real Prometheus server on 127.0.0.1: the chart's alert rules, scraping a local Triton.

The ``prometheus`` binary is Debian's (the package ``make promtool`` unpacks into
``.cache/promtool``, which holds both ``promtool`` and ``prometheus``). :class:`PrometheusServer`
writes a configuration (one static scrape job per metrics Service, the rendered PrometheusRule's
``spec.groups`` as the rules file), starts the server in its own process group, and stops it by
process id. :meth:`PrometheusServer.query` and friends are thin readers of Prometheus' HTTP API
(``/api/v1/query``, ``/api/v1/label/<name>/values``, ``/api/v1/alerts``, ``/api/v1/targets``).

:func:`grafana_query` turns a dashboard expression into the PromQL Grafana would send: its
template variables replaced by the values the variable queries return here, formatted as Grafana
formats a multi-value Prometheus variable (a regex alternation).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from restore_r1.deploy.chart import PROMTOOL_CACHE, ChartError
from restore_r1.deploy.promql import GRAFANA_DURATION_VARIABLES, variable_query_expr
from restore_r1.serving.server import free_port

#: $RESTORE_R1_PROMETHEUS names another prometheus binary; else the one beside promtool.
PROMETHEUS_ENV = "RESTORE_R1_PROMETHEUS"
PROMETHEUS_CACHE = PROMTOOL_CACHE.parent / "prometheus"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
HTTP_TIMEOUT_S = 10.0


class PrometheusError(RuntimeError):
    """The server did not start, or the API answered with an error (its message is kept)."""


def find_prometheus() -> Path:
    """The prometheus binary: $RESTORE_R1_PROMETHEUS, then ``make promtool``'s copy, then $PATH.

    Raises:
        ChartError: if none exists (the message says how to get one).
    """
    for candidate in (os.environ.get(PROMETHEUS_ENV), str(PROMETHEUS_CACHE), shutil.which("prometheus")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ChartError(f"prometheus not found at ${PROMETHEUS_ENV}, {PROMETHEUS_CACHE} or on PATH; run `make promtool`")


def config(jobs: Mapping[str, Sequence[str]], rules_file: str, scrape_interval: str, evaluation_interval: str) -> dict[str, Any]:
    """prometheus.yml: one static job per ``{job name: [host:port, ...]}``, one rules file."""
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [rules_file],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]} for job, targets in jobs.items()],
    }


@dataclass
class PrometheusServer:
    """A ``prometheus`` process on 127.0.0.1 with its TSDB in a scratch folder.

    Args:
        jobs: ``{job name: [host:port, ...]}`` scraped at ``/metrics``; the job name becomes the
            ``job`` label, as the Prometheus Operator sets it from the metrics Service's name.
        rule_groups: Prometheus rule groups (a PrometheusRule's ``spec.groups``).
        scrape_interval, evaluation_interval: Prometheus durations (``1s``).
        port: 0 picks a free port.
    """

    jobs: Mapping[str, Sequence[str]]
    rule_groups: Sequence[Mapping[str, Any]] = ()
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    port: int = 0
    process: subprocess.Popen | None = None
    _scratch: Path | None = None
    _log: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> PrometheusServer:
        """Writes the configuration and rules, starts the server and waits for ``/-/ready``
        (a configuration or rule file Prometheus refuses makes it exit: the error is raised).

        Raises:
            ChartError: no prometheus binary.
            PrometheusError: it exited or was not ready in time (the log's end is quoted).
        """
        binary = find_prometheus()
        self.port = self.port or free_port()
        self._scratch = Path(tempfile.mkdtemp(prefix="restore-r1-prometheus-"))
        rules = self._scratch / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": [dict(g) for g in self.rule_groups]}, sort_keys=False))
        cfg = self._scratch / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config(self.jobs, rules.name, self.scrape_interval, self.evaluation_interval), sort_keys=False))
        self._log = self._scratch / "prometheus.log"
        cmd = [
            str(binary),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self._scratch / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self._scratch)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise PrometheusError(f"prometheus exited with code {self.process.returncode}: {tail}")
            if self._ready():
                return self
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise PrometheusError(f"prometheus was not ready within {timeout_s:g} s: {tail}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 10) -> str:
        if not self._log or not self._log.exists():
            return "(no log)"
        return " | ".join(self._log.read_text(errors="replace").strip().splitlines()[-lines:])

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the server's process id, SIGKILL after ``grace_s``; removes the scratch
        folder; returns the exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            code = self.process.returncode
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        return code

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def api(self, path: str, params: Mapping[str, str | Sequence[str]] | None = None) -> Any:
        """``data`` of a GET on the HTTP API.

        Raises:
            PrometheusError: the API answered ``status: error`` (message: its ``errorType: error``).
        """
        query = urllib.parse.urlencode(params or {}, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=HTTP_TIMEOUT_S) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422/503 carry the same JSON error body
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params or {})}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now: the result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self.api("/api/v1/query", {"query": expr})
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query (what a Grafana time-series panel sends): ``[{"metric": {...}, "values": [[t, "v"], ...]}]``."""
        data = self.api("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        return data["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of ``label`` on the series ``match`` selects (Grafana's ``label_values``)."""
        return self.api(f"/api/v1/label/{label}/values", {"match[]": [match]})

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts: ``labels``, ``annotations``, ``state``, ``value``."""
        return self.api("/api/v1/alerts")["alerts"]

    def rule_health(self) -> dict[str, tuple[str, str]]:
        """``{rule name: (health, last error)}`` of every loaded rule."""
        groups = self.api("/api/v1/rules")["groups"]
        return {r["name"]: (r["health"], r.get("lastError", "")) for g in groups for r in g["rules"]}

    def targets_up(self) -> dict[str, bool]:
        """``{scrape URL: whether its last scrape succeeded}``."""
        return {t["scrapeUrl"]: t["health"] == "up" for t in self.api("/api/v1/targets")["activeTargets"]}

    def wait_for(self, what: str, predicate, timeout_s: float, poll_s: float = 0.5):
        """Polls ``predicate()`` until it returns something truthy; returns that.

        Raises:
            PrometheusError: not within ``timeout_s`` (the message names ``what``).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise PrometheusError(f"{what}: not within {timeout_s:g} s")
            time.sleep(poll_s)


def finite_values(result: Iterable[Mapping[str, Any]]) -> list[float]:
    """The finite sample values of an instant-query result (NaN and ±Inf dropped)."""
    values = (float(sample["value"][1]) for sample in result)
    return [v for v in values if math.isfinite(v)]


def alternation(values: Iterable[str]) -> str:
    """A multi-value variable as Grafana writes it into a Prometheus query: ``(a|b)``, regex-escaped."""
    escaped = [re.sub(r"([\\.+*?^$()\[\]{}|])", r"\\\1", v) for v in values]
    return "(" + "|".join(escaped) + ")"


def grafana_query(expr: str, variables: Mapping[str, str], rate_interval: str) -> str:
    """``expr`` with ``$name``/``${name}`` replaced from ``variables`` and the interval variables
    by ``rate_interval``.

    Raises:
        ValueError: a ``$variable`` is left that ``variables`` does not define.
    """
    for name in GRAFANA_DURATION_VARIABLES:
        expr = expr.replace(name, rate_interval)
    for name in sorted(variables, key=len, reverse=True):  # $model before $mod...
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    left = re.search(r"\$\{?(\w+)", expr)
    if left:
        raise ValueError(f"unknown Grafana variable ${left[1]} in {expr!r}; defined: {sorted(variables)}")
    return expr


@dataclass(frozen=True)
class DashboardQuery:
    """One panel target of a dashboard, as sent to Prometheus."""

    panel: str
    legend: str
    expr: str


def resolve_variables(board: Mapping[str, Any], prometheus: PrometheusServer) -> dict[str, str]:
    """Each query variable's "All" value, in dashboard order (a later variable's query may use an
    earlier one): the alternation of the ``label_values`` its query returns here.

    Raises:
        PrometheusError: a variable query is not ``label_values(selector, label)``, or returns nothing.
    """
    resolved: dict[str, str] = {}
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], Mapping) else variable["query"]
        match = re.match(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)\s*$", query)
        if not match:
            raise PrometheusError(f"variable {variable['name']}: {query!r} is not label_values(selector, label)")
        selector = grafana_query(variable_query_expr(query), resolved, "1m")
        values = prometheus.label_values(match["label"], selector)
        if not values:
            raise PrometheusError(f"variable {variable['name']}: {query!r} has no values (selector {selector})")
        resolved[variable["name"]] = alternation(values)
    return resolved


def dashboard_queries(board: Mapping[str, Any], variables: Mapping[str, str], rate_interval: str) -> Iterator[DashboardQuery]:
    """Every panel target, its expression as Grafana would send it."""

    def panels(items):
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield DashboardQuery(panel["title"], target.get("legendFormat", ""), grafana_query(target["expr"], variables, rate_interval))
