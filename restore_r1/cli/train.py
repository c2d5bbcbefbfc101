"""``restore-r1 train``: GRPO training of a tool-selection policy against a perceptual judge.

    restore-r1 train --data DIR --out DIR [--judge NAME] [--encoder NAME] [--tools a,b,...]
                     [--group G] [--steps N] [--batch-images B] [--max-steps K] [--seed S] ...

DIR is a data set written by ``restore-r1 synth``; only its degraded (``lq``) images are read —
training sees neither clean images nor degradation labels. A killed run resumes from its last
checkpoint in ``--out`` (``--no-resume`` starts over).

Data-parallel on several processes or machines (restore_r1.agent.distributed)::

    torchrun --nproc-per-node 2 -m restore_r1.cli train --distributed --data DIR --out DIR ...

Live metrics (restore_r1.agent.train_metrics): ``--metrics-port`` serves ``/metrics`` on rank 0,
``--pushgateway`` pushes after every update; both also from ``$RESTORE_R1_METRICS_PORT`` and
``$RESTORE_R1_PUSHGATEWAY``.
"""

from __future__ import annotations

import argparse
import json
import os

from restore_r1.agent.distributed import BACKENDS
from restore_r1.agent.train_metrics import METRICS_PORT_ENV, PUSHGATEWAY_ENV
from restore_r1.cli.common import name_list, non_negative_int, port_number, positive_float, positive_int

