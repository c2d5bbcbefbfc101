"""The ``restore_r1_batch`` pipeline: restore every photo under a prefix.

    list_photos -> ParallelFor(shard) restore_shard -> summarize_batch

``input_uri`` is ``s3://bucket/prefix`` or a folder (a PVC mounted in the image); the restored
PNGs, one manifest record per photo and ``manifest.jsonl`` go under ``output_uri``
(restore_r1/pipeline/batch.py has the layout). ``list_photos`` pins ``policy`` to one registry
version, so every shard uses the same one. With ``triton_url`` each shard restores through that
server (which must serve the pinned version, when ``policy`` is a registry URI); without it, in
process on the shard's own CPU, or GPU for a VLM planner (``device``, ``accelerator_limit``).

A photo is done once its record exists: a rerun skips those and restores the rest, so a killed
shard (or run) is resumed by running again. Caching is off for every task, since what is done
lives in the store, not in the task's inputs. ``summarize_batch`` logs counts, failures and
throughput as KFP metrics (``batch_restored``, ``batch_failed``, ``batch_photos_per_second``, ...).
"""

from kfp import dsl, kubernetes

from components import list_photos, restore_shard, summarize_batch
from pipelines.restore_r1_training import DEFAULT_REGISTRY, DEFAULT_S3_ENDPOINT, DEFAULT_S3_SECRET, S3_SECRET_KEYS

PIPELINE_NAME = "restore-r1-batch"
DEFAULT_POLICY = "registry://restore-r1-policy@production"
#: Shards that run at once (KFP fixes it at compile time); more shards than this queue. Size it to the
#: Triton replicas behind ``triton_url`` (docs/scaling.md).
MAX_PARALLEL_SHARDS = 8


@dsl.pipeline(name=PIPELINE_NAME, description="Restore every photo under an S3 prefix or folder, in shards, through Triton or in process; "
              "resumable, with a manifest line per photo.")
def restore_r1_batch(
    input_uri: str,
    output_uri: str,
    policy: str = DEFAULT_POLICY,
    triton_url: str = "",
    protocol: str = "grpc",
    shards: int = 4,
    max_steps: int = -1,
    max_pixels: int = 0,
    judge: str = "default",
    device: str = "cpu",
    overwrite: bool = False,
    registry: str = DEFAULT_REGISTRY,
    s3_endpoint: str = DEFAULT_S3_ENDPOINT,
    s3_secret: str = DEFAULT_S3_SECRET,
    accelerator_type: str = "nvidia.com/gpu",
    accelerator_limit: int = 0,
    gpu_node_selector: dict = {},
    gpu_tolerations: list = [],
):
    plan = list_photos(input_uri=input_uri, output_uri=output_uri, shards=shards, policy=policy, registry=registry,
                       s3_endpoint=s3_endpoint).set_display_name("list_photos")
    tasks = [plan]
    with dsl.ParallelFor(plan.outputs["Output"], parallelism=MAX_PARALLEL_SHARDS, name="shards") as shard:
        work = restore_shard(plan=plan.outputs["plan"], shard=shard, triton_url=triton_url, protocol=protocol, judge=judge,
                             max_steps=max_steps, device=device, max_pixels=max_pixels, overwrite=overwrite,
                             s3_endpoint=s3_endpoint, accelerator_type=accelerator_type,
                             accelerator_limit=accelerator_limit).set_display_name("restore_shard")
        work.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_limit)
        kubernetes.add_node_selector_json(work, node_selector_json=gpu_node_selector)
        kubernetes.add_toleration_json(work, toleration_json=gpu_tolerations)
        tasks.append(work)
    summary = summarize_batch(plan=plan.outputs["plan"], results=dsl.Collected(work.output), s3_endpoint=s3_endpoint).set_display_name("summarize_batch")
    tasks.append(summary)
    for task in tasks:
        task.set_caching_options(False)  # what is done lives in the store, not in the task's inputs
        kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS, optional=True)

