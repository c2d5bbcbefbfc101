"""Offline calibration of the ``calibrated`` judge (restore_r1/data/judges/calibrated.json).

Builds synthetic data from the TRAINING photos only (restore_r1.cleanimages.TRAIN_NAMES; the
held-out photos never enter calibration): clean 256-px and 512-px crops, their degraded versions
over all 15 cases, those after single tools and 2-tool sequences, and clean crops after tools.
Each image gets the no-reference features of restore_r1.judges.calibrated.calibrated_features
(32 ``stats`` features + PIQE) and the full-reference target quality_target (SSIM and PSNR vs its
clean crop, on 1–5). A ridge model is chosen by leave-one-scene-out cross-validation and refitted
on everything; its coefficients go to --out. Seeded; about 5 minutes on 2 CPU cores.

Usage: .venv/bin/python bench/calibrate_judge.py --out restore_r1/data/judges/calibrated.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from restore_r1.judges.calibrate import build_calibration_set, fit_calibration
from restore_r1.judges.calibrated import CALIBRATION_PATH, save_calibration

#: Cross-validation rows kept in the file's provenance (best first).
CV_ROWS_KEPT = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(CALIBRATION_PATH), help="calibration JSON to write")
    parser.add_argument("--crops-256", type=int, default=4, help="256-px crops per training photo (each gets all 15 cases)")
    parser.add_argument("--crops-512", type=int, default=1, help="512-px crops per training photo")
    parser.add_argument("--cases-512", type=int, default=5, help="random cases per 512-px crop")
    parser.add_argument("--tools-per-image", type=int, default=3)
    parser.add_argument("--sequences-per-image", type=int, default=2)
    parser.add_argument("--tools-on-clean", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    cset = build_calibration_set(
        crops_256=args.crops_256,
        crops_512=args.crops_512,
        cases_512=args.cases_512,
        tools_per_image=args.tools_per_image,
        sequences_per_image=args.sequences_per_image,
        tools_on_clean=args.tools_on_clean,
        seed=args.seed,
        progress=lambda m: sys.stderr.write(m + "\n"),
    )
    model, cv = fit_calibration(cset)
    cv.sort(key=lambda r: -r["selection"])
    argv_shown = sys.argv[1:] if argv is None else argv
    model.meta = {
        "command": "python bench/calibrate_judge.py " + " ".join(argv_shown),
        "data": cset.description,
        "no_reference": "at use time the judge sees only the image; the clean crops were used offline, for the target only",
        "selected": model.meta["selected"],
        "cv": {
            "folds": model.meta["cv_folds"],
            "score": "mean over leave-one-scene-out folds of (ρ(score, target) + ρ(step ΔQ, step Δtarget)) / 2",
            "best": cv[:CV_ROWS_KEPT],
        },
        "seconds": round(time.time() - start, 1),
        "python": platform.python_version(),
    }
    out = save_calibration(model, Path(args.out))
    best = model.meta["selected"]
    sys.stdout.write(
        f"{len(cset.y)} rows; selected {best['expansion']} ridge alpha={best['alpha']:g} delta_weight={best['delta_weight']:g} "
        f"piqe={best['piqe']}: CV ρ {best['rho']:.3f}, step ρ {best['step_rho']:.3f}; {model.meta['seconds']} s -> {out}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
