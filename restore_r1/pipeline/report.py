"""Evaluation reports for the pipeline: flat key metrics (KFP Metrics) and Markdown/HTML pages.

The KFP UI renders ``Markdown`` and ``HTML`` artifacts in a run's page and compares ``Metrics``
across runs; this module turns an evaluation's ``results.json`` (see :mod:`restore_r1.evaluate`)
into all three.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

#: Figures of the evaluation folder embedded in the HTML report (file, caption).
FIGURES = (
    ("perception_distortion.png", "Perception–distortion trade-off (cf. paper Fig. 7)"),
    ("qualitative.png", "Qualitative comparison (cf. paper Fig. 8)"),
)


def metric_key(method: str, metric: str) -> str:
    """The flat name of a summary value, e.g. ``policy_psnr``."""
    return f"{method}_{metric}"


def key_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Every finite summary number as ``METHOD_METRIC`` (plus ``oracle_gain_share`` and ``policy_psnr_gain``).

    ``images`` counts are left out; unavailable metrics (None) are skipped.
    """
    out: dict[str, float] = {}
    for method, row in results.get("summary", {}).items():
        for metric, value in row.items():
            if metric != "images" and isinstance(value, (int, float)) and math.isfinite(value):
                out[metric_key(method, metric)] = float(value)
    share = results.get("oracle_gain_share")
    if isinstance(share, (int, float)) and math.isfinite(share):
        out["oracle_gain_share"] = float(share)
    if "policy_psnr" in out and "input_psnr" in out:
        out["policy_psnr_gain"] = out["policy_psnr"] - out["input_psnr"]
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rows(results: dict[str, Any]) -> tuple[list[str], list[tuple[str, dict]]]:
    summary = results.get("summary", {})
    columns: list[str] = []
    for row in summary.values():
        columns += [c for c in row if c not in columns]
    return columns, list(summary.items())


def summary_markdown(results: dict[str, Any], title: str = "Restore-R1 evaluation") -> str:
    """A Markdown page: the summary table, the settings table and unavailable metrics."""
    columns, rows = _rows(results)
    lines = [f"# {title}", ""]
    config = results.get("config", {})
    if config:
        lines += [
            f"Cases {config.get('cases')}, {config.get('per_case')} per case, seed {config.get('seed')}, "
            f"crop {config.get('crop')}, judge `{config.get('judge')}`.",
            "",
        ]
    lines += ["| method | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [f"| {m} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for m, row in rows]
    for setting, by_method in results.get("settings", {}).items():
        lines += ["", f"## Setting {setting}", "", "| method | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
        lines += [f"| {m} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for m, row in by_method.items()]
    if results.get("unavailable"):
        lines += ["", "## Unavailable metrics", ""] + [f"- `{m}`: {why}" for m, why in results["unavailable"].items()]
    return "\n".join(lines) + "\n"


def summary_html(results: dict[str, Any], eval_dir: str | Path | None = None, title: str = "Restore-R1 evaluation") -> str:
    """A self-contained HTML page: the tables and the evaluation's figures inlined as PNG data URIs."""
    columns, rows = _rows(results)

    def table(items: list[tuple[str, dict]]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["method", *columns])
        body = "".join(
            "<tr><td>" + html.escape(m) + "</td>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>" for m, row in items
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        table(rows),
    ]
    for setting, by_method in results.get("settings", {}).items():
        parts += [f"<h2>Setting {html.escape(setting)}</h2>", table(list(by_method.items()))]
    if eval_dir is not None:
        for name, caption in FIGURES:
            path = Path(eval_dir) / name
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                parts += [f"<h2>{html.escape(caption)}</h2>", f"<img alt='{name}' src='data:image/png;base64,{data}'>"]
    parts.append("</body></html>")
    return "\n".join(parts)
