"""Live training metrics (restore_r1.agent.train_metrics): /metrics on rank 0 during a run, pushes to
a (fake) Pushgateway after every update, a Pushgateway that fails, bad settings."""

from __future__ import annotations

import http.server
import logging
import threading
import urllib.request
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from restore_r1.agent import train_metrics as tm
from restore_r1.agent.trainer import train
from tests.test_trainer import TOOLS, ToyEncoder, ToyJudge, toy_config, toy_images


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


@dataclass(frozen=True)
class Ep:
    ret: float
    tools: tuple[str, ...]


def _record(update: int, seconds: float = 1.5) -> dict:
    return {
        "update": update,
        "advantage_std": 0.9,
        "kl": 0.01,
        "entropy": 1.2,
        "loss": -0.1,
        "grad_norm": 0.5,
        "clip_frac": 0.25,
        "mean_steps": 1.5,
        "seconds": seconds,
    }


def test_exporter_sets_every_metric_from_one_update():
    from prometheus_client import generate_latest

    exporter = tm.PrometheusExporter(run="r1")
    exporter.start(planned_updates=10, done_updates=3, tool_names=["a", "b", "c"], world_size=2)
    text = generate_latest(exporter.registry).decode()
    # every labelled counter series exists at 0 before the first update
    assert value(text, tm.TOOL_CALLS_TOTAL, run="r1", tool="c") == 0.0
    assert value(text, tm.TOOL_CACHE_LOOKUPS_TOTAL, run="r1", result=tm.CACHE_HIT) == 0.0
    assert value(text, tm.UPDATE, run="r1") == 3.0 and value(text, tm.WORLD_SIZE, run="r1") == 2.0
    exporter.observe(_record(4), [Ep(1.0, ("a", "b")), Ep(3.0, ("a",)), Ep(2.0, ())], cache_hits=3, cache_misses=1)
    text = generate_latest(exporter.registry).decode()
    assert value(text, tm.UPDATE, run="r1") == 4.0 and value(text, tm.UPDATES_PLANNED, run="r1") == 10.0
    assert value(text, tm.REWARD_MEAN, run="r1") == 2.0
    assert value(text, tm.REWARD_STD, run="r1") == pytest.approx((2 / 3) ** 0.5)
    assert value(text, tm.KL, run="r1") == 0.01 and value(text, tm.CLIP_FRAC, run="r1") == 0.25
    assert value(text, tm.ROLLOUTS_TOTAL, run="r1") == 3.0
    assert [value(text, tm.TOOL_CALLS_TOTAL, run="r1", tool=t) for t in "abc"] == [2.0, 1.0, 0.0]
    assert value(text, tm.TOOL_CACHE_LOOKUPS_TOTAL, run="r1", result=tm.CACHE_MISS) == 1.0
    assert value(text, tm.UPDATE_SECONDS + "_count", run="r1") == 1.0 and value(text, tm.UPDATE_SECONDS + "_sum", run="r1") == 1.5
    exported = {name for name, _ in samples(text)}
    assert tm.sample_names() <= exported | {tm.UPDATE_SECONDS}  # the histogram's family name has no sample of its own


def test_training_serves_metrics_while_it_runs(tmp_path):
    exporter = tm.PrometheusExporter(run="toy", port=0, addr="127.0.0.1")
    scrapes = []

    def scrape(update, record):
        with urllib.request.urlopen(exporter.url, timeout=10) as resp:
            scrapes.append(resp.read().decode())

    cfg = toy_config(updates=3, batch_images=2, group_size=4)
    result = train(toy_images(), tmp_path / "run", ToyEncoder(), ToyJudge(), TOOLS, cfg, progress=False, callback=scrape, monitor=exporter)
    assert [value(t, tm.UPDATE, run="toy") for t in scrapes] == [1.0, 2.0, 3.0]
    last, record = scrapes[-1], result.records[-1]
    assert value(last, tm.KL, run="toy") == record["kl"] and value(last, tm.MEAN_STEPS, run="toy") == record["mean_steps"]
    assert value(last, tm.ROLLOUTS_TOTAL, run="toy") == 3 * 2 * 4
    calls = sum(value(last, tm.TOOL_CALLS_TOTAL, run="toy", tool=t) for t in TOOLS)
    assert calls == pytest.approx(sum(r["mean_steps"] * 8 for r in result.records))
    hits, misses = (value(last, tm.TOOL_CACHE_LOOKUPS_TOTAL, run="toy", result=r) for r in (tm.CACHE_HIT, tm.CACHE_MISS))
    assert hits > 0 and misses > 0
    assert value(last, tm.UPDATE_SECONDS + "_count", run="toy") == 3
    with pytest.raises(OSError):  # closed with the run (no linger asked)
        urllib.request.urlopen(exporter.url, timeout=5)


class FakePushgateway(http.server.ThreadingHTTPServer):
    """Records (method, path, body) of every request; answers ``status``."""

    def __init__(self, status: int = 200):
        self.requests: list[tuple[str, str, str]] = []
        self.status = status
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                gateway.requests.append(("PUT", self.path, body))
                self.send_response(gateway.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_pushes_after_every_update_and_at_the_end(tmp_path):
    with FakePushgateway() as gateway:
        exporter = tm.PrometheusExporter(run="toy-push", pushgateway=gateway.url + "/")
        train(
            toy_images(),
            tmp_path / "run",
            ToyEncoder(),
            ToyJudge(),
            TOOLS,
            toy_config(updates=2, batch_images=2, group_size=4),
            progress=False,
            monitor=exporter,
        )
    assert [(m, p) for m, p, _ in gateway.requests] == [("PUT", "/metrics/job/restore-r1-train/run/toy-push")] * 4  # start, 2 updates, close
    first, after_one, last = (r[2] for r in (gateway.requests[0], gateway.requests[1], gateway.requests[-1]))
    assert value(first, tm.UPDATE, run="toy-push") == 0.0 and value(after_one, tm.UPDATE, run="toy-push") == 1.0
    assert value(last, tm.UPDATE, run="toy-push") == 2.0 and value(last, tm.ROLLOUTS_TOTAL, run="toy-push") == 16
    assert exporter.push_failures == 0


def test_a_failing_pushgateway_is_logged_once_and_training_goes_on(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=tm.__name__)
    with FakePushgateway(status=500) as gateway:
        exporter = tm.PrometheusExporter(run="toy", pushgateway=gateway.url)
        result = train(
            toy_images(),
            tmp_path / "run",
            ToyEncoder(),
            ToyJudge(),
            TOOLS,
            toy_config(updates=2, batch_images=2, group_size=4),
            progress=False,
            monitor=exporter,
        )
    assert result.updates == 2 and len(gateway.requests) == 4 and exporter.push_failures == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == tm.__name__]
    assert len(warnings) == 1 and f"pushing training metrics to {gateway.url} failed" in warnings[0] and "500" in warnings[0]


def test_bad_metric_settings_are_one_line_errors(tmp_path, capsys):
    from restore_r1.cli import main

    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--tools", "gamma_correction", "--judge", "relative"]
    assert main([*base, "--pushgateway", "pushgateway:9091"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Pushgateway URL 'pushgateway:9091': expected http://host:port" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main([*base, "--metrics-port", "70000"])
    assert "70000 is not a TCP port" in capsys.readouterr().err
    with pytest.raises(ValueError, match="linger -1"):
        tm.PrometheusExporter(run="x", port=1, linger_s=-1)
    with pytest.raises(ValueError, match="run name is empty"):
        tm.PrometheusExporter(run="")