NAME = "train"
HELP = "train a tool-selection policy with GRPO (reads only the degraded images of a data set)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from restore_r1.agent.grpo import GRPOConfig

    d = GRPOConfig()
    parser.add_argument(
        "--data",
        metavar="DIR",
        required=True,
        help="data set folder written by `restore-r1 synth`, or an s3://bucket/prefix the pipeline staged one to (its manifest and degraded images)",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="run folder (log, checkpoints, final policy/)")
    parser.add_argument("--judge", default="default", help="reward judge (default: the offline default; see bench/results/judges.md)")
    parser.add_argument("--encoder", default="stats", help="frozen image encoder (default: stats)")
    parser.add_argument("--tools", type=name_list, metavar="a,b,...", help="tools the policy may call (default: every available tool)")
    parser.add_argument("--group", type=positive_int, default=d.group_size, metavar="G", help=f"trajectories per image (default {d.group_size})")
    parser.add_argument("--steps", type=non_negative_int, default=d.updates, metavar="N", help=f"policy updates (default {d.updates})")
    parser.add_argument("--batch-images", type=positive_int, default=d.batch_images, metavar="B", help=f"images per update (default {d.batch_images})")
    parser.add_argument("--max-steps", type=positive_int, default=d.max_steps, metavar="K", help=f"tool calls per episode at most (default {d.max_steps})")
    parser.add_argument("--epochs", type=positive_int, default=d.update_epochs, metavar="MU", help=f"gradient steps per batch (default {d.update_epochs})")
    parser.add_argument("--lr", type=positive_float, default=d.lr, help=f"learning rate (default {d.lr})")
    parser.add_argument("--clip-eps", type=positive_float, default=d.clip_eps, help=f"ratio clipping ε (default {d.clip_eps})")
    parser.add_argument("--kl-beta", type=float, default=d.kl_beta, help=f"KL weight β to the initial policy (default {d.kl_beta})")
    parser.add_argument("--forbid-cycle", action="store_true", help="mask the tool called two steps before too (no A -> B -> A loops)")
    parser.add_argument("--entropy-coef", type=float, default=d.entropy_coef, help=f"entropy bonus (default {d.entropy_coef})")
    parser.add_argument("--tool-cost", type=float, default=d.tool_cost, help=f"reward cost per tool call (default {d.tool_cost})")
    parser.add_argument("--seed", type=non_negative_int, default=d.seed, metavar="S", help=f"seed (default {d.seed})")
    parser.add_argument(
        "--checkpoint-every", type=non_negative_int, default=d.checkpoint_every, metavar="N", help=f"updates between checkpoints (default {d.checkpoint_every})"
    )
    parser.add_argument("--no-resume", action="store_true", help="start over even if --out holds a checkpoint")
    parser.add_argument("--export", metavar="URI", help="at the end, copy policy/ and train_log.jsonl to this folder or s3://bucket/prefix (rank 0)")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the ranks torchrun launched (each rolls out its share of every batch; "
        "--out must be storage all ranks see); without it training is one process",
    )
    parser.add_argument("--dist-backend", choices=BACKENDS, default="auto", help="torch.distributed backend (default auto: nccl with CUDA, else gloo)")
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        default=os.environ.get(METRICS_PORT_ENV) or None,
        metavar="PORT",
        help=f"serve live training metrics (Prometheus) on http://ADDR:PORT/metrics from rank 0 (default: ${METRICS_PORT_ENV}, else off)",
    )
    parser.add_argument("--metrics-addr", default="0.0.0.0", metavar="ADDR", help="address the metrics server binds (default 0.0.0.0)")
    parser.add_argument(
        "--pushgateway",
        default=os.environ.get(PUSHGATEWAY_ENV) or None,
        metavar="URL",
        help=f"push the training metrics to this Prometheus Pushgateway after every update (default: ${PUSHGATEWAY_ENV}, else off)",
    )
    parser.add_argument("--metrics-run", metavar="NAME", help="the metrics' run label (default: the name of the --out folder)")
    parser.add_argument(
        "--metrics-linger",
        type=float,
        default=0.0,
        metavar="S",
        help="keep serving /metrics S seconds after the last update, so a scrape sees the final values (default 0)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace):
    """The :class:`~restore_r1.agent.grpo.GRPOConfig` the options give."""
    from restore_r1.agent.grpo import GRPOConfig

    return GRPOConfig(
        group_size=args.group,
        updates=args.steps,
        batch_images=args.batch_images,
        max_steps=args.max_steps,
        update_epochs=args.epochs,
        lr=args.lr,
        clip_eps=args.clip_eps,
        kl_beta=args.kl_beta,
        entropy_coef=args.entropy_coef,
        tool_cost=args.tool_cost,
        forbid_cycle=args.forbid_cycle,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )


def run(args: argparse.Namespace) -> int:
    from restore_r1.agent.distributed import launched_world_size
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.agent.trainer import train
    from restore_r1.encoders import create_encoder
    from restore_r1.judges import create_judge

    config = config_from_args(args)
    tools = available_tool_map(args.tools)
    monitor = None
    if args.metrics_port is not None or args.pushgateway:
        from pathlib import Path

        from restore_r1.agent.train_metrics import PrometheusExporter

        monitor = PrometheusExporter(
            run=args.metrics_run or Path(args.out).resolve().name,
            port=args.metrics_port,
            addr=args.metrics_addr,
            pushgateway=args.pushgateway,
            linger_s=args.metrics_linger,
        )
    data, staged = args.data, None
    if "://" in args.data:
        import tempfile

        from restore_r1.pipeline.trainjob import fetch_dataset

        staged = tempfile.mkdtemp(prefix="restore-r1-data-")
        data = str(fetch_dataset(args.data, staged))
    collective = None
    if args.distributed:
        from restore_r1.agent.distributed import init_from_env

        collective = init_from_env(args.dist_backend)
    elif launched_world_size() > 1:
        raise ValueError(f"launched as one of {launched_world_size()} ranks (WORLD_SIZE) without --distributed: every rank would train alone into --out")
    try:
        result = train(
            data,
            args.out,
            encoder=create_encoder(args.encoder),
            judge=create_judge(args.judge),
            tools=tools,
            config=config,
            progress=not args.no_progress,
            resume=not args.no_resume,
            collective=collective,
            monitor=monitor,
        )
    finally:
        if collective is not None:
            from restore_r1.agent.distributed import shutdown

            shutdown()
        if staged is not None:
            import shutil

            shutil.rmtree(staged, ignore_errors=True)
    if collective is not None and collective.rank != 0:
        return 0
    if args.export:
        from restore_r1.pipeline.trainjob import export_run

        export_run(result.out_dir, args.export)
    last = result.records[-1] if result.records else {}
    print(
        f"policy written to {result.policy_dir} ({result.updates} updates"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else "")
        + (f"; last update: mean return {last['mean_return']:.4f}, mean steps {last['mean_steps']:.2f}" if last else "")
        + f"); log: {result.log_path}"
    )
    (result.out_dir / "train_args.json").write_text(json.dumps({**vars(args), "_run": None, "tools": list(tools)}, indent=2, default=str))
    return 0
