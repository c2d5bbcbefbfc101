"""A real Prometheus scrapes a real training run, and every training-dashboard expression has data.

``torchrun`` runs ``restore-r1 train --distributed`` with 2 gloo ranks on six 64-pixel crops and
``--metrics-port``: rank 0 serves /metrics (rank 1 must not try to: the port is taken), and keeps
serving after the last update (``--metrics-linger``) until the test stops it by process id.
Prometheus (Debian's, from ``make promtool``) scrapes it every 250 ms under the job name the
chart's PodMonitor gives (``restore-r1-trainer``). Once the final update is scraped, every panel
query of charts/restore-r1/dashboards/restore-r1-training.json, its variables resolved by the
board's own variable queries, must return a finite value.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from restore_r1.agent import train_metrics as tm
from restore_r1.deploy import chart, prometheus
from restore_r1.pipeline.trainjob import TRAINER_POD_LABELS
from restore_r1.serving.server import free_port
from tests.test_distributed import TINY_TRAIN, WORKER, _env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
try:
    prometheus.find_prometheus()
except chart.ChartError as exc:
    pytest.skip(str(exc), allow_module_level=True)

BOARD = chart.CHART_DIR / "dashboards" / "restore-r1-training.json"
#: The PodMonitor's jobLabel is app.kubernetes.io/name: this is the job its series get.
JOB = TRAINER_POD_LABELS["app.kubernetes.io/name"]
RUN = "live-run"
INTERVAL = "250ms"
#: Covers the whole run (well under two minutes), as $__rate_interval would for a short range.
RATE_INTERVAL = "2m"
WAIT_S = 300
#: Updates of the run. rate() needs two scrapes taken while the counters move; the 4 updates of
#: TINY_TRAIN fit between two 1-s scrapes on an idle core (a fresh clone's CI run failed so:
#: every rate panel empty). 60 updates take ~3 s here, i.e. ~12 scrapes at INTERVAL.
STEPS = 60
ARGS = [*TINY_TRAIN[: TINY_TRAIN.index("--steps") + 1], str(STEPS), *TINY_TRAIN[TINY_TRAIN.index("--steps") + 2 :]]


def test_prometheus_scrapes_a_training_run_and_the_training_dashboard_has_data(tiny_train_data, tmp_path):
    port = free_port()
    prom = prometheus.PrometheusServer({JOB: [f"{prometheus.HOST}:{port}"]}, (), INTERVAL, INTERVAL).start()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2", str(WORKER), "train"]
    cmd += ["--distributed", "--dist-backend", "gloo", "--data", str(tiny_train_data), "--out", str(tmp_path / "run"), *ARGS]
    cmd += ["--metrics-port", str(port), "--metrics-addr", prometheus.HOST, "--metrics-run", RUN, "--metrics-linger", "600"]
    log = open(tmp_path / "train.log", "w")
    trainer = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        final = f'{tm.UPDATE}{{job="{JOB}", run="{RUN}"}}'
        planned = STEPS

        def finished():
            if trainer.poll() is not None:
                raise AssertionError(f"training exited with {trainer.returncode}: {(tmp_path / 'train.log').read_text()[-3000:]}")
            return prometheus.finite_values(prom.query(final)) == [float(planned)]

        prom.wait_for(f"{final} == {planned} scraped", finished, WAIT_S)
        # what the run logged is what Prometheus holds
        last = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[-1])
        assert prometheus.finite_values(prom.query(f'{tm.KL}{{run="{RUN}"}}')) == [last["kl"]]
        assert prometheus.finite_values(prom.query(f'{tm.WORLD_SIZE}{{run="{RUN}"}}')) == [2.0]
        assert prometheus.finite_values(prom.query(f'{tm.ROLLOUTS_TOTAL}{{run="{RUN}"}}')) == [float(planned * 2 * 4)]

        board = json.loads(BOARD.read_text())
        variables = prometheus.resolve_variables(board, prom)
        assert variables == {"job": prometheus.alternation([JOB]), "run": prometheus.alternation([RUN])}
        queries = list(prometheus.dashboard_queries(board, variables, RATE_INTERVAL))
        assert len(queries) == sum(len(p.get("targets", [])) for p in board["panels"]) >= 15
        missing = [f"{q.panel} [{q.legend}]: {q.expr} -> {r}" for q in queries if not prometheus.finite_values(r := prom.query(q.expr))]
        assert not missing, "\n".join(missing)
        mix = next(q for q in queries if q.panel == "Tool-call mix")
        assert sum(prometheus.finite_values(prom.query(mix.expr))) == pytest.approx(1.0)
        hit_rate = next(q for q in queries if q.panel == "Tool-cache hit rate")
        assert 0 < prometheus.finite_values(prom.query(hit_rate.expr))[0] < 1
    finally:
        if trainer.poll() is None:
            os.kill(trainer.pid, signal.SIGTERM)  # torchrun stops its workers
            try:
                trainer.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(trainer.pid, signal.SIGKILL)
                trainer.wait()
        log.close()
        prom.stop()
    assert (tmp_path / "run" / "policy" / "policy.safetensors").is_file()
