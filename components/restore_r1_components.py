"""The components. Each body parses its inputs, calls one :mod:`restore_r1.pipeline.steps` (training) or
:mod:`restore_r1.pipeline.batch` (batch restoration) function and writes its outputs; all logic is in the library (installed in the image).

KFP copies each function's source into the component, so imports live inside the bodies.
``install_kfp_package=False``: the image already has ``kfp`` and pods need not reach PyPI.
"""


from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def synthesize(images_uri: str, cases: str, per_case: int, seed: int, crop: int, dataset: Output[Dataset],
               manifest: Output[Artifact]):
    """Clean images (``bundled[:split]``, a folder or ``s3://...``) -> degraded data set + its manifest."""
    import json
    import shutil

    from restore_r1.pipeline.steps import synthesize_step

    info = synthesize_step(images_uri, dataset.path, cases=cases, per_case=per_case, seed=seed, crop=crop)
    shutil.copyfile(f"{dataset.path}/manifest.jsonl", manifest.path)
    dataset.metadata.update(info)
    dataset.metadata["info_json"] = json.dumps(info, sort_keys=True)  # exact numbers for the registry
    manifest.metadata.update({"pairs": info["pairs"], "sha256": info["manifest_sha256"]})
    print(f"data set: {info['pairs']} pairs from {info['sources']} images -> {dataset.uri}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_grpo(dataset: Input[Dataset], judge: str, encoder: str, tools: str, group_size: int, steps: int, max_steps: int,
               batch_images: int, seed: int, planner: str, vlm_model: str, vlm_options: dict, train_nodes: int,
               train_gpus_per_node: int, trainjob_image: str, trainjob_runtime: str, train_work_uri: str, train_volume: str,
               accelerator_type: str, gpu_node_selector: dict, gpu_tolerations: list, s3_endpoint: str, s3_secret: str,
               train_metrics_port: int, pushgateway: str, run_id: str, policy: Output[Model], training_log: Output[Artifact],
               metrics: Output[Metrics]):
    """GRPO training on the data set's degraded images -> policy checkpoint (an MLP policy or a VLM planner) + training
    log (in this pod, or as a Kubeflow Trainer TrainJob when an MLP run asks for more than one node or GPU)."""
    from restore_r1.pipeline.steps import train_step

    trainjob = {"run_id": run_id, "image": trainjob_image, "runtime": trainjob_runtime, "work_uri": train_work_uri, "volume": train_volume,
                "gpu_resource": accelerator_type, "node_selector": gpu_node_selector, "tolerations": gpu_tolerations,
                "s3_endpoint": s3_endpoint, "s3_secret": s3_secret, "metrics_port": train_metrics_port}
    out = train_step(dataset.path, policy.path, training_log.path, judge=judge, encoder=encoder, tools=tools, group_size=group_size,
                     steps=steps, max_steps=max_steps, batch_images=batch_images, seed=seed, planner=planner, vlm_model=vlm_model,
                     vlm_options=vlm_options, nodes=train_nodes, gpus_per_node=train_gpus_per_node, trainjob=trainjob,
                     pushgateway=pushgateway, run_name=run_id)
    import json

    # "parameters" is for the UI; KFP metadata turns every number into a float, so the registry
    # takes the exact values from "parameters_json".
    policy.metadata.update({"framework": out["format"], "parameters": out["parameters"],
                            "parameters_json": json.dumps(out["parameters"], sort_keys=True)})
    for key in ("mean_return", "mean_final_score", "mean_steps", "kl", "entropy", "parse_failure_rate"):
        if key in out["final"]:
            metrics.log_metric(f"train_{key}", float(out["final"][key]))
    print(f"policy -> {policy.uri}; last update: {out['final']}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(policy: Input[Model], images_uri: str, cases: str, per_case: int, seed: int, crop: int, methods: str,
             metric_names: str, judge: str, results: Output[Artifact], report: Output[Markdown], report_html: Output[HTML],
             metrics: Output[Metrics]):
    """Policy + held-out images -> results folder (JSON, CSV, Markdown, plots), UI reports and key metrics."""
    from restore_r1.pipeline.report import key_metrics, summary_html, summary_markdown
    from restore_r1.pipeline.steps import evaluate_step

    res = evaluate_step(policy.path, images_uri, results.path, cases=cases, per_case=per_case, seed=seed, crop=crop,
                        methods=methods, metrics=metric_names, judge=judge)
    with open(report.path, "w") as fh:
        fh.write(summary_markdown(res))
    with open(report_html.path, "w") as fh:
        fh.write(summary_html(res, results.path))
    for key, value in key_metrics(res).items():
        metrics.log_metric(key, value)
    print(summary_markdown(res))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(results: Input[Artifact], registry: str, model_name: str, metric: str, min_delta: float, s3_endpoint: str,
         decision: Output[Markdown]) -> bool:
    """True when the new policy beats the registry's production version on the same evaluation (or there is none)."""
    from restore_r1.pipeline.steps import gate_step

    verdict = gate_step(results.path, registry, model_name, metric=metric, min_delta=min_delta, endpoint=s3_endpoint)
    with open(decision.path, "w") as fh:
        fh.write(verdict.to_markdown())
    decision.metadata.update(verdict.to_dict())
    print(("GATE PASSED: " if verdict.passed else "GATE NOT PASSED: ") + verdict.reason)
    return verdict.passed


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(policy: Input[Model], results: Input[Artifact], dataset: Input[Dataset], registry: str, model_name: str, promote: bool,
             s3_endpoint: str, model_registry_address: str, run_id: str, run_name: str, registered: Output[Artifact]) -> int:
    """Policy + its evaluation -> a new registry version (production if ``promote``, else staging)."""
    import json

    from restore_r1.pipeline.steps import register_step

    version = register_step(
        policy.path, results.path, registry, model_name, promote, endpoint=s3_endpoint,
        dataset={"uri": dataset.uri, **json.loads(dataset.metadata.get("info_json", "{}"))}, parameters=json.loads(policy.metadata.get("parameters_json", "{}")),
        run={"id": run_id, "name": run_name, "pipeline": "restore-r1-training"}, model_registry_address=model_registry_address,
    )
    with open(registered.path, "w") as fh:
        json.dump(version.to_manifest() | {"aliases": version.aliases}, fh, indent=2)
    registered.metadata.update({"registry": registry, "uri": version.uri, "version": version.version, "aliases": version.aliases})
    print(f"registered {version.uri} ({', '.join(version.aliases)}) in {registry}: {version.artifact_uri}")
    return version.version


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_serving(registry: str, model_name: str, version: int, s3_endpoint: str, model_repository: str,
                   triton_entry: Output[Model]):
    """A registry version -> a versioned Triton model-repository entry (also copied to ``model_repository`` if set)."""
    from restore_r1.pipeline.steps import export_step

    result, published = export_step(registry, model_name, version, triton_entry.path, endpoint=s3_endpoint,
                                    model_repository=model_repository)
    triton_entry.metadata.update({"version": version, "files": result.files, "notes": result.notes, "published": published})
    for note in result.notes:
        print(f"note: {note}")
    print(f"Triton entry restore_r1_policy/{version} -> {triton_entry.uri}" + (f"; copied to {model_repository}" if published else ""))


