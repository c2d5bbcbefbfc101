"""The serving dashboard's panels drawn from a real scrape (``make dashboard-render``).

    PYTHONPATH=$PWD .venv/bin/python bench/dashboard_render.py --out bench/results

No Grafana runs here, so this is a RENDERING of the dashboard's queries, not a Grafana
screenshot: a real Triton (``.venv-triton``, CPU configs, the shipped default policy, the
packaged default judge) serves restores of degraded crops of the bundled held-out photos (used
here as traffic only: nothing is fitted or chosen on them); a real Prometheus scrapes it every
2 s with the chart's rendered alert rules. The traffic has four phases (:data:`PHASES`): one client;
two clients while the first tool of the policy's plan answers every request with an error
(errors and partial answers, the agent-failure alert fires); one client again; four clients. Then every panel of
``charts/restore-r1/dashboards/restore-r1.json`` is sent as Grafana would send it (its template
variables resolved by its own variable queries, ``$__rate_interval`` = :data:`RATE_INTERVAL`)
as a range query over the run, and drawn with matplotlib at the panel's grid position, legend
and unit. GPU panels have no data on a CPU server and say so.

Writes the picture to ``--picture`` (``docs/images/dashboard.png``, which the README shows), and
``dashboard_render.json`` (phases, alerts, per-query series counts) and ``dashboard_render.md``
to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore_r1.deploy import chart, prometheus, promql  # noqa: E402
from restore_r1.serving import backend as b  # noqa: E402
from restore_r1.serving.repository import write_repository  # noqa: E402
from restore_r1.serving.server import DEFAULT_VENV, VENV_ENV, TritonServer  # noqa: E402
from restore_r1.serving.testing import FAILING_MODEL, degraded_photos, swapped_model  # noqa: E402

DASHBOARD_FILE = chart.CHART_DIR / "dashboards" / "restore-r1.json"
SCRAPE = "2s"
#: What Grafana would set for a 2 s scrape at this zoom (4 × scrape, rounded up).
RATE_INTERVAL = "10s"
STEP_S = 2.0
#: (name, seconds, clients, failing tool?)
PHASES = (("1 client", 30, 1, False), ("tool failing", 60, 2, True), ("recovered", 30, 1, False), ("4 clients", 40, 4, False))
SIZE = (256, 256)
#: Series per panel drawn in colour with a legend entry (the largest); the rest are grey.
LEGEND_SERIES = 6
UNIT_SCALE = {"percentunit": (100.0, "%"), "bytes": (1 / 2**20, "MiB"), "ms": (1.0, "ms"), "s": (1.0, "s"), "reqps": (1.0, "req/s"), "ops": (1.0, "/s")}


def drive(url: str, imgs, seconds: float, clients: int) -> dict:
    """``clients`` threads restoring ``imgs`` in turn for ``seconds``; counts of full and partial answers."""
    from restore_r1.serving.client import TritonAgentClient

    counts = {"full": 0, "partial": 0, "error": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        client = TritonAgentClient(url)
        i = k
        try:
            while time.monotonic() < stop:
                try:
                    r = client.restore(imgs[i % len(imgs)])
                    key = "partial" if r.partial else "full"
                except Exception:  # noqa: BLE001 - counted, the panels show it
                    key = "error"
                with lock:
                    counts[key] += 1
                i += clients
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def legend(fmt: str, metric: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(metric.get(m[1], "")), fmt or "").strip() or "value"


def draw(board: dict, panels: list[dict], phases: list[dict], spans: list[dict], t0: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    fig = plt.figure(figsize=(18, rows * 0.52))
    fig.suptitle(
        f"{board['title']}: a matplotlib RENDERING of the dashboard's panel queries (not Grafana), "
        f"from a real Prometheus scraping a local CPU Triton, {dt.date.today().isoformat()}",
        fontsize=11,
    )
    top = 0.965
    for p in board["panels"]:
        g = p["gridPos"]
        if p["type"] == "row":
            fig.text(0.01, top - (g["y"] + 0.5) / rows * top, p["title"], fontsize=11, weight="bold")
    for p in panels:
        g = p["gridPos"]
        left, width = g["x"] / 24 + 0.035, g["w"] / 24 - 0.055
        bottom = top - (g["y"] + g["h"]) / rows * top + 0.02
        height = g["h"] / rows * top - 0.045
        ax = fig.add_axes((left, bottom, width, height))
        scale, unit = UNIT_SCALE.get(p["unit"], (1.0, ""))
        ax.set_title(p["title"] + (f" ({unit})" if unit else ""), fontsize=9)
        lines = []
        for target in p["series"]:
            for ser in target["result"]:
                ts = [float(t) - t0 for t, _ in ser["values"]]
                vs = [float(v) * scale for _, v in ser["values"]]
                lines.append((max(map(abs, vs), default=0.0), ts, vs, legend(target["legend"], ser["metric"])[:30]))
        lines.sort(key=lambda line: -line[0])
        coloured, grey = 0, []  # grey: peaks of the series drawn without a legend entry
        for peak, ts, vs, name in lines:
            if coloured < LEGEND_SERIES and peak > 0:
                ax.plot(ts, vs, lw=1.2, label=name)
                coloured += 1
            else:
                ax.plot(ts, vs, lw=0.6, color="grey", alpha=0.5)
                grey.append(peak)
        if grey:
            ax.plot([], [], lw=0.6, color="grey", label=f"{len(grey)} more series (grey){'' if any(grey) else ' at 0'}")
        for ph in phases:
            if ph["failing"]:
                ax.axvspan(ph["start"] - t0, ph["end"] - t0, color="tab:red", alpha=0.08, lw=0)
        for span in spans:
            ax.axvspan(span["from"], span["to"], ymin=0.97, ymax=1.0, color="tab:orange", lw=0)
        if not lines:
            ax.text(0.5, 0.5, "no data (CPU server: no GPU series)" if p["gpu"] else "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        else:
            ax.legend(fontsize=6, loc="upper left", frameon=False)
        ax.set_xlim(0, phases[-1]["end"] - t0 + STEP_S)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("seconds (red band: a tool model failing; orange bar on top: an alert firing)", fontsize=6)
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="folder for dashboard_render.{json,md}")
    parser.add_argument("--picture", default="docs/images/dashboard.png", help="the PNG (default docs/images/dashboard.png, shown in the README)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every phase's length (0.2 for a smoke run)")
    args = parser.parse_args(argv)
    venv = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
    if not (venv / "bin" / "python").exists():
        print(f"dashboard_render: no Triton venv at {venv}; run `make triton-venv`", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    board = json.loads(DASHBOARD_FILE.read_text())
    rule = chart.one(chart.render({"gpu": {"enabled": True}, "prometheusRule": {"for": "10s"}}), "PrometheusRule")
    groups = rule["spec"]["groups"]
    job = f"{chart.TEST_RELEASE}-metrics"
    imgs = degraded_photos(*SIZE, n=30, seed=7)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="restore-r1-dashboard-") as tmp:
        repo = write_repository(Path(tmp) / "repo")  # no exported policy: the packaged default serves
        with TritonServer(repo, venv, 0, 0, 0, extra_args=["--model-control-mode=explicit", "--load-model=*"], log_path=Path(tmp) / "triton.log") as triton:
            with prometheus.PrometheusServer({job: [f"{prometheus.HOST}:{triton.metrics_port}"]}, groups, SCRAPE, SCRAPE) as prom:
                import tritonclient.http as httpclient

                from restore_r1.serving.client import TritonAgentClient

                prom.wait_for("Triton scraped", lambda: any(prom.targets_up().values()), 60)
                probe = TritonAgentClient(triton.http_url)
                plan = probe.restore(imgs[0]).tools
                probe.close()
                failing_tool = plan[0]
                phases, alerts_seen = [], set()
                t0 = time.time()
                admin = httpclient.InferenceServerClient(triton.http_url)
                try:
                    for name, seconds, clients, failing in PHASES:
                        start = time.time()
                        if failing:
                            with swapped_model(triton.repository, admin, failing_tool, FAILING_MODEL):
                                counts = drive(triton.http_url, imgs, seconds * args.scale, clients)
                                alerts_seen |= {(a["labels"]["alertname"], a["state"]) for a in prom.alerts()}
                        else:
                            counts = drive(triton.http_url, imgs, seconds * args.scale, clients)
                        alerts_seen |= {(a["labels"]["alertname"], a["state"]) for a in prom.alerts()}
                        phases.append({"phase": name, "clients": clients, "failing": failing, "start": start, "end": time.time(), **counts})
                finally:
                    admin.close()
                time.sleep(2 * STEP_S)  # the last scrape lands
                end = time.time()
                variables = prometheus.resolve_variables(board, prom)
                queries = list(prometheus.dashboard_queries(board, variables, RATE_INTERVAL))
                by_panel: dict[str, list] = {}
                for q in queries:
                    by_panel.setdefault(q.panel, []).append({"legend": q.legend, "expr": q.expr, "result": prom.query_range(q.expr, t0, end, STEP_S)})
                alerts_seen |= {(a["labels"]["alertname"], a["state"]) for a in prom.alerts()}
                firing = prom.query_range('ALERTS{alertstate="firing"}', t0, end, STEP_S)
    spans = [
        {
            "alert": f["metric"]["alertname"],
            **{k: f["metric"].get(k, "") for k in ("reason", "model")},
            "from": float(f["values"][0][0]) - t0,
            "to": float(f["values"][-1][0]) - t0,
        }
        for f in firing
    ]
    panels = []
    for p in board["panels"]:
        if p["type"] == "row":
            continue
        series = by_panel.get(p["title"], [])
        gpu = any(promql.metric_names(s["expr"]) & set(promql.GPU_ONLY_METRICS) for s in series)
        panels.append(
            {"title": p["title"], "gridPos": p["gridPos"], "unit": p.get("fieldConfig", {}).get("defaults", {}).get("unit"), "series": series, "gpu": gpu}
        )
    picture = Path(args.picture)
    picture.parent.mkdir(parents=True, exist_ok=True)
    draw(board, panels, phases, spans, t0, picture)
    empty = [p["title"] for p in panels if not any(s["result"] for s in p["series"]) and not p["gpu"]]
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "command": "python bench/dashboard_render.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": time.perf_counter() - started,
        "scrape_interval": SCRAPE,
        "rate_interval": RATE_INTERVAL,
        "failing_tool": failing_tool,
        "failing_model": b.tool_model_name(failing_tool),
        "phases": [{k: (round(v - t0, 1) if k in ("start", "end") else v) for k, v in ph.items()} for ph in phases],
        "alerts_seen": sorted(f"{n} ({s})" for n, s in alerts_seen),
        "alerts_firing": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in span.items()} for span in spans],
        "panels": [{"title": p["title"], "gpu": p["gpu"], "series": [len(s["result"]) for s in p["series"]]} for p in panels],
        "non_gpu_panels_without_data": empty,
    }
    (out / "dashboard_render.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# The serving dashboard drawn from a real scrape",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}; {report['seconds']:.0f} s in all.",
        "",
        "A rendering of the panels' queries with matplotlib, **not a Grafana screenshot** (no Grafana runs here): "
        "a real Triton on CPU serving the shipped default policy, scraped every "
        f"{SCRAPE} by a real Prometheus with the chart's alert rules; each panel's targets sent as range queries "
        f"with the dashboard's own variables and `$__rate_interval` = {RATE_INTERVAL}.",
        "",
        f"![dashboard]({os.path.relpath(picture.resolve(), out.resolve())})",
        "",
        "| phase | clients | tool failing | full answers | partial answers | errors | from (s) | to (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ph in report["phases"]:
        failing = f"`{failing_tool}`" if ph["failing"] else "-"
        lines.append(f"| {ph['phase']} | {ph['clients']} | {failing} | {ph['full']} | {ph['partial']} | {ph['error']} | {ph['start']} | {ph['end']} |")
    lines += [
        "",
        "A request whose FIRST step hits the failing tool has no earlier image to return, so it is an error; "
        "one that fails at a later step is a partial answer (the best image so far, flagged), as the serving docs say.",
        "",
        f"Alerts seen (pending or firing): {', '.join(report['alerts_seen']) or 'none'}. Firing (the orange bars): "
        + (", ".join(f"{a['alert']} {a['reason'] or a['model']} from {a['from']} s to {a['to']} s" for a in report["alerts_firing"]) or "none")
        + " (the chart's rules, `for` shortened to 10 s; the agent-failure alert needs more than 5 % of the last 5 minutes' requests to fail).",
        "",
        f"Panels without data that need no GPU: {', '.join(empty) or 'none'}. GPU panels: "
        + ", ".join(p["title"] for p in panels if p["gpu"])
        + " (no GPU series on a CPU server).",
    ]
    (out / "dashboard_render.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if empty else 0


if __name__ == "__main__":
    raise SystemExit(main())
