"""One function per pipeline component; the components only move KFP inputs and outputs.

Each function takes plain values and local paths (the KFP artifact paths), does the work with
the library and returns what the component records (metadata, metrics, the gate's decision).
They run the same in a Kubeflow pod, under ``kfp.local`` and in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from restore_r1.images import sha256_file

#: ``images_uri`` meaning the photos bundled with scikit-image; ``bundled:train`` / ``bundled:heldout``
#: pick a split (synthesis defaults to train, evaluation always uses the held-out photos).
BUNDLED = "bundled"
#: Files of an evaluation folder that the KFP UI report and the registry use.
RESULTS_FILE = "results.json"


def _split_names(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _crop(crop: int) -> int | None:
    """The pipeline writes "no crop" as 0."""
    if isinstance(crop, bool) or int(crop) != crop or crop < 0:
        raise ValueError(f"crop {crop!r} must be an integer >= 0 (0: whole images)")
    return int(crop) or None


def resolve_images(uri: str, work_dir: str | os.PathLike, default_split: str) -> tuple[str | None, str]:
    """Where clean images come from: ``(folder or None for the bundled photos, split)``.

    ``uri`` is ``""``/``bundled`` (bundled photos, ``default_split``), ``bundled:SPLIT``, a local
    folder, or ``s3://bucket/prefix`` (its image files are downloaded into ``work_dir``).

    Raises:
        ValueError: an unknown scheme or split; FileNotFoundError: a missing folder.
    """
    from restore_r1.cleanimages import split_names
    from restore_r1.images import IMAGE_SUFFIXES

    text = (uri or "").strip()
    if text in ("", BUNDLED):
        return None, default_split
    if text.startswith(BUNDLED + ":"):
        split = text.split(":", 1)[1]
        split_names(split)  # raises on an unknown split
        return None, split
    if text.startswith("s3://"):
        from restore_r1.registry.stores import S3Store

        store = S3Store(text)
        dest = Path(work_dir) / "images"
        dest.mkdir(parents=True, exist_ok=True)
        keys = [k for k in store.list("") if Path(k).suffix.lower() in IMAGE_SUFFIXES and "/" not in k]
        if not keys:
            raise ValueError(f"{text}: no image files ({', '.join(IMAGE_SUFFIXES)}) directly under this prefix")
        for key in keys:
            store.download(key, dest / key)
        return str(dest), "all"
    if "://" in text:
        raise ValueError(f"images URI {text!r}: use '{BUNDLED}', '{BUNDLED}:train|heldout|all', a folder or s3://bucket/prefix")
    if not Path(text).is_dir():
        raise FileNotFoundError(f"images folder {text} does not exist")
    return text, "all"


# ------------------------------------------------------------------------------------------ steps
def synthesize_step(images_uri: str, out_dir: str | os.PathLike, cases: str, per_case: int, seed: int, crop: int) -> dict[str, Any]:
    """Clean images -> degraded data set in ``out_dir`` (``lq/``, ``gt/``, ``manifest.jsonl``).

    Returns:
        metadata: ``pairs``, ``sources``, ``cases``, ``per_case``, ``seed``, ``crop``, ``images_uri``,
        ``manifest_sha256`` and ``failures`` (sources that could not be read).

    Raises:
        ValueError: no pair could be built (every source failed).
    """
    from restore_r1.degradations import parse_cases
    from restore_r1.synth import MANIFEST_NAME, build_dataset

    with tempfile.TemporaryDirectory(prefix="restore-r1-images-") as work:
        images_dir, split = resolve_images(images_uri, work, default_split="train")
        summary = build_dataset(
            out_dir, images_dir=images_dir, cases=parse_cases(cases), per_case=per_case, seed=seed, crop=_crop(crop), progress=False, split=split
        )
    done = summary.written + summary.skipped
    if done == 0:
        raise ValueError(f"no pair was built from {images_uri or BUNDLED}: " + "; ".join(m for _, m in summary.failures))
    return {
        "pairs": done,
        "sources": summary.sources,
        "cases": cases,
        "per_case": per_case,
        "seed": seed,
        "crop": crop,
        "images_uri": images_uri or BUNDLED,
        "manifest_sha256": sha256_file(Path(out_dir) / MANIFEST_NAME),
        "failures": [m for _, m in summary.failures],
    }


def train_step(
    dataset_dir: str | os.PathLike,
    policy_out: str | os.PathLike,
    log_out: str | os.PathLike,
    judge: str,
    encoder: str,
    tools: str,
    group_size: int,
    steps: int,
    max_steps: int,
    batch_images: int,
    seed: int,
    work_dir: str | os.PathLike | None = None,
    planner: str = "mlp",
    vlm_model: str = "",
    vlm_options: dict[str, Any] | None = None,
    nodes: int = 1,
    gpus_per_node: int = 1,
    trainjob: dict[str, Any] | None = None,
    pushgateway: str = "",
    run_name: str = "",
    client=None,
) -> dict[str, Any]:
    """GRPO training on a data set's degraded images -> policy folder ``policy_out`` + ``train_log.jsonl`` at ``log_out``.

    One process here, unless the run asks for more than one node or GPU
    (:func:`restore_r1.pipeline.trainjob.wants_trainjob`): then a Kubeflow Trainer TrainJob runs it
    (:func:`restore_r1.pipeline.trainjob.run_trainjob`; MLP planner only).

    Args:
        tools: comma-separated tool names, or "" for every available tool.
        work_dir: run folder for checkpoints (default: a temporary folder, removed after).
        planner: ``"mlp"`` (our GRPO over encoder features) or ``"vlm"`` (TRL's GRPOTrainer on a
            vision-language model; ``encoder`` is then unused).
        vlm_model: the VLM planner's base model, a folder or registry URI ("" reads ``$RESTORE_R1_VLM_MODEL``).
        vlm_options: further :class:`~restore_r1.agent.vlm_trainer.VLMTrainConfig` fields for the
            VLM planner (e.g. ``{"lr": 1e-4, "lora_rank": 16}``); an unknown field is an error.
        nodes, gpus_per_node: what the run asks for.
        trainjob: the TrainJob's settings, the :class:`~restore_r1.pipeline.trainjob.TrainJobRequest`
            fields besides name, nodes, GPUs and train_args, plus ``run_id`` (names the TrainJob)
            and optionally ``namespace``; needed only for a TrainJob.
        pushgateway: push live training metrics there after every update ("" for none; MLP planner).
        run_name: the metrics' run label (default: the TrainJob's name, else "pipeline").
        client: a ``kubeflow.trainer.TrainerClient`` (tests); None: the pod's cluster.

    Returns:
        ``{"parameters": {...}, "final": last log record, "format": the registry format of the planner kind}``.
    """
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.judges import create_judge
    from restore_r1.pipeline.trainjob import wants_trainjob
    from restore_r1.registry import POLICY_FORMATS

    if planner not in POLICY_FORMATS:
        raise ValueError(f"planner {planner!r}: expected one of {', '.join(POLICY_FORMATS)}")
    if vlm_options and planner != "vlm":
        raise ValueError(f"vlm_options {sorted(vlm_options)} are for planner 'vlm', not {planner!r}")
    if planner == "vlm" and wants_trainjob(nodes, gpus_per_node):
        raise ValueError("a VLM planner trains in this pod: distributed training (train_nodes / train_gpus_per_node > 1) is for planner 'mlp'")
    tool_map = available_tool_map(_split_names(tools) or None)
    if planner == "mlp":
        from restore_r1.agent.grpo import GRPOConfig

        config = GRPOConfig(
            group_size=group_size, updates=steps, max_steps=max_steps, batch_images=batch_images, seed=seed, checkpoint_every=max(1, steps // 5) if steps else 0
        )
        parameters = {"judge": judge, "encoder": encoder, "tools": list(tool_map), **config.to_dict()}
        if wants_trainjob(nodes, gpus_per_node):
            records = _train_as_trainjob(
                dataset_dir, policy_out, log_out, config, judge, encoder, list(tool_map), nodes, gpus_per_node, trainjob, pushgateway, client
            )
            parameters["trainjob"] = {"nodes": nodes, "gpus_per_node": gpus_per_node, "runtime": (trainjob or {}).get("runtime", "")}
            return {"parameters": parameters, "final": records[-1] if records else {}, "format": POLICY_FORMATS[planner]}

    temp = None if work_dir is not None else tempfile.mkdtemp(prefix="restore-r1-train-")
    try:
        if planner == "mlp":
            from restore_r1.agent.trainer import train
            from restore_r1.encoders import create_encoder

            monitor = None
            if pushgateway:
                from restore_r1.agent.train_metrics import PrometheusExporter

                monitor = PrometheusExporter(run=run_name or "pipeline", pushgateway=pushgateway)
            result = train(
                dataset_dir,
                work_dir or temp,
                encoder=create_encoder(encoder),
                judge=create_judge(judge),
                tools=tool_map,
                config=config,
                progress=False,
                monitor=monitor,
            )
        else:
            from restore_r1.agent.vlm_trainer import VLMTrainConfig, train_vlm
            from restore_r1.registry import local_vlm_model

            common = {"group_size": group_size, "updates": steps, "max_steps": max_steps, "batch_images": batch_images, "seed": seed}
            clash = sorted(set(common) & set(vlm_options or {}))
            if clash:
                raise ValueError(f"vlm_options {clash} are set by the pipeline's own parameters; set those instead")
            config = VLMTrainConfig.from_dict({**common, **(vlm_options or {})})
            result = train_vlm(
                dataset_dir, work_dir or temp, local_vlm_model(vlm_model or None), judge=create_judge(judge), tools=tool_map, config=config, progress=False
            )
            parameters = {"planner": planner, "judge": judge, "vlm_model": vlm_model, "tools": list(tool_map), **config.to_dict()}
        if Path(policy_out).exists():
            shutil.rmtree(policy_out)
        shutil.copytree(result.policy_dir, policy_out)
        Path(log_out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.log_path, log_out)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return {"parameters": parameters, "final": result.records[-1] if result.records else {}, "format": POLICY_FORMATS[planner]}


def train_cli_args(config, judge: str, encoder: str, tools: list[str]) -> list[str]:
    """The ``restore-r1 train`` options that give ``config`` (and judge, encoder, tools)."""
    from restore_r1.agent.grpo import GRPOConfig

    default = GRPOConfig()
    differs = {k for k, v in config.to_dict().items() if v != default.to_dict()[k]}
    supported = {"group_size", "updates", "batch_images", "max_steps", "seed", "checkpoint_every", "update_epochs", "lr", "clip_eps", "kl_beta"}
    supported |= {"entropy_coef", "tool_cost", "forbid_cycle"}
    if differs - supported:
        raise ValueError(f"GRPO settings {sorted(differs - supported)} have no restore-r1 train option")
    args = ["--judge", judge, "--encoder", encoder, "--tools", ",".join(tools)]
    args += ["--group", str(config.group_size), "--steps", str(config.updates), "--batch-images", str(config.batch_images)]
    args += ["--max-steps", str(config.max_steps), "--seed", str(config.seed), "--checkpoint-every", str(config.checkpoint_every)]
    args += ["--epochs", str(config.update_epochs), "--lr", repr(config.lr), "--clip-eps", repr(config.clip_eps), "--kl-beta", repr(config.kl_beta)]
    args += ["--entropy-coef", repr(config.entropy_coef), "--tool-cost", repr(config.tool_cost)]
    return args + (["--forbid-cycle"] if config.forbid_cycle else [])


def _train_as_trainjob(dataset_dir, policy_out, log_out, config, judge, encoder, tools, nodes, gpus_per_node, trainjob, pushgateway, client) -> list[dict]:
    from restore_r1.pipeline.trainjob import TrainJobRequest, run_trainjob, trainjob_name

    settings = dict(trainjob or {})
    run_id = settings.pop("run_id", "")
    namespace = settings.pop("namespace", None) or None
    if not run_id:
        raise ValueError(f"{nodes} node(s) x {gpus_per_node} GPU(s) runs as a TrainJob, which needs the pipeline run id (trainjob['run_id'])")
    request = TrainJobRequest(
        name=trainjob_name(run_id),
        num_nodes=nodes,
        gpus_per_node=gpus_per_node,
        train_args=tuple(train_cli_args(config, judge, encoder, tools)),
        pushgateway=pushgateway,
        **settings,
    )
    return run_trainjob(dataset_dir, policy_out, log_out, request, client=client, namespace=namespace)


def evaluation_config(
    images_uri: str,
    cases: str,
    per_case: int,
    seed: int,
    crop: int,
    methods: str,
    metrics: str,
    judge: str,
    max_steps: int,
    policy: str | None,
    images_dir: str | None = None,
):
    """The :class:`~restore_r1.evaluate.EvalConfig` the pipeline's evaluate step uses."""
    from restore_r1.degradations import parse_cases
    from restore_r1.evaluate import EvalConfig

    return EvalConfig(
        cases=parse_cases(cases),
        per_case=per_case,
        seed=seed,
        crop=_crop(crop),
        methods=_split_names(methods),
        metrics=_split_names(metrics),
        max_steps=max_steps,
        images=images_dir,
        policy=policy,
        judge=judge,
    )


