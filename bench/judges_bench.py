"""Judges bench: which offline judge tells better from worse? (writes judges.json / judges.md)

On photos that no judge was fitted on — the corpus's VALIDATION scenes and the bundled held-out
photos (coffee, rocket) — it builds groups the way the ranker's fit does
(:func:`restore_r1.judges.fit.build_groups`: single-degradation groups with every tool applied,
and mixed groups with chains, tool outputs and second steps), scores every image with every
offline catalogue judge, and reports per judge:

* the pairwise accuracy over tool outputs of the same input whose PSNR differs by ≥ 0.5 dB;
* Spearman ρ of ΔQ with ΔPSNR over tool steps, per degradation type;
* greedy exploration (``restore_r1.agent.baselines.run_exploration``: try every tool, keep the
  judge's best while it improves, ≤ 5 steps) on one 256-px image per case, against the PSNR
  oracle over sequences of ≤ 2 tools: the share of the oracle's gain over the input it recovers.

    .venv/bin/python bench/judges_bench.py --out bench/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.corpus import corpus_split_dir
from restore_r1.images import atomic_write_bytes, list_images, write_image
from restore_r1.judges import JUDGES, create_judge
from restore_r1.judges.fit import FIT_TOOLS, FitConfig, build_groups, evaluate_scores

#: The offline judges compared (the catalogue's offline entries).
JUDGE_NAMES = tuple(n for n, e in JUDGES.items() if e.offline)
EXPLORATION_JUDGES = ("relative", "ranker", "calibrated")
SIZE = 256


def heldout_folder(tmp: Path) -> Path:
    from restore_r1.cleanimages import HELDOUT_NAMES, load_clean

    for name in HELDOUT_NAMES:
        write_image(tmp / f"{name}.png", load_clean(name))
    return tmp


def score_groups(groups, judge) -> list[np.ndarray]:
    """Each group's images scored by ``judge``; a relative judge scores them against the group's
    degraded input (the image an episode would start from)."""
    from restore_r1.judges.relative import score_images

    return [np.asarray(score_images(judge, g.images, [g.images[g.kind.index("degraded")]] * len(g.images))) for g in groups]


def exploration(photos: list[Path], seed: int, judges: dict) -> dict:
    """Greedy exploration per judge and the depth-2 PSNR oracle on one image per case, with the
    15 classic tools the judges' fits saw (the slow DnCNN tools are left out of the search)."""
    from restore_r1.agent.baselines import run_exploration, run_oracle
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.degradations import CASES, apply_case
    from restore_r1.images import image_digest, read_image
    from restore_r1.judges.fit import crop_at_scale
    from restore_r1.metrics import psnr

    base = available_tool_map(list(FIT_TOOLS))
    memo: dict[tuple[str, str], np.ndarray] = {}

    def memoised(name, fn):
        def run(img):
            key = (image_digest(img), name)
            if key not in memo:
                memo[key] = fn(img)
            return memo[key]

        return run

    tools = {n: memoised(n, f) for n, f in base.items()}
    rows = []
    for i, case in enumerate(sorted(CASES)):
        photo = photos[i % len(photos)]
        rng = np.random.default_rng([seed, i])
        clean = crop_at_scale(read_image(photo), SIZE, rng)
        degraded, _ = apply_case(case, clean, rng)
        row = {"case": case, "photo": photo.stem, "input": psnr(degraded, clean)}
        oracle = run_oracle(degraded, tools=tools, clean=clean)
        row["oracle"] = psnr(oracle.image, clean)
        for name, judge in judges.items():
            res = run_exploration(degraded, tools=tools, judge=judge)
            row[name] = psnr(res.image, clean)
            row[f"{name}_steps"] = len(res.tools)
        rows.append(row)
        memo.clear()
    out = {"rows": rows}
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("input", "oracle", *judges)}
    gain = mean["oracle"] - mean["input"]
    out["mean"] = mean
    out["recovery"] = {n: (mean[n] - mean["input"]) / gain if gain > 0 else float("nan") for n in judges}
    out["below_input"] = {n: sum(r[n] < r["input"] - 0.05 for r in rows) for n in judges}
    out["mean_steps"] = {n: float(np.mean([r[f"{n}_steps"] for r in rows])) for n in judges}
    return out


def fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:+.2f}"


def markdown(result: dict) -> str:
    lines = [
        "# Offline judges: do they tell better from worse?",
        "",
        "Command: `python bench/judges_bench.py --out bench/results`  ",
        f"Date: {result['date']}  ",
        f"Machine: {result['machine']}; {result['seconds']:.0f} s",
        "",
        "Measured on photos no judge was fitted on: the corpus's validation scenes "
        f"({', '.join(result['val_scenes'])}) and the bundled held-out photos (coffee, rocket). "
        "Targets (issue 9): ρ ≥ 0.8 per type, pairwise accuracy ≥ 85 %, greedy exploration ≥ 70 % of the oracle's gain.",
        "",
    ]
    for where in ("val", "heldout"):
        lines += [
            f"## {'Validation scenes' if where == 'val' else 'Bundled held-out photos'}",
            "",
            "| judge | pairwise accuracy (pairs) | " + " | ".join(f"ρ {t}" for t in DEGRADATION_TYPES) + " | mean ρ | one-step recovery |",
            "|---|---|" + "---|" * (len(DEGRADATION_TYPES) + 2),
        ]
        for name, r in result[where].items():
            rho = [r["single"]["rho_psnr"].get(t, float("nan")) for t in DEGRADATION_TYPES]
            lines.append(
                f"| `{name}` | {r['mixed']['pairwise_accuracy']:.3f} ({r['mixed']['pairs']}) | "
                + " | ".join(fmt(v) for v in rho)
                + f" | {fmt(float(np.nanmean(rho)))} | {r['mixed']['one_step_recovery']:.2f} |"
            )
        lines.append("")
    e = result["exploration"]
    lines += [
        "## Greedy exploration against the oracle (validation scenes, one 256-px image per case)",
        "",
        "| method | PSNR | share of the oracle's gain | images below input | mean steps |",
        "|---|---|---|---|---|",
        f"| input | {e['mean']['input']:.2f} | – | – | 0 |",
    ]
    for n in e["recovery"]:
        lines.append(
            f"| exploration with `{n}` | {e['mean'][n]:.2f} | {100 * e['recovery'][n]:.1f} % | {e['below_input'][n]} / {len(e['rows'])} | {e['mean_steps'][n]:.1f} |"
        )
    lines += [
        f"| oracle (PSNR, ≤ 2 tools) | {e['mean']['oracle']:.2f} | 100 % | – | – |",
        "",
        "Pairwise accuracy and one-step recovery come from the mixed groups; ρ from the single-degradation groups.",
        "BRISQUE with the `brisque` package's LIVE SVR was not measured (not installed in this environment).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--seed", type=int, default=1, help="seed of the groups (the fit used 0)")
    parser.add_argument("--mixed-per-photo", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes building the groups")
    args = parser.parse_args(argv)
    start = time.time()
    cfg = FitConfig(seed=args.seed, workers=args.workers)
    judges = {n: create_judge(n) for n in JUDGE_NAMES}
    val_dir = corpus_split_dir("val")
    val_photos = list_images(val_dir)
    result: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {__import__('os').cpu_count()} CPUs",
        "val_scenes": [p.stem for p in val_photos],
        "judges": list(JUDGE_NAMES),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for where, photos in (("val", val_photos), ("heldout", list_images(heldout_folder(Path(tmp))))):
            single = build_groups(photos, cfg, "single", per_photo=1, keep_images=True, progress=print)
            mixed = build_groups(photos, cfg, "mixed", per_photo=args.mixed_per_photo, keep_images=True, progress=print)
            result[where] = {}
            for name, judge in judges.items():
                result[where][name] = {
                    "single": evaluate_scores(score_groups(single, judge), single),
                    "mixed": evaluate_scores(score_groups(mixed, judge), mixed),
                }
                print(where, name, f"{result[where][name]['mixed']['pairwise_accuracy']:.3f}", flush=True)
    result["exploration"] = exploration(val_photos, args.seed, {n: judges[n] for n in EXPLORATION_JUDGES})
    result["seconds"] = time.time() - start
    out = Path(args.out)
    atomic_write_bytes(out / "judges.json", (json.dumps(result, indent=1, default=float) + "\n").encode())
    atomic_write_bytes(out / "judges.md", markdown(result).encode())
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
