"""Live metrics of a GRPO run: names, kinds and help in one table, and the exporter rank 0 runs.

What is exported (``prometheus-client``, a registry of its own), after every update:

- the update's batch: episode return R = Σ r_t (the reward GRPO normalises) mean and std,
  advantage std, KL to the reference policy, entropy, loss, gradient norm, clipped-ratio share,
  mean tool calls per episode — as gauges of the last update;
- counters: episodes rolled out (rate = rollouts per second), tool calls by tool (the tool-call
  mix), tool-cache lookups by result (the hit rate), and a histogram of seconds per update;
- progress: the last update's index and the number planned, and the world size.

Every series carries a ``run`` label (``--metrics-run``, default the run folder's name), so one
Prometheus or Pushgateway tells runs apart. :class:`PrometheusExporter` serves them on
``/metrics`` (``--metrics-port``; a PodMonitor scrapes rank 0's pod) and/or PUTs them to a
Pushgateway after every update and at the end (``--pushgateway``: short pipeline steps that may end
between two scrapes). A failing Pushgateway never stops training: it is logged once per outage.

The training dashboard (restore_r1.deploy.dashboard) and its tests are written against the
constants below; renaming one is a breaking change.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: Environment defaults of ``restore-r1 train --metrics-port`` / ``--pushgateway`` (the pipeline's TrainJob sets them).
METRICS_PORT_ENV = "RESTORE_R1_METRICS_PORT"
PUSHGATEWAY_ENV = "RESTORE_R1_PUSHGATEWAY"
#: Prefix of every training metric.
PREFIX = "restore_r1_train_"
#: Label on every series: the run's name.
RUN_LABEL = "run"

UPDATE = "restore_r1_train_update"  # gauge: index of the last finished update (1-based)
UPDATES_PLANNED = "restore_r1_train_updates_planned"  # gauge: GRPOConfig.updates
WORLD_SIZE = "restore_r1_train_world_size"  # gauge: data-parallel ranks
REWARD_MEAN = "restore_r1_train_reward_mean"  # gauge: mean episode return R of the last batch
REWARD_STD = "restore_r1_train_reward_std"  # gauge: population std of R over the last batch
ADVANTAGE_STD = "restore_r1_train_advantage_std"
KL = "restore_r1_train_kl"  # gauge: k3 KL(π_θ || π_ref), step-weighted, last epoch
ENTROPY = "restore_r1_train_entropy"
LOSS = "restore_r1_train_loss"
GRAD_NORM = "restore_r1_train_grad_norm"  # gauge: before clipping
CLIP_FRAC = "restore_r1_train_clip_frac"
MEAN_STEPS = "restore_r1_train_episode_steps_mean"  # gauge: tool calls per episode, last batch
ROLLOUTS_TOTAL = "restore_r1_train_rollouts_total"  # counter: episodes rolled out
TOOL_CALLS_TOTAL = "restore_r1_train_tool_calls_total"  # counter, label tool
TOOL_CACHE_LOOKUPS_TOTAL = "restore_r1_train_tool_cache_lookups_total"  # counter, label result
UPDATE_SECONDS = "restore_r1_train_update_seconds"  # histogram: wall seconds per update (rank 0)

#: Values of the ``result`` label of :data:`TOOL_CACHE_LOOKUPS_TOTAL`.
CACHE_HIT, CACHE_MISS = "hit", "miss"
#: Seconds per update: a 64-pixel batch takes ~1 s on one core, a 256-pixel corpus batch ~6 s.
UPDATE_SECONDS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"


@dataclass(frozen=True)
class MetricSpec:
    """One training metric: exported name (counters end in ``_total``), kind, HELP, labels besides ``run``."""

    name: str
    kind: str
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def family(self) -> str:
        """prometheus-client's name for it (a counter without ``_total``)."""
        return self.name.removesuffix("_total") if self.kind == COUNTER else self.name


