"""``restore-r1 restore``: restore images with a trained policy (deterministic plan).

    restore-r1 restore IN... -o OUT [--policy PATH|registry://NAME@STAGE] [--max-steps K] [--device DEV] [--json]
    restore-r1 restore IN... -o OUT --triton-url HOST:PORT [--protocol http|grpc]

``--policy`` loads either planner kind: an MLP policy or a VLM planner (docs/vlm.md), whose
answer is parsed strictly; an answer that is not a plan fails that image (reported, exit 1), it is
never replaced by a default plan. IN may be image files or folders of images. With one image and an OUT ending in an image suffix
(``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``) the result is written to
that file, in the format of its suffix; otherwise OUT is a folder and each result is written to
``OUT/<stem>.png``. Several images with an image-suffixed OUT are refused (a folder named
``out.png`` is never what was meant). Existing outputs are refused before any work unless
``--overwrite`` is given; writes are atomic. Per image it reports the tools chosen in order, the
judge score after each step, the seconds taken and, in-process, where they went (each tool, the
judge, the encoder, the policy); on a terminal a bar shows the steps of each image
(``--no-progress`` hides it). ``--json`` prints one JSON object per image (``input``, ``output``,
``tools``, ``scores``, ``seconds``, ``partial``, ``failed``, ``policy_version``: the served policy
model version, null in-process; ``timings``: where the seconds went, empty when served). Bad inputs are reported and skipped (exit 1), the others are restored.

Through ``--triton-url``, a tool (or the policy) that fails after a successful step gives a
*partial* result: the best image so far is written, ``partial`` is true and ``failed`` holds the
server's ``{"step", "tool", "model", "reason", "message"}``, one ``warning:`` line goes to stderr,
and the image counts as restored (exit 0). A failure at the first step is an error (exit 1).

**A batch under a prefix.** When IN or OUT is an ``s3://bucket/prefix`` URI, IN is one prefix (or
folder) of photos at any depth and OUT one prefix (or folder), laid out as the ``restore_r1_batch``
pipeline's (:mod:`restore_r1.pipeline.batch`): ``OUT/<rel>.png``, a record per photo under
``OUT/_records/`` and ``OUT/manifest.jsonl``. Photos already done (their record exists) are
skipped, so rerunning a killed command resumes it; ``--overwrite`` restores them all again. The
last line on stderr sums it up; failed photos are listed (exit 1) and retried by a rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from restore_r1.cli.common import add_output_arguments, expand_inputs, image_batch, non_negative_int, output_targets

NAME = "restore"
HELP = "restore images with the agent (default: the shipped policy)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders, or one s3://bucket/prefix (a resumable batch)")
    add_output_arguments(parser, what="restored images")
    parser.add_argument("--policy", help="policy folder (an MLP policy or a VLM planner) or registry URI (default: $RESTORE_R1_POLICY or the shipped policy)")
    parser.add_argument("--device", default="cpu", help="where a VLM planner runs: cpu or cuda[:N] (default cpu; the MLP runs on CPU)")
    parser.add_argument("--max-steps", type=non_negative_int, metavar="K", help="at most K tool calls per image")
    parser.add_argument("--judge", default="default", help="judge used to report scores (default: the offline default)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument("--max-pixels", type=int, help="refuse larger images (default: $RESTORE_R1_MAX_PIXELS or 64 MP)")
    parser.add_argument("--triton-url", metavar="URL", help="restore through the restore_r1_agent model of a Triton server (host:port)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http", help="Triton protocol (default: http)")
    parser.add_argument("--no-progress", action="store_true", help="hide the per-step progress bar (shown on a terminal)")


def run(args: argparse.Namespace) -> int:
    from restore_r1.agent.inference import load_agent
    from restore_r1.images import write_image

    if args.triton_url and args.policy:
        raise ValueError("--policy is for in-process restores; a Triton server's agent uses the policy of its model repository")
    if any(str(item).startswith("s3://") for item in [*args.inputs, args.out]):
        return run_batch(args)
    paths = expand_inputs(args.inputs)
    targets = output_targets(paths, args.out, overwrite=args.overwrite)  # refuse before loading anything
    if args.triton_url:
        # The server's agent uses its own policy and judge; --max-steps travels with each request.
        from restore_r1.serving.client import TritonAgentClient

        client = TritonAgentClient(args.triton_url, protocol=args.protocol)
        client.check_ready()
        restore = lambda img: client.restore(img, max_steps=args.max_steps)  # noqa: E731
    else:
        from restore_r1.agent.inference import Agent
        from restore_r1.registry import local_policy

        agent = load_agent(local_policy(args.policy), judge=args.judge, max_steps=args.max_steps, device=args.device)
        if isinstance(agent, Agent):  # an MLP policy: a bar of its steps on a terminal
            restore = lambda img: agent.restore(img, progress=not args.no_progress and sys.stderr.isatty())  # noqa: E731
        else:
            restore = agent.restore

    def work(path: Path, target: Path, img) -> None:
        result = restore(img)
        write_image(target, result.image, overwrite=args.overwrite)
        if result.partial:
            print(f"warning: {path}: {partial_warning(result.failed)}", file=sys.stderr, flush=True)
        if args.json:
            record = {"input": str(path), "output": str(target), "tools": result.tools, "scores": result.scores, "seconds": result.seconds}
            extra = {"partial": result.partial, "failed": result.failed, "policy_version": result.policy_version, "timings": result.timings}
            print(json.dumps({**record, **extra}), flush=True)
        else:
            chain = " -> ".join(result.tools) or "(no tool)"
            scores = " -> ".join(f"{s:.3f}" for s in result.scores)
            flag = " (partial)" if result.partial else ""
            where = f" ({time_breakdown(result.timings)})" if result.timings else ""
            print(f"{path}: {chain}; judge {scores}; {result.seconds:.2f} s{where} -> {target}{flag}", flush=True)

    failures = image_batch(paths, targets, args.max_pixels, work)
    return failures.report(len(paths))


def run_batch(args: argparse.Namespace) -> int:
    """``restore-r1 restore s3://bucket/prefix -o s3://bucket/out``: the batch of one prefix, resumable."""
    from restore_r1.cli.common import BatchFailures
    from restore_r1.images import IMAGE_FORMATS
    from restore_r1.pipeline.batch import MANIFEST_FILE, finish_batch, plan_batch, restore_shard

    if len(args.inputs) != 1:
        raise ValueError(f"with an s3:// input or output, IN is one prefix or folder; got {len(args.inputs)}: {' '.join(args.inputs)}")
    if not args.out.startswith("s3://") and args.out.lower().endswith(tuple(IMAGE_FORMATS)):
        raise ValueError(f"-o {args.out} names one image file; a batch writes under a prefix or folder")
    plan = plan_batch(args.inputs[0], args.out, shards=1, policy=args.policy or "")
    failures = BatchFailures()

    def show(record: dict) -> None:
        if record["partial"]:
            print(f"warning: {record['input']}: {partial_warning(record['failed'])}", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            chain = " -> ".join(record["tools"]) or "(no tool)"
            scores = " -> ".join(f"{s:.3f}" for s in record["scores"])
            flag = " (partial)" if record["partial"] else ""
            print(f"{record['input']}: {chain}; judge {scores}; {record['seconds']:.2f} s -> {record['output']}{flag}", flush=True)

    result = restore_shard(
        plan,
        0,
        triton_url=args.triton_url or "",
        protocol=args.protocol,
        judge=args.judge,
        max_steps=args.max_steps,
        device=args.device,
        max_pixels=args.max_pixels,
        overwrite=args.overwrite,
        on_record=show,
        on_failure=lambda key, message: failures.add(key, RuntimeError(message)),
    )
    summary = finish_batch(plan, [result])
    print(
        f"{summary.restored} restored ({summary.partial} partial), {summary.skipped} skipped as done before, {summary.failed} failed "
        f"of {summary.photos} in {summary.seconds:.1f} s -> {plan.output_uri}/{MANIFEST_FILE}",
        file=sys.stderr,
    )
    return failures.report(summary.photos)


def time_breakdown(timings: dict[str, float]) -> str:
    """Where an episode's seconds went, largest first: ``"nlm_denoise 3.10 s, judge 0.40 s, ..."``."""
    parts = sorted(timings.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{key.removeprefix('tool:')} {sec:.2f} s" for key, sec in parts if sec >= 0.005) or "all under 5 ms"


def partial_warning(failed: dict | None) -> str:
    """One line for a partial result: which step failed, why, and what was written instead."""
    failed = failed or {}
    reason = failed.get("reason", "unknown")
    message = " ".join(str(failed.get("message", "no details")).split())
    return f"partial result [{reason}]: {message}; wrote the best image so far"
