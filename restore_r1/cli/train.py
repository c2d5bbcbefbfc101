"""``restore-r1 train``: GRPO training of a tool-selection policy against a perceptual judge.

    restore-r1 train --data DIR --out DIR [--judge NAME] [--encoder NAME] [--tools a,b,...]
                     [--group G] [--steps N] [--batch-images B] [--max-steps K] [--seed S] ...
    restore-r1 train --planner vlm --vlm-model DIR|registry://NAME@REF --data DIR --out DIR
                     [--group G] [--steps N] [--lr LR] [--kl-beta B] [--lora-rank R] ...

DIR is a data set written by ``restore-r1 synth``; only its degraded (``lq``) images are read —
training sees neither clean images nor degradation labels. Both planners write ``--out``/policy
and ``--out``/train_log.jsonl. The MLP planner (default) trains with our own GRPO; a killed run
resumes from its last checkpoint in ``--out`` (``--no-resume`` starts over). The VLM planner
(docs/vlm.md) trains a local vision-language model with TRL's GRPOTrainer and is not resumable.

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
#: What the closing line reports of the last update: (log key, label, decimals); a key the
#: planner's log lacks is left out (the VLM's log has no mean steps when no answer was a plan).
LAST_UPDATE_FIELDS = (("mean_return", "mean return", 4), ("mean_steps", "mean steps", 2), ("parse_failure_rate", "parse failures", 2))
HELP = "train a tool-selection policy with GRPO (reads only the degraded images of a data set)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from restore_r1.agent.grpo import GRPOConfig
    from restore_r1.agent.inference import PLANNER_KINDS
    from restore_r1.agent.vlm import DTYPES
    from restore_r1.agent.vlm_trainer import PRECISIONS, VLMTrainConfig

    d = GRPOConfig()
    v = VLMTrainConfig()
    parser.add_argument("--planner", choices=PLANNER_KINDS, default="mlp", help="mlp: the MLP policy (default); vlm: a vision-language model (docs/vlm.md)")
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
    parser.add_argument("--lr", type=positive_float, help=f"learning rate (default {d.lr}; vlm {v.lr})")
    parser.add_argument("--clip-eps", type=positive_float, default=d.clip_eps, help=f"ratio clipping ε (default {d.clip_eps})")
    parser.add_argument("--kl-beta", type=float, help=f"KL weight β to the initial policy (default {d.kl_beta}; vlm {v.kl_beta})")
    parser.add_argument("--forbid-cycle", action="store_true", help="mask the tool called two steps before too (no A -> B -> A loops)")
    parser.add_argument(
        "--serve-forbid-cycle",
        action="store_true",
        help="write the policy with A -> B -> A loops masked at inference, whether or not training masked them (the default policy's recipe)",
    )
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="before GRPO, fit the policy to the judge's greedy search on the training images (label-free; restore_r1.agent.distill)",
    )
    parser.add_argument(
        "--cold-start-temperature",
        type=positive_float,
        default=d.cold_start_temperature,
        metavar="TAU",
        help=f"temperature of the cold start's soft targets, in judge units (default {d.cold_start_temperature})",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes for the cold start's greedy search (default 1; the result does not depend on it)",
    )
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
    vlm = parser.add_argument_group("VLM planner (--planner vlm)")
    vlm.add_argument(
        "--vlm-model", metavar="DIR|URI", help="base vision-language model: a local transformers folder or registry URI (default $RESTORE_R1_VLM_MODEL)"
    )
    vlm.add_argument(
        "--lora-rank", type=non_negative_int, default=v.lora_rank, metavar="R", help=f"LoRA rank through peft; 0 trains every weight (default {v.lora_rank})"
    )
    vlm.add_argument("--lora-alpha", type=positive_int, default=v.lora_alpha, help=f"LoRA alpha (default {v.lora_alpha})")
    vlm.add_argument(
        "--parse-penalty", type=float, default=v.parse_penalty, help=f"reward of an answer that is not a plan, negated (default {v.parse_penalty})"
    )
    vlm.add_argument("--temperature", type=positive_float, default=v.temperature, help=f"sampling temperature of the answers (default {v.temperature})")
    vlm.add_argument(
        "--max-new-tokens", type=positive_int, default=v.max_new_tokens, metavar="N", help=f"tokens per answer at most (default {v.max_new_tokens})"
    )
    vlm.add_argument("--precision", choices=PRECISIONS, default=v.precision, help="auto: bf16 on a CUDA GPU that has it, else fp32 (default auto)")
    vlm.add_argument(
        "--weights-dtype", choices=DTYPES, default=v.weights_dtype, help=f"dtype of the trained weights (default {v.weights_dtype}; bfloat16 with LoRA)"
    )
    vlm.add_argument("--no-gradient-checkpointing", action="store_true", help="keep activations (faster, more memory)")
    vlm.add_argument("--tools-url", metavar="HOST:PORT", help="call the tools of a Triton server (restore_r1_tool_<name> models) instead of in-process")
    vlm.add_argument("--protocol", choices=("http", "grpc"), default="http", help="Triton protocol of --tools-url (default: http)")


def config_from_args(args: argparse.Namespace):
    """The :class:`~restore_r1.agent.grpo.GRPOConfig` the options give (the MLP planner's)."""
    from restore_r1.agent.grpo import GRPOConfig

    return GRPOConfig(
        group_size=args.group,
        updates=args.steps,
        batch_images=args.batch_images,
        max_steps=args.max_steps,
        update_epochs=args.epochs,
        lr=GRPOConfig.lr if args.lr is None else args.lr,
        clip_eps=args.clip_eps,
        kl_beta=GRPOConfig.kl_beta if args.kl_beta is None else args.kl_beta,
        entropy_coef=args.entropy_coef,
        tool_cost=args.tool_cost,
        forbid_cycle=args.forbid_cycle,
        cold_start=args.cold_start,
        cold_start_temperature=args.cold_start_temperature,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )


def _set_forbid_cycle(policy_dir) -> None:
    """Rewrites the policy in ``policy_dir`` with ``forbid_cycle`` on (its weights unchanged)."""
    from restore_r1.agent.policy import load_policy, save_policy

    policy = load_policy(policy_dir)
    policy.config.forbid_cycle = True
    save_policy(policy, policy_dir)


def run(args: argparse.Namespace) -> int:
    if args.planner == "vlm":
        if args.distributed or args.export:
            raise ValueError("--distributed and --export are for --planner mlp")
        result, tools = _train_vlm(args)
    elif args.planner == "mlp":
        if args.vlm_model or args.tools_url:
            raise ValueError("--vlm-model and --tools-url are for --planner vlm")
        result, tools = _train_mlp(args)
        if result is None:  # a rank other than 0: rank 0 reports
            return 0
        if args.serve_forbid_cycle:
            _set_forbid_cycle(result.policy_dir)
    else:
        raise ValueError(f"unknown planner {args.planner!r}")
    last = result.records[-1] if result.records else {}
    summary = ", ".join(f"{label} {last[key]:.{digits}f}" for key, label, digits in LAST_UPDATE_FIELDS if last.get(key) is not None)
    print(
        f"policy written to {result.policy_dir} ({result.updates} updates"
        + (f", resumed from {result.resumed_from}" if result.resumed_from else "")
        + (f"; last update: {summary}" if summary else "")
        + f"); log: {result.log_path}"
    )
    (result.out_dir / "train_args.json").write_text(json.dumps({**vars(args), "_run": None, "tools": list(tools)}, indent=2, default=str))
    return 0


def _train_mlp(args: argparse.Namespace):
    """The MLP policy's run (our GRPO), in one process or data-parallel under torchrun;
    ``(None, tools)`` on ranks other than 0."""
    from restore_r1.agent.distributed import launched_world_size
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.agent.trainer import train
    from restore_r1.encoders import create_encoder
    from restore_r1.judges import create_judge

    config = config_from_args(args)
    args.lr, args.kl_beta = config.lr, config.kl_beta
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
            cold_start_workers=args.workers,
        )
    finally:
        if collective is not None:
            from restore_r1.agent.distributed import shutdown

            shutdown()
        if staged is not None:
            import shutil

            shutil.rmtree(staged, ignore_errors=True)
    if collective is not None and collective.rank != 0:
        return None, tools
    if args.export:
        from restore_r1.pipeline.trainjob import export_run

        export_run(result.out_dir, args.export)
    return result, tools


