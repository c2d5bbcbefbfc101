"""``restore-r1 score IMG... [--ref GT] [--metrics psnr,ssim,niqe] [--json]``: image-quality scores.

Metrics (``--metrics``): names from :func:`restore_r1.metrics.list_metrics`, and judges as
``judge:NAME`` (a name of :data:`restore_r1.judges.JUDGES`, or ``judge:default``), scored by
``create_judge(NAME).score([image])`` on their 1–5 scale (higher is better). Judges are
no-reference and run with their defaults (``--device`` is for the metrics), except the relative
judge (``judge:relative``): it scores a restored image against the INPUT it was restored from,
given as ``--ref``, in predicted dB of PSNR gain.

References (``--ref``): with one image, ``--ref`` is the reference file (or a folder holding a
file of the image's name); with several images it must be a folder, and each image is compared
with the file of the same name in it. Full-reference metrics need ``--ref``.

Output: a table, one row per image and one column per metric; a metric that cannot run here shows
``unavailable`` in its column and its reason is printed once below the table. ``--json`` prints a
JSON list of ``{"image", "scores": {metric: value or null}, "unavailable": {metric: reason}}``
(plus ``"errors": {metric: message}`` when a metric failed on that image). Unreadable images and
references are reported one line each on stderr; the others are still scored and the command
exits 1 after listing the failures.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from restore_r1.cli.common import BatchFailures, expand_inputs
from restore_r1.images import read_image

NAME = "score"
HELP = "score images with quality metrics (PSNR, SSIM, NIQE, ...)"

#: Used when --metrics is not given: the paper's metrics (docs/method.md §5) and the offline classics;
#: full-reference ones only when --ref is given.
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "maniqa", "clipiqa", "musiq", "deqa", "niqe", "piqe")
#: Table cell for a metric that cannot run here, and for one that failed on this image.
UNAVAILABLE = "unavailable"
FAILED = "error"
#: ``--metrics judge:NAME`` scores with the judge NAME of :mod:`restore_r1.judges`.
JUDGE_PREFIX = "judge:"

#: A column's scorer: (image, reference or None) -> score.
Scorer = Callable[[np.ndarray, "np.ndarray | None"], float]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files or folders of images")
    parser.add_argument(
        "--ref",
        metavar="GT",
        help="reference image (one IMG) or folder of references matched by file name (several IMGs)",
    )
    parser.add_argument(
        "--metrics",
        metavar="LIST",
        help="comma-separated metric names and judges as judge:NAME, e.g. psnr,niqe,judge:default "
        "(default: the paper's metrics plus niqe, piqe; full-reference ones only with --ref); "
        "see restore_r1.metrics.list_metrics() and restore_r1.judges.JUDGES",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the metrics (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    names = _metric_names(args.metrics, has_ref=args.ref is not None)
    full_reference = {name: _full_reference(name) for name in names}  # unknown name: KeyError -> exit 2
    if args.ref is None:
        needs_ref = [name for name, fr in full_reference.items() if fr]
        if needs_ref:
            raise ValueError(f"{', '.join(needs_ref)} need(s) a reference image: pass --ref GT")
    images = expand_inputs(args.images)
    ref_dir = _ref_folder(args.ref, len(images))

    unavailable: dict[str, str] = {}
    metrics: dict[str, Scorer] = {}
    for name in names:
        ok, reason = _availability(name)
        if ok:
            metrics[name] = _scorer(name, device=args.device)
        else:
            unavailable[name] = reason

    failures = BatchFailures()
    rows = []
    for path in images:
        try:
            img = read_image(path)
            ref = None
            if args.ref is not None:
                ref_path = ref_dir / path.name if ref_dir is not None else Path(args.ref)
                ref = read_image(ref_path)
                if ref.shape != img.shape:
                    raise ValueError(f"reference {ref_path} is {ref.shape[1]}×{ref.shape[0]} but the image is {img.shape[1]}×{img.shape[0]}")
        except Exception as exc:  # one bad item must not stop the batch
            failures.add(str(path), exc)
            continue
        scores: dict[str, float | None] = {name: None for name in names}
        errors: dict[str, str] = {}
        for name, metric in metrics.items():
            try:
                value = metric(img, ref if full_reference[name] else None)
            except Exception as exc:  # reported per item, the other metrics still run
                failures.add(str(path), RuntimeError(f"{name}: {_one_line(exc)}"))
                errors[name] = _one_line(exc)
                continue
            scores[name] = value if math.isfinite(value) else None
        rows.append({"image": str(path), "scores": scores, "unavailable": dict(unavailable), "errors": errors})

    if args.json:
        for row in rows:
            if not row["errors"]:
                del row["errors"]
        print(json.dumps(rows, indent=2, allow_nan=False))
    else:
        print(format_table(rows, names))
        for name, reason in unavailable.items():
            print(reason)
    return failures.report(len(images))


def format_table(rows: list[dict], names: list[str]) -> str:
    """Rows of ``run`` as a plain-text table: image, then one column per metric."""
    header = ["image", *names]
    lines = [header]
    for row in rows:
        cells = [row["image"]]
        for name in names:
            value = row["scores"][name]
            if name in row["unavailable"]:
                cells.append(UNAVAILABLE)
            elif name in row.get("errors", {}):
                cells.append(FAILED)
            elif value is None:
                cells.append("nan")
            else:
                cells.append(f"{value:.4f}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines)


def _metric_names(raw: str | None, has_ref: bool) -> list[str]:
    from restore_r1.metrics import METRICS

    if raw is None:
        return [n for n in DEFAULT_METRICS if has_ref or not METRICS.get(n).full_reference]
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--metrics {raw!r} names no metric")
    return list(dict.fromkeys(names))  # drop repeats, keep order


def _judge_name(name: str) -> str | None:
    """The judge of a ``judge:NAME`` column, or None for a metric."""
    if not name.startswith(JUDGE_PREFIX):
        return None
    judge = name[len(JUDGE_PREFIX) :].strip()
    if not judge:
        raise ValueError(f"--metrics {name!r} names no judge; write e.g. {JUDGE_PREFIX}default")
    return judge


def _full_reference(name: str) -> bool:
    """Whether column ``name`` needs a reference (judges only when relative: the reference is
    then the input the image was restored from, not a clean image).

    Raises:
        KeyError: unknown metric or judge (with close matches).
    """
    from restore_r1.judges import judge_availability, judge_is_relative
    from restore_r1.metrics import METRICS

    judge = _judge_name(name)
    if judge is None:
        return METRICS.get(name).full_reference
    judge_availability(judge)  # KeyError for an unknown judge, before any image is read
    return judge_is_relative(judge)


def _availability(name: str) -> tuple[bool, str]:
    """``(True, "")`` or ``(False, "<name> is unavailable: <reason>")``, from the catalogue entry
    of the metric or judge (:meth:`restore_r1.catalog.Entry.availability`)."""
    from restore_r1.judges import JUDGES, resolve_judge_name
    from restore_r1.metrics import METRICS

    judge = _judge_name(name)
    entry = METRICS.get(name) if judge is None else JUDGES.get(resolve_judge_name(judge))
    ok, reason = entry.availability()
    return ok, "" if ok else f"{name} is unavailable: {reason}"


def _scorer(name: str, device: str) -> Scorer:
    """The scorer of column ``name``: a metric of :mod:`restore_r1.metrics` or a judge."""
    from restore_r1.judges import create_judge
    from restore_r1.metrics import create_metric

    judge = _judge_name(name)
    if judge is None:
        return create_metric(name, device=device)
    from restore_r1.judges.relative import score_images

    scorer = create_judge(judge)
    return lambda img, ref: score_images(scorer, [img], [ref])[0]  # ref: the input, for a relative judge


def _ref_folder(ref: str | None, n_images: int) -> Path | None:
    """The folder references are matched in, or ``None`` for a single reference file."""
    if ref is None:
        return None
    path = Path(ref)
    if path.is_dir():
        return path
    if n_images > 1:
        raise ValueError(f"--ref {ref}: with {n_images} images --ref must be a folder of references named like the images")
    return None


def _one_line(exc: BaseException) -> str:
    from restore_r1.cli import one_line

    return one_line(exc)