#: Every training metric, in export order.
TRAIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(UPDATE, GAUGE, "Index of the last finished GRPO update (1-based)"),
    MetricSpec(UPDATES_PLANNED, GAUGE, "GRPO updates the run is configured for"),
    MetricSpec(WORLD_SIZE, GAUGE, "Data-parallel ranks of the run"),
    MetricSpec(REWARD_MEAN, GAUGE, "Mean episode return (sum of step rewards) of the last update's batch"),
    MetricSpec(REWARD_STD, GAUGE, "Population std of the episode returns of the last update's batch"),
    MetricSpec(ADVANTAGE_STD, GAUGE, "Std of the group-normalised advantages of the last update"),
    MetricSpec(KL, GAUGE, "k3 KL of the policy to the reference policy, last gradient step"),
    MetricSpec(ENTROPY, GAUGE, "Mean policy entropy over the decision steps, last gradient step"),
    MetricSpec(LOSS, GAUGE, "GRPO loss, last gradient step"),
    MetricSpec(GRAD_NORM, GAUGE, "Global gradient L2 norm before clipping, last gradient step"),
    MetricSpec(CLIP_FRAC, GAUGE, "Share of decision steps whose probability ratio was clipped"),
    MetricSpec(MEAN_STEPS, GAUGE, "Mean tool calls per episode of the last update's batch"),
    MetricSpec(ROLLOUTS_TOTAL, COUNTER, "Episodes rolled out"),
    MetricSpec(TOOL_CALLS_TOTAL, COUNTER, "Tool calls made in the rollouts, by tool", ("tool",)),
    MetricSpec(TOOL_CACHE_LOOKUPS_TOTAL, COUNTER, "Tool-cache lookups in the rollouts, by result (hit or miss)", ("result",)),
    MetricSpec(UPDATE_SECONDS, HISTOGRAM, "Wall seconds per GRPO update on rank 0 (rollouts, loss, checkpoint)", (), UPDATE_SECONDS_BUCKETS),
)
#: Gauges set from the log record of each update: metric -> record key.
RECORD_GAUGES: Mapping[str, str] = {
    ADVANTAGE_STD: "advantage_std",
    KL: "kl",
    ENTROPY: "entropy",
    LOSS: "loss",
    GRAD_NORM: "grad_norm",
    CLIP_FRAC: "clip_frac",
    MEAN_STEPS: "mean_steps",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def sample_names() -> set[str]:
    """Every sample name the exporter writes (histograms expanded)."""
    names: set[str] = set()
    for spec in TRAIN_METRICS:
        names.add(spec.name)
        if spec.kind == HISTOGRAM:
            names.update(spec.name + s for s in HISTOGRAM_SUFFIXES)
    return names


class Episode(Protocol):
    """What the exporter reads of an episode (restore_r1.agent.trainer.EpisodeSummary)."""

    ret: float
    tools: Sequence[str]


class TrainingMonitor(Protocol):
    """What the trainer calls on rank 0."""

    def start(self, planned_updates: int, done_updates: int, tool_names: Sequence[str], world_size: int) -> None: ...

    def observe(self, record: Mapping[str, Any], episodes: Sequence[Episode], cache_hits: int, cache_misses: int) -> None: ...

    def close(self, linger: bool = True) -> None: ...


def check_pushgateway_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` or raises ValueError naming the value."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"Pushgateway URL {url!r}: expected http://host:port (e.g. http://pushgateway.monitoring:9091)")
    return url.rstrip("/")


class PrometheusExporter:
    """The training metrics of one run: served on ``/metrics``, pushed to a Pushgateway, or both.

    Args:
        run: value of the ``run`` label (and the Pushgateway grouping key).
        port: serve ``/metrics`` on this port (0: a free one, see :attr:`port`); None: no server.
        addr: address to bind the server to.
        pushgateway: ``http://host:port`` of a Pushgateway; None: no push.
        job: the Pushgateway ``job`` the metrics are pushed under.
        linger_s: after the last update, keep serving ``/metrics`` this long, so that a scrape
            every ``interval`` seconds sees the final values (only with ``port``).
        push_timeout_s: seconds per push request.

    Raises:
        ValueError: a bad Pushgateway URL or port.
    """

    def __init__(
        self,
        run: str,
        port: int | None = None,
        addr: str = "0.0.0.0",
        pushgateway: str | None = None,
        job: str = "restore-r1-train",
        linger_s: float = 0.0,
        push_timeout_s: float = 10.0,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        if not run:
            raise ValueError("metrics run name is empty")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"metrics port {port} outside 0-65535")
        if linger_s < 0:
            raise ValueError(f"metrics linger {linger_s} s must be >= 0")
        self.run, self.requested_port, self.addr, self.job = run, port, addr, job
        self.pushgateway = check_pushgateway_url(pushgateway) if pushgateway else None
        self.linger_s, self.push_timeout_s = float(linger_s), float(push_timeout_s)
        self.registry = CollectorRegistry(auto_describe=True)
        kinds = {GAUGE: Gauge, COUNTER: Counter, HISTOGRAM: Histogram}
        self.metrics: dict[str, Any] = {}
        for spec in TRAIN_METRICS:
            extra = {"buckets": spec.buckets} if spec.kind == HISTOGRAM else {}
            self.metrics[spec.name] = kinds[spec.kind](spec.family, spec.description, (RUN_LABEL, *spec.labels), registry=self.registry, **extra)
        self._server = None
        self.port: int | None = None
        self.push_failures = 0
        self._outage = False

    def _m(self, name: str, **labels: str):
        return self.metrics[name].labels(run=self.run, **labels)

    # ------------------------------------------------------------------------------ lifecycle
    def start(self, planned_updates: int, done_updates: int, tool_names: Sequence[str], world_size: int) -> None:
        """Sets the progress gauges, creates every labelled series at 0 (a counter series that
        first appears already at N shows no increase to rate()), starts the server, pushes once."""
        from prometheus_client import start_http_server

        self._m(UPDATES_PLANNED).set(planned_updates)
        self._m(UPDATE).set(done_updates)
        self._m(WORLD_SIZE).set(world_size)
        self._m(ROLLOUTS_TOTAL)
        self._m(UPDATE_SECONDS)
        for tool in tool_names:
            self._m(TOOL_CALLS_TOTAL, tool=tool)
        for result in (CACHE_HIT, CACHE_MISS):
            self._m(TOOL_CACHE_LOOKUPS_TOTAL, result=result)
        for name in (REWARD_MEAN, REWARD_STD, *RECORD_GAUGES):
            self._m(name).set(float("nan"))  # no update yet: NaN, not a misleading 0
        if self.requested_port is not None and self._server is None:
            self._server, _ = start_http_server(self.requested_port, addr=self.addr, registry=self.registry)
            self.port = self._server.server_port
        self.push()

    def observe(self, record: Mapping[str, Any], episodes: Sequence[Episode], cache_hits: int, cache_misses: int) -> None:
        """One finished update: its log record, the whole batch's episodes, the cache counts."""
        import numpy as np

        returns = np.array([e.ret for e in episodes], dtype=np.float64)
        self._m(UPDATE).set(record["update"])
        self._m(REWARD_MEAN).set(float(returns.mean()))
        self._m(REWARD_STD).set(float(returns.std()))
        for name, key in RECORD_GAUGES.items():
            self._m(name).set(float(record[key]))
        self._m(ROLLOUTS_TOTAL).inc(len(episodes))
        for tool, n in Counter(t for e in episodes for t in e.tools).items():
            self._m(TOOL_CALLS_TOTAL, tool=tool).inc(n)
        self._m(TOOL_CACHE_LOOKUPS_TOTAL, result=CACHE_HIT).inc(cache_hits)
        self._m(TOOL_CACHE_LOOKUPS_TOTAL, result=CACHE_MISS).inc(cache_misses)
        self._m(UPDATE_SECONDS).observe(float(record["seconds"]))
        self.push()

    def push(self) -> bool:
        """PUT the registry to the Pushgateway (grouping key ``run``); False when it failed."""
        if self.pushgateway is None:
            return True
        from prometheus_client import push_to_gateway

        try:
            push_to_gateway(self.pushgateway, job=self.job, registry=self.registry, grouping_key={RUN_LABEL: self.run}, timeout=self.push_timeout_s)
        except OSError as exc:  # URLError and HTTPError are OSErrors: the gateway is down or refused
            self.push_failures += 1
            if not self._outage:
                logger.warning("pushing training metrics to %s failed (%s); training goes on, retrying after each update", self.pushgateway, exc)
            self._outage = True
            return False
        if self._outage:
            logger.warning("pushing training metrics to %s works again", self.pushgateway)
        self._outage = False
        return True

    def close(self, linger: bool = True) -> None:
        """Final push; serve ``linger_s`` more seconds (``linger``: after a run that ended well); stop the server."""
        self.push()
        if self._server is not None:
            if linger and self.linger_s:
                time.sleep(self.linger_s)
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str | None:
        """``http://addr:port/metrics`` once serving."""
        return f"http://{self.addr}:{self.port}/metrics" if self.port is not None else None