def evaluate_step(
    policy_dir: str | os.PathLike,
    images_uri: str,
    out_dir: str | os.PathLike,
    cases: str,
    per_case: int,
    seed: int,
    crop: int,
    methods: str,
    metrics: str,
    judge: str,
    max_steps: int = 5,
) -> dict[str, Any]:
    """Evaluates the policy (and the baselines in ``methods``) on held-out images into ``out_dir``.

    ``images_uri`` is ``bundled`` (the held-out photos), a folder or ``s3://...``.

    Returns:
        the evaluation's results (``results.json``).
    """
    from restore_r1.evaluate import evaluate

    with tempfile.TemporaryDirectory(prefix="restore-r1-heldout-") as work:
        images_dir, split = resolve_images(images_uri, work, default_split="heldout")
        if images_dir is None and split != "heldout":
            raise ValueError(f"evaluation images {images_uri!r}: only the bundled held-out photos may be used, never training ones")
        config = evaluation_config(images_uri, cases, per_case, seed, crop, methods, metrics, judge, max_steps, str(policy_dir), images_dir)
        results = evaluate(config, out_dir, progress=False)
    if images_dir is not None:  # record the URI, not the temporary download folder
        results["config"]["images"] = images_uri
        from restore_r1.images import atomic_write_bytes

        atomic_write_bytes(Path(out_dir) / RESULTS_FILE, json.dumps(results, indent=2).encode())
    return results