def _train_vlm(args: argparse.Namespace):
    """The VLM planner's run: TRL's GRPOTrainer on the same data, tools and judge."""
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.agent.vlm_trainer import VLMTrainConfig, train_vlm
    from restore_r1.judges import create_judge

    config = VLMTrainConfig(
        group_size=args.group,
        batch_images=args.batch_images,
        updates=args.steps,
        lr=VLMTrainConfig.lr if args.lr is None else args.lr,
        kl_beta=VLMTrainConfig.kl_beta if args.kl_beta is None else args.kl_beta,
        clip_eps=args.clip_eps,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        max_steps=args.max_steps,
        tool_cost=args.tool_cost,
        parse_penalty=args.parse_penalty,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        precision=args.precision,
        weights_dtype=args.weights_dtype,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        seed=args.seed,
    )
    args.lr, args.kl_beta = config.lr, config.kl_beta
    if args.tools_url:
        from restore_r1.serving.client import triton_tool_map

        tools = triton_tool_map(args.tools_url, _tool_names(args.tools), protocol=args.protocol)
    else:
        tools = available_tool_map(args.tools)
    from restore_r1.registry import local_vlm_model

    result = train_vlm(
        args.data, args.out, local_vlm_model(args.vlm_model), judge=create_judge(args.judge), tools=tools, config=config, progress=not args.no_progress
    )
    return result, tools


def _tool_names(names: list[str] | None) -> list[str]:
    """The given tool names, or every tool available in-process (a server serves the catalogue's)."""
    from restore_r1.tools import list_tools

    return list(names) if names else [t.name for t in list_tools(available_only=True)]
