"""Does re-exposing the training crops teach the relative judge when brightening helps? (judge_exposure.json / .md)

bench/results/judge_blind_spots.md: on dark validation inputs the default judge scores the best
brightening (+4.71 dB) as a loss, and giving it the input's brightness as context
(bench/results/judge_context.md) made darkness worse: with 20 training scenes the MLP learns each
scene's own brightness. Here the training groups are rebuilt with ``FitConfig.exposure_jitter``:
each clean training crop is first re-exposed by a random gamma, so that a scene's brightness no
longer says how bright its clean crop is, and the relative judge is refitted with and without
context. Validation groups are the natural photos as ``make judge`` builds them, so the numbers
compare with judge_context.json's rows (same validation scenes, same groups).

    PYTHONPATH=$PWD RESTORE_R1_CORPUS=$PWD/.cache/corpus .venv/bin/python bench/judge_exposure.py --out bench/results

A measurement, not a change of the shipped judge (``make judge`` keeps ``exposure_jitter = 0``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from judge_context import TONE, table_cells, table_head  # noqa: E402

from restore_r1.corpus import corpus_split_dir  # noqa: E402
from restore_r1.images import atomic_write_bytes  # noqa: E402
from restore_r1.judges import fit  # noqa: E402

JITTER = 0.5
VARIANTS: dict[str, tuple[str, ...]] = {"none": (), "brightness (5)": TONE[:5], "brightness + haze + colour (10)": TONE}


def markdown(report: dict) -> str:
    """The Markdown table: judge_context.json's rows without jitter, then this bench's."""
    baseline = [
        r for r in json.loads((ROOT / "bench" / "results" / "judge_context.json").read_text())["variants"] if r["variant"] in ("none (shipped)", *VARIANTS)
    ]
    j = report["jitter"]
    lines = [
        "# Relative judge: training crops re-exposed (`FitConfig.exposure_jitter`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['minutes']:.0f} min on 2 shared cores  ",
        f"Each clean TRAINING crop re-exposed by gamma = e^u, u ~ U(−{j:g}, {j:g}) before its degradations ({report['train_groups']} groups, "
        "both fit rounds); VALIDATION groups are the natural photos as `make judge` builds them. Rows without jitter: judge_context.json "
        "(same validation groups).",
        "",
        *table_head("variant"),
    ]
    lines += [f"| no jitter, context {r['variant']} | {table_cells(r['val_mixed'], r['val_single'])} |" for r in baseline]
    lines += [f"| **{r['variant']}** | {table_cells(r['val_mixed'], r['val_single'])} |" for r in report["variants"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cache", default=".cache/judge_fit_exposure", help="group cache of this bench (not make judge's)")
    parser.add_argument("--jitter", type=float, default=JITTER)
    args = parser.parse_args(argv)
    start = time.time()
    cfg = fit.FitConfig(exposure_jitter=args.jitter)
    cache = Path(args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        fit.fit_default(corpus_split_dir("train"), corpus_split_dir("val"), Path(tmp) / "ranker.json", cfg, progress=print, cache=cache)
    loaded = {n: pickle.loads((cache / f"{n}.pkl").read_bytes())["groups"] for n in ("train", "val_mixed", "val_single", "train_search")}
    train, states = loaded["train"], loaded["train_search"]
    per = min(cfg.search_groups, cfg.crops_per_scene)
    extra = {p * cfg.crops_per_scene + k: states[p * per + k] for p in range(len(train) // cfg.crops_per_scene) for k in range(per)}
    rows = []
    for name, context in VARIANTS.items():
        model = fit.fit_relative(train, fit.FitConfig(context=context, exposure_jitter=args.jitter), {}, extra=extra)
        rep = {split: fit.evaluate_relative(model, loaded[split]) for split in ("val_mixed", "val_single")}
        rows.append({"variant": f"jitter {args.jitter:g}, context {name}", "context": list(context), **rep})
        print(rows[-1]["variant"], table_cells(rep["val_mixed"], rep["val_single"]), flush=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/judge_exposure.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "jitter": args.jitter,
        "train_groups": len(train),
        "minutes": (time.time() - start) / 60,
        "variants": rows,
    }
    out = Path(args.out)
    atomic_write_bytes(out / "judge_exposure.json", (json.dumps(report, indent=1, default=float) + "\n").encode())
    md = markdown(report)
    atomic_write_bytes(out / "judge_exposure.md", md.encode())
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
