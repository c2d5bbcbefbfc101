"""Runs ``restore_r1_training`` end to end on this machine with ``kfp.local`` (``make pipeline``).

    python -m pipelines.run_local [--out pipeline_out] [--registry DIR] [--steps N] [--no-promote] ...

Same pipeline function as the cluster's, with small settings: bundled photos, 3 cases, 128 px
crops, a few GRPO updates. Each component runs as a subprocess of this Python (no container);
the Kubernetes settings (GPU, node selector, tolerations, secret) are ignored by ``kfp.local``.
The result is registered in the local registry (``--registry``, default ``$RESTORE_R1_REGISTRY``
or ``~/.cache/restore-r1/registry``) and exported as a Triton entry under ``OUT/triton_repository``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: Small settings that finish in minutes on 2 CPU cores.
LOCAL_SETTINGS = {
    "images_uri": "bundled:train", "cases": "1,4,5", "per_case": 1, "crop": 128, "seed": 0, "judge": "default",
    "encoder": "stats", "tools": "", "group_size": 4, "steps": 10, "max_steps": 3, "batch_images": 2,
    "heldout_images_uri": "bundled:heldout", "eval_cases": "1,4,5", "eval_per_case": 1, "eval_methods": "input,fixed,policy",
    "eval_metrics": "psnr,ssim,niqe,piqe", "gate_metric": "policy_psnr", "gate_min_delta": 0.0,
}


def main(argv: list[str] | None = None) -> int:
    from restore_r1.registry import registry_location

    parser = argparse.ArgumentParser(prog="python -m pipelines.run_local", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="pipeline_out", help="pipeline root and Triton repository (default pipeline_out)")
    parser.add_argument("--registry", help="registry location (default $RESTORE_R1_REGISTRY or ~/.cache/restore-r1/registry)")
    parser.add_argument("--model-name", default="restore-r1-policy")
    parser.add_argument("--no-promote", action="store_true", help="register as staging instead of production")
    for key in ("cases", "eval_cases", "images_uri", "eval_methods", "judge"):
        parser.add_argument(f"--{key.replace('_', '-')}", default=LOCAL_SETTINGS[key], help=f"default {LOCAL_SETTINGS[key]}")
    for key in ("per_case", "crop", "seed", "group_size", "steps", "max_steps", "batch_images", "eval_per_case"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=LOCAL_SETTINGS[key], help=f"default {LOCAL_SETTINGS[key]}")
    args = parser.parse_args(argv)

    import warnings

    from kfp import local

    # kfp.local warns that our image name lacks "python"; components run in this Python anyway.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)

    from pipelines.restore_r1_training import PIPELINE_NAME, restore_r1_training
    from restore_r1.pipeline.localrun import latest_run_dir, read_run
    from restore_r1.pipeline.steps import read_results
    from restore_r1.registry import open_registry

    out = Path(args.out).resolve()
    root = out / "runs"
    registry = registry_location(args.registry)
    settings = {**LOCAL_SETTINGS, **{k: getattr(args, k) for k in LOCAL_SETTINGS if hasattr(args, k)}}
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    start = time.perf_counter()
    try:
        restore_r1_training(**settings, promote=not args.no_promote, model_name=args.model_name, registry=registry,
                            s3_endpoint="", model_repository=str(out / "triton_repository"))
    except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
        print(f"pipeline failed: {exc} (the task's log is above)", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start

    run_dir = latest_run_dir(root, PIPELINE_NAME)
    print(f"\n=== restore_r1_training finished in {seconds:.0f} s; run folder {run_dir}")
    tasks = read_run(run_dir)
    for task in tasks:
        print(f"- {task.task}")
        for name, path in task.artifacts.items():
            print(f"    {name:<14} {path}")
        for name, value in task.parameters.items():
            print(f"    {name:<14} = {value}")
    by_name = {t.task: t for t in tasks}
    if "evaluate" in by_name:
        from restore_r1.pipeline.report import summary_markdown

        print("\n" + summary_markdown(read_results(by_name["evaluate"].artifacts["results"]), title="Evaluation summary"))
    if "gate" in by_name:
        print(Path(by_name["gate"].artifacts["decision"]).read_text())
    reg = open_registry(registry)
    if args.model_name in reg.models():
        print(f"Registry {reg.location}: {args.model_name} aliases {reg.aliases(args.model_name)}, "
              f"versions {reg.version_numbers(args.model_name)}")
        print(f"Try: restore-r1 restore --policy registry://{args.model_name}@{'staging' if args.no_promote else 'production'} IMG -o OUT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