def read_results(eval_dir: str | os.PathLike) -> dict[str, Any]:
    """An evaluation folder's ``results.json``."""
    path = Path(eval_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no evaluation results (run the evaluate step first)")
    return json.loads(path.read_text())


def gate_step(eval_dir: str | os.PathLike, registry: str, name: str, metric: str = "policy_psnr", min_delta: float = 0.0, endpoint: str = ""):
    """The promotion gate (:func:`restore_r1.pipeline.gate.gate`), re-evaluating production when its
    recorded evaluation used other settings."""
    from restore_r1.evaluate import EvalConfig, evaluate
    from restore_r1.pipeline.gate import gate
    from restore_r1.registry import open_registry

    reg = open_registry(registry, endpoint_url=endpoint or None)
    results = read_results(eval_dir)

    def reevaluate(production, config: dict[str, Any]) -> dict[str, Any]:
        policy_dir = reg.pull(production.name, production.version)
        settings = {**config, "methods": ["policy"], "policy": str(policy_dir)}
        with tempfile.TemporaryDirectory(prefix="restore-r1-gate-") as work:
            if settings.get("images") and "://" in str(settings["images"]):
                settings["images"], _ = resolve_images(settings["images"], work, default_split="heldout")
            return evaluate(EvalConfig(**settings), Path(work) / "eval", progress=False)

    return gate(results, reg, name, metric=metric, min_delta=min_delta, reevaluate=reevaluate)


def register_step(
    policy_dir: str | os.PathLike,
    eval_dir: str | os.PathLike,
    registry: str,
    name: str,
    promote: bool,
    endpoint: str = "",
    dataset: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    model_registry_address: str = "",
):
    """Publishes the policy with its evaluation's key metrics; ``production`` if ``promote`` else ``staging``.

    With ``model_registry_address`` (``host:port``), the version is also mirrored into the
    Kubeflow Model Registry there.

    Returns:
        the new :class:`~restore_r1.registry.ModelVersion`.
    """
    from restore_r1.pipeline.gate import EVALUATION_PARAM, evaluation_settings
    from restore_r1.pipeline.report import key_metrics
    from restore_r1.registry import open_registry, publish_policy

    results = read_results(eval_dir)
    reg = open_registry(registry, endpoint_url=endpoint or None)
    params = {**(parameters or {}), EVALUATION_PARAM: evaluation_settings(results.get("config", {}))}
    version = publish_policy(
        reg,
        name,
        policy_dir,
        metrics=key_metrics(results),
        parameters=params,
        dataset=dict(dataset or {}),
        run=dict(run or {}),
        stage="production" if promote else "staging",
    )
    if model_registry_address:
        from restore_r1.registry.kubeflow import KubeflowModelRegistry

        host, _, port = model_registry_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"model registry address {model_registry_address!r}: expected HOST:PORT")
        KubeflowModelRegistry.connect(host, int(port)).mirror(version)
    return version


def export_step(
    registry: str, name: str, version: int, out_dir: str | os.PathLike, endpoint: str = "", model_repository: str = "", triton_source: str | None = None
):
    """Pulls ``name@version`` (sha256-verified) and writes its Triton entry under ``out_dir``.

    With ``model_repository`` (a folder or ``s3://bucket/prefix`` that Triton serves from), the
    entry is also copied there.

    Returns:
        ``(ExportResult, list of URIs written to model_repository)``.
    """
    from restore_r1.pipeline.serving import export_triton_entry, upload_repository_entry
    from restore_r1.registry import open_registry

    reg = open_registry(registry, endpoint_url=endpoint or None)
    policy_dir = reg.pull(name, version)
    result = export_triton_entry(policy_dir, out_dir, version, triton_source=triton_source)
    published = upload_repository_entry(out_dir, model_repository, version, endpoint_url=endpoint or None) if model_repository else []
    return result, published