# ------------------------------------------------------------------------------- batch restoration
@dsl.component(base_image=IMAGE, install_kfp_package=False)
def list_photos(input_uri: str, output_uri: str, shards: int, policy: str, registry: str, s3_endpoint: str, plan: Output[Artifact]) -> list:
    """Photos under ``input_uri`` -> the batch plan (photo list, pinned policy) + the shard indices to fan out over."""
    from restore_r1.pipeline.batch import plan_batch

    batch = plan_batch(input_uri, output_uri, shards=shards, policy=policy, registry=registry or None, endpoint=s3_endpoint or None)
    with open(plan.path, "w") as fh:
        fh.write(batch.to_json())
    plan.metadata.update({"photos": len(batch.keys), "shards": batch.shards, "policy": batch.policy, "output_uri": batch.output_uri})
    print(f"{len(batch.keys)} photo(s) under {batch.input_uri} in {batch.shards} shard(s) -> {batch.output_uri}; policy {batch.policy or '(the server)'}")
    return list(range(batch.shards))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def restore_shard(plan: Input[Artifact], shard: int, triton_url: str, protocol: str, judge: str, max_steps: int, device: str,
                  max_pixels: int, overwrite: bool, s3_endpoint: str, accelerator_type: str, accelerator_limit: int) -> str:
    """One shard of the plan -> restored photos + their manifest records (photos already done are skipped).

    ``accelerator_type`` / ``accelerator_limit`` are the pod's request, only logged here: passing them
    in carries them into the ParallelFor sub-DAG, whose inputs KFP 2.17 omits when only a resource request uses them."""
    from restore_r1.pipeline.batch import BatchPlan
    from restore_r1.pipeline.batch import restore_shard as run_shard

    with open(plan.path) as fh:
        batch = BatchPlan.from_json(fh.read())
    where = f"Triton {triton_url} ({protocol})" if triton_url else f"in process on {device} (pod asks {accelerator_limit} x {accelerator_type})"
    print(f"shard {shard}/{batch.shards}: {len(batch.shard_keys(shard))} photo(s), restoring through {where}", flush=True)
    result = run_shard(batch, shard, triton_url=triton_url, protocol=protocol, judge=judge, max_steps=max_steps if max_steps >= 0 else None,
                       device=device, max_pixels=max_pixels or None, overwrite=overwrite, endpoint=s3_endpoint or None,
                       on_record=lambda r: print(f"shard {shard}: {r['input']} -> {r['output']} {r['tools']} {r['seconds']:.2f} s", flush=True),
                       on_failure=lambda key, message: print(f"shard {shard}: FAILED {key}: {message}", flush=True))
    print(f"shard {shard}/{batch.shards}: {result.restored} restored, {result.skipped} skipped, {result.failed} failed in {result.seconds:.1f} s")
    return result.to_json()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def summarize_batch(plan: Input[Artifact], results: list, s3_endpoint: str, manifest: Output[Artifact], summary: Output[Markdown],
                    metrics: Output[Metrics]):
    """The shards' results -> ``manifest.jsonl`` and ``summary.json`` beside the outputs, a report and the batch's metrics.
    Failed photos are counted (``batch_failed``) and listed, not raised: a rerun retries them."""
    from restore_r1.pipeline.batch import MANIFEST_FILE, BatchPlan, ShardResult, finish_batch, summary_markdown, write_manifest_copy

    with open(plan.path) as fh:
        batch = BatchPlan.from_json(fh.read())
    report = finish_batch(batch, [ShardResult.from_json(r) for r in results], endpoint=s3_endpoint or None)
    write_manifest_copy(batch.output_uri, manifest.path, endpoint=s3_endpoint or None)
    with open(summary.path, "w") as fh:
        fh.write(summary_markdown(report))
    for key, value in report.metrics().items():
        metrics.log_metric(key, value)
    manifest.metadata.update({"photos": report.done, "uri": f"{batch.output_uri}/{MANIFEST_FILE}"})
    print(summary_markdown(report))
