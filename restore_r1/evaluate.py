"""Evaluation of the agent against the baselines on held-out synthetic images (paper Tables 5–7).

Held-out clean images (default: the bundled photos never used in training) are degraded on the
fly with the seed, per case, exactly as :mod:`restore_r1.synth` would (same per-pair seeding), so
held-out images never touch training and every run with the same seed sees the same inputs.

Each (pair, method) result is appended to ``records.jsonl`` as soon as it is computed, so an
interrupted evaluation resumes where it stopped. The outputs are:

* ``results.json``: ``{"summary": {METHOD: {...}}, "cases": {CASE: {METHOD: {...}}},
  "settings": {"I": {METHOD: {...}}, ...}, "unavailable": {METRIC: reason}, "config": {...},
  "pixel_versions": {PACKAGE: VERSION}}`` — means per image of every metric, ``tool_calls`` and
  ``seconds``, and the versions of the pixel libraries it ran with (:mod:`restore_r1.versions`);
* ``summary.csv``, ``cases.csv``, ``settings.csv`` and ``results.md`` (laid out like the paper's
  tables, unavailable metrics shown as such);
* ``perception_distortion.png`` (paper Fig. 7) and ``qualitative.png`` (paper Fig. 8).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.images import atomic_write_bytes, list_images, read_image, write_image
from restore_r1.versions import pixel_versions

#: The paper's metric columns (Tables 5–7), then the offline no-reference ones.
PAPER_METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips", "maniqa", "clipiqa", "musiq", "deqa")
OFFLINE_NR_METRICS: tuple[str, ...] = ("niqe", "piqe")
DEFAULT_METRICS: tuple[str, ...] = PAPER_METRICS + OFFLINE_NR_METRICS
ALL_METHODS: tuple[str, ...] = ("input", "random", "fixed", "exploration", "oracle", "policy")
RECORDS_FILE = "records.jsonl"
SETTINGS: tuple[str, ...] = ("I", "II", "III", "IV")
#: Column titles used in the Markdown tables.
METRIC_TITLES = {
    "psnr": "PSNR↑",
    "ssim": "SSIM↑",
    "lpips": "LPIPS↓",
    "maniqa": "MANIQA↑",
    "clipiqa": "CLIP-IQA↑",
    "musiq": "MUSIQ↑",
    "deqa": "DeQA↑",
    "niqe": "NIQE↓",
    "piqe": "PIQE↓",
}


@dataclass
class EvalConfig:
    """What to evaluate.

    Attributes:
        cases: case numbers (docs/method.md §3).
        per_case: degraded images per (clean image, case).
        seed: seed of the synthesis (same meaning as ``restore-r1 synth --seed``).
        crop: side of random square crops, or None for whole images.
        methods: names from :data:`ALL_METHODS`.
        metrics: metric names (``restore_r1.metrics``); unavailable ones are reported as such.
        max_steps: tool-call budget of ``random`` and ``exploration``.
        oracle_depth: sequence length searched by the ``oracle``.
        images: folder of clean images, or None for the bundled held-out photos.
        policy: policy folder or registry URI (None: the default policy).
        judge: judge name used by ``exploration`` and for the scores of ``policy``.
        tools: the tools every method may use (None: the policy's own tools when ``policy`` is
            evaluated, else every available tool), so that all methods compare on one tool set.
        grid_cases: cases shown in the qualitative grid (first pair of each).
    """

    cases: list[int]
    per_case: int = 1
    seed: int = 0
    crop: int | None = None
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    max_steps: int = 5
    oracle_depth: int = 2
    images: str | None = None
    policy: str | None = None
    judge: str = "default"
    tools: list[str] | None = None
    grid_cases: list[int] = field(default_factory=lambda: [5, 11, 15])

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {list(ALL_METHODS)}")
        if not self.methods:
            raise ValueError("no methods given")
        if self.per_case < 1:
            raise ValueError(f"per_case {self.per_case} must be >= 1")


@dataclass
class Pair:
    """One held-out evaluation input."""

    id: str
    case: int
    setting: str
    gt: np.ndarray
    lq: np.ndarray


def held_out_pairs(config: EvalConfig) -> list[Pair]:
    """Synthesises the evaluation pairs (see the module doc); bad clean images raise."""
    from restore_r1 import cleanimages
    from restore_r1.degradations import CASES, apply_case
    from restore_r1.synth import crop_box, pair_id, pair_rngs

    if config.images is None:
        sources = [(name, name, lambda n=name: cleanimages.load_clean(n)) for name in cleanimages.HELDOUT_NAMES]
    else:
        files = list_images(config.images)
        if not files:
            raise ValueError(f"{config.images}: no images found")
        sources = [(p.name, p.stem, lambda p=p: read_image(p)) for p in files]
    pairs = []
    for name, stem, load in sources:
        img = load()
        for case in config.cases:
            for index in range(config.per_case):
                crop_rng, degrade_rng = pair_rngs(config.seed, name, case, index)
                gt = img
                if config.crop is not None:
                    box = crop_box(img.shape, config.crop, crop_rng)
                    gt = np.ascontiguousarray(img[box["top"] : box["top"] + box["height"], box["left"] : box["left"] + box["width"]])
                lq, _ = apply_case(case, gt, degrade_rng)
                pairs.append(Pair(pair_id(stem, case, index), case, CASES[case].setting, gt, lq))
    return pairs


class _Methods:
    """Binds every method to the shared tools, judge and policy."""

    def __init__(self, config: EvalConfig) -> None:
        from restore_r1.agent.baselines import fixed_sequence
        from restore_r1.agent.inference import available_tool_map
        from restore_r1.judges import create_judge
        from restore_r1.tools import get_tool

        self.config = config
        self.judge = create_judge(config.judge)
        self.agent = None
        if "policy" in config.methods:
            from restore_r1.agent.inference import load_agent
            from restore_r1.registry import local_policy

            self.agent = load_agent(local_policy(config.policy), judge=self.judge)
        if config.tools:
            self.tools = available_tool_map(list(config.tools))
        elif self.agent is not None:
            self.tools = dict(self.agent.tools)
        else:
            self.tools = available_tool_map()
        types = {name: get_tool(name).degradation for name in self.tools}
        from restore_r1.agent.baselines import FIXED_PREFERRED

        self.fixed = fixed_sequence(types, {k: v for k, v in FIXED_PREFERRED.items() if v in types})

    def run(self, method: str, pair: Pair, rng: np.random.Generator):
        from restore_r1.agent.baselines import BASELINES, MethodResult, timed

        if method == "policy":
            res = self.agent.restore(pair.lq)
            return MethodResult(image=res.image, tools=res.tools, tool_calls=len(res.tools), scores=res.scores, seconds=res.seconds)
        return timed(
            BASELINES.get(method),
            pair.lq,
            tools=self.tools,
            judge=self.judge,
            rng=rng,
            clean=pair.gt,
            max_steps=self.config.max_steps,
            oracle_depth=self.config.oracle_depth,
            sequence=self.fixed,
        )


class _Scorer:
    """Computes the available metrics; remembers why the others are unavailable."""

    def __init__(self, names: Sequence[str]) -> None:
        from restore_r1.metrics import METRICS, create_metric, metric_availability

        self.names = list(names)
        self.unavailable: dict[str, str] = {}
        self.metrics = {}
        for name in self.names:
            ok, reason = metric_availability(name)
            if ok:
                self.metrics[name] = create_metric(name)
            else:
                self.unavailable[name] = reason
        self.lower_better = {n: METRICS.get(n).lower_better for n in self.names}
        self.full_reference = {n: METRICS.get(n).full_reference for n in self.names}

    def __call__(self, img: np.ndarray, ref: np.ndarray) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in self.names:
            metric = self.metrics.get(name)
            if metric is None:
                out[name] = None
            else:
                value = float(metric(img, ref) if self.full_reference[name] else metric(img))
                out[name] = value if math.isfinite(value) else None
        return out


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything before it is intact
    return records


def _method_rng(seed: int, pair_id: str, method: str) -> np.random.Generator:
    import hashlib

    digest = hashlib.sha256(f"{pair_id}|{method}".encode()).digest()[:8]
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def evaluate(config: EvalConfig, out_dir: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Runs every method on every held-out pair, writes the outputs, returns ``results.json``."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    saved_config = out / "config.json"
    from restore_r1.judges import resolve_judge_name

    config_dict = asdict(config)
    config_dict["judge"] = resolve_judge_name(config.judge)  # "default" names a judge that may change
    # Tools give other bytes under other numpy/OpenCV/... versions: a resume never mixes them.
    config_dict["pixel_versions"] = pixel_versions()
    if saved_config.is_file():
        previous = json.loads(saved_config.read_text())
        keys = ("cases", "per_case", "seed", "crop", "images", "max_steps", "oracle_depth", "judge", "policy", "tools", "pixel_versions")
        changed = [k for k in keys if previous.get(k) != config_dict.get(k)]
        if changed:
            raise ValueError(f"{out} holds an evaluation with other settings ({', '.join(changed)}); use another --out")
    atomic_write_bytes(saved_config, json.dumps(config_dict, indent=2).encode())

    pairs = held_out_pairs(config)
    records_path = out / RECORDS_FILE
    records = _read_records(records_path)
    atomic_write_bytes(records_path, "".join(json.dumps(r) + "\n" for r in records).encode())  # drop a cut line
    done = {(r["id"], r["method"]) for r in records}
    todo = [(p, m) for p in pairs for m in config.methods if (p.id, m) not in done]
    scorer = _Scorer(config.metrics)
    methods = _Methods(config) if todo else None
    grid_ids = {next((p.id for p in pairs if p.case == c), None) for c in config.grid_cases}
    with (
        tqdm(
            total=len(pairs) * len(config.methods),
            initial=len(pairs) * len(config.methods) - len(todo),
            desc="evaluate",
            unit="run",
            file=sys.stderr,
            disable=not progress,
        ) as bar,
        open(records_path, "a") as fh,
    ):
        for pair, method in todo:
            bar.set_postfix(case=pair.case, method=method)
            res = methods.run(method, pair, _method_rng(config.seed, pair.id, method))
            record = {
                "id": pair.id,
                "case": pair.case,
                "setting": pair.setting,
                "method": method,
                "tools": list(res.tools),
                "tool_calls": int(res.tool_calls),
                "seconds": float(res.seconds),
                "judge_scores": [float(s) for s in res.scores],
                "metrics": scorer(res.image, pair.gt),
            }
            if pair.id in grid_ids:
                write_image(out / "images" / pair.id / f"{method}.png", res.image)
                write_image(out / "images" / pair.id / "gt.png", pair.gt)
                write_image(out / "images" / pair.id / "lq.png", pair.lq)
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(1)
    records = _read_records(records_path)
    results = aggregate(records, config, scorer.unavailable)
    results["pixel_versions"] = config_dict["pixel_versions"]
    write_reports(results, records, config, out)
    return results


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _summarise(records: list[dict], metrics: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {m: _mean([r["metrics"].get(m) for r in records]) for m in metrics}
    row["tool_calls"] = _mean([r["tool_calls"] for r in records])
    row["seconds"] = _mean([r["seconds"] for r in records])
    row["images"] = len(records)
    return row


def aggregate(records: list[dict], config: EvalConfig, unavailable: dict[str, str]) -> dict[str, Any]:
    """Means per image: overall, per case and per setting (settings average their images)."""
    by = defaultdict(list)
    for r in records:
        by[("all", r["method"])].append(r)
        by[("case", r["case"], r["method"])].append(r)
        by[("setting", r["setting"], r["method"])].append(r)
    methods = [m for m in config.methods if ("all", m) in by]
    results: dict[str, Any] = {
        "summary": {m: _summarise(by[("all", m)], config.metrics) for m in methods},
        "cases": {},
        "settings": {},
        "unavailable": dict(unavailable),
        "config": asdict(config),
    }
    for case in sorted({r["case"] for r in records}):
        results["cases"][str(case)] = {m: _summarise(by[("case", case, m)], config.metrics) for m in methods if by.get(("case", case, m))}
    for setting in SETTINGS:
        rows = {m: _summarise(by[("setting", setting, m)], config.metrics) for m in methods if by.get(("setting", setting, m))}
        if rows:
            results["settings"][setting] = rows
    if "oracle" in methods and "input" in methods and "policy" in methods:
        s = results["summary"]
        gain_oracle = (s["oracle"]["psnr"] or 0) - (s["input"]["psnr"] or 0)
        gain_policy = (s["policy"]["psnr"] or 0) - (s["input"]["psnr"] or 0)
        results["oracle_gain_share"] = gain_policy / gain_oracle if gain_oracle > 0 else None
    return results


def _fmt(value: Any, metric: str, unavailable: dict[str, str]) -> str:
    if metric in unavailable:
        return "n/a"
    if value is None:
        return "–"
    if metric in ("ssim", "lpips", "maniqa", "clipiqa"):
        return f"{value:.3f}"
    if metric == "seconds":
        return f"{value:.3f}"
    return f"{value:.2f}"


def _columns(config: EvalConfig) -> list[str]:
    return list(config.metrics) + ["tool_calls", "seconds"]


def _table(rows: list[tuple[str, str, dict]], first: str, config: EvalConfig, unavailable: dict[str, str]) -> str:
    cols = _columns(config)
    head = f"| {first} | method | " + " | ".join(METRIC_TITLES.get(c, c.replace("_", " ")) for c in cols) + " |"
    sep = "|" + "---|" * (len(cols) + 2)
    lines = [head, sep]
    for key, method, row in rows:
        lines.append(f"| {key} | {method} | " + " | ".join(_fmt(row.get(c), c, unavailable) for c in cols) + " |")
    return "\n".join(lines)


def _csv(rows: list[tuple[str, str, dict]], first: str, config: EvalConfig) -> bytes:
    buf = io.StringIO()
    cols = _columns(config)
    writer = csv.writer(buf)
    writer.writerow([first, "method", *cols])
    for key, method, row in rows:
        writer.writerow([key, method, *("" if row.get(c) is None else row.get(c) for c in cols)])
    return buf.getvalue().encode()


def write_reports(results: dict[str, Any], records: list[dict], config: EvalConfig, out: Path) -> None:
    """Writes results.json, the CSV tables, results.md and the two figures."""
    unavailable = results["unavailable"]
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=2).encode())
    summary_rows = [("all", m, row) for m, row in results["summary"].items()]
    case_rows = [(c, m, row) for c, rows in results["cases"].items() for m, row in rows.items()]
    setting_rows = [(s, m, row) for s, rows in results["settings"].items() for m, row in rows.items()]
    atomic_write_bytes(out / "summary.csv", _csv(summary_rows, "scope", config))
    atomic_write_bytes(out / "cases.csv", _csv(case_rows, "case", config))
    atomic_write_bytes(out / "settings.csv", _csv(setting_rows, "setting", config))
    md = ["# Restore-R1 evaluation", ""]
    md.append(
        f"Held-out images: {config.images or 'bundled held-out photos'}; cases {config.cases}; {config.per_case} per case; "
        f"seed {config.seed}; crop {config.crop}; judge `{config.judge}`; oracle depth {config.oracle_depth}. "
        "Means per image; `tool_calls` and `seconds` per image."
    )
    md += ["", "## Summary (all cases)", "", _table(summary_rows, "scope", config, unavailable), ""]
    if results.get("oracle_gain_share") is not None:
        md += [f"The policy recovers {100 * results['oracle_gain_share']:.1f}% of the oracle's PSNR gain over the input.", ""]
    md += ["## Per setting (paper Table 5 layout)", "", _table(setting_rows, "setting", config, unavailable), ""]
    md += ["## Per case (paper Tables 6–7 layout)", "", _table(case_rows, "case", config, unavailable), ""]
    if unavailable:
        md += ["## Unavailable metrics", ""] + [f"- `{m}`: {why}" for m, why in unavailable.items()] + [""]
    atomic_write_bytes(out / "results.md", "\n".join(md).encode())
    _plot_perception_distortion(results, config, unavailable, out / "perception_distortion.png")
    _plot_grid(config, out, out / "qualitative.png")


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(fig, path: Path) -> None:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _perceptual_metric(config: EvalConfig, unavailable: dict[str, str]) -> str | None:
    for name in ("musiq", "deqa", "maniqa", "clipiqa", "niqe", "piqe"):
        if name in config.metrics and name not in unavailable:
            return name
    return None


def _plot_perception_distortion(results: dict, config: EvalConfig, unavailable: dict[str, str], path: Path) -> None:
    plt = pyplot()

    perceptual = _perceptual_metric(config, unavailable)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    if perceptual is None or "psnr" not in config.metrics:
        ax.text(0.5, 0.5, "no perceptual metric available", ha="center")
    else:
        for method, row in results["summary"].items():
            if row.get("psnr") is None or row.get(perceptual) is None:
                continue
            ax.scatter(row[perceptual], row["psnr"], s=40)
            ax.annotate(method, (row[perceptual], row["psnr"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        lower = perceptual in ("niqe", "piqe")
        ax.set_xlabel(f"{METRIC_TITLES.get(perceptual, perceptual)} (perception, {'lower' if lower else 'higher'} is better)")
        if lower:
            ax.invert_xaxis()
        ax.set_ylabel("PSNR (dB, distortion: higher is better)")
    ax.set_title("Perception–distortion trade-off (cf. paper Fig. 7)")
    write_figure(fig, path)


def _plot_grid(config: EvalConfig, out: Path, path: Path) -> None:
    plt = pyplot()

    ids = sorted(p.name for p in (out / "images").iterdir() if p.is_dir())
    if not ids:
        return
    columns = ["lq", *config.methods, "gt"]
    fig, axes = plt.subplots(len(ids), len(columns), figsize=(1.6 * len(columns), 1.7 * len(ids)), dpi=120, squeeze=False)
    for r, ident in enumerate(ids):
        for c, col in enumerate(columns):
            ax = axes[r][c]
            ax.axis("off")
            f = out / "images" / ident / f"{col}.png"
            if f.is_file():
                ax.imshow(read_image(f))
            if r == 0:
                ax.set_title({"lq": "input", "gt": "clean"}.get(col, col), fontsize=8)
        axes[r][0].text(-0.05, 0.5, ident, transform=axes[r][0].transAxes, rotation=90, ha="right", va="center", fontsize=6)
    fig.suptitle("Qualitative comparison (cf. paper Fig. 8)", fontsize=9)
    write_figure(fig, path)
