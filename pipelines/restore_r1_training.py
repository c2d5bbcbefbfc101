"""The ``restore_r1_training`` pipeline:

    synthesize -> train_grpo -> evaluate -> gate -> [if passed] register -> [if planner == mlp] export_serving

``planner`` picks what ``train_grpo`` trains: ``mlp`` (default), the MLP policy, or ``vlm``, a
vision-language model planner (docs/vlm.md) from ``vlm_model`` (a registry URI or a folder in the
image) with ``vlm_options`` (further VLMTrainConfig fields). A VLM planner is evaluated, gated and
registered like a policy but not exported: the Triton repository serves MLP policies only.

Every parameter shows in the KFP UI's "Create run" form with the default below. The training
step asks for an accelerator (type and count), a node selector and tolerations; all four are
pipeline parameters, so a run can change them. A run that asks for more than one node
(``train_nodes``) or GPU (``train_gpus_per_node``) trains as a Kubeflow Trainer TrainJob that the
training step launches and waits for (restore_r1/pipeline/trainjob.py; docs/kubeflow.md); the
step then only waits, so set ``accelerator_limit`` to 0 for such runs. The S3/MinIO credentials of the registry come
from a Kubernetes secret (default: KFP's own ``mlpipeline-minio-artifact``) as AWS_* variables.
``kfp.local`` ignores these Kubernetes settings, so ``make pipeline`` runs this same function.
"""


from kfp import dsl, kubernetes

from components import evaluate, export_serving, gate, register, synthesize, train_grpo
from components.image import IMAGE

PIPELINE_NAME = "restore-r1-training"
#: Default registry: a prefix of the bucket that Kubeflow Pipelines' MinIO already has.
DEFAULT_REGISTRY = "s3://mlpipeline/restore-r1/registry"
DEFAULT_S3_ENDPOINT = "http://minio-service.kubeflow:9000"
DEFAULT_S3_SECRET = "mlpipeline-minio-artifact"
#: Keys of that secret -> the variables boto3 reads.
S3_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
#: GPU nodes as labelled by NVIDIA's GPU operator, and the taint GPU node pools usually carry.
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
DEFAULT_EVAL_METHODS = "input,random,fixed,exploration,oracle,policy"
DEFAULT_EVAL_METRICS = "psnr,ssim,lpips,maniqa,clipiqa,musiq,deqa,niqe,piqe"
#: Where a TrainJob's data set and result travel between the step and the trainer pods.
DEFAULT_TRAIN_WORK_URI = "s3://mlpipeline/restore-r1/trainjobs"


@dsl.pipeline(name=PIPELINE_NAME, description="Synthesise degraded data, train a Restore-R1 policy with GRPO, evaluate it, "
              "register it if it beats production, and export it for Triton.")
def restore_r1_training(
    images_uri: str = "bundled:train",
    cases: str = "1-15",
    per_case: int = 2,
    crop: int = 256,
    seed: int = 0,
    judge: str = "default",
    encoder: str = "stats",
    tools: str = "",
    group_size: int = 8,
    steps: int = 200,
    max_steps: int = 5,
    batch_images: int = 4,
    planner: str = "mlp",
    vlm_model: str = "",
    vlm_options: dict = {},
    heldout_images_uri: str = "bundled:heldout",
    eval_cases: str = "1-15",
    eval_per_case: int = 1,
    eval_methods: str = DEFAULT_EVAL_METHODS,
    eval_metrics: str = DEFAULT_EVAL_METRICS,
    gate_metric: str = "policy_psnr",
    gate_min_delta: float = 0.0,
    promote: bool = False,
    model_name: str = "restore-r1-policy",
    registry: str = DEFAULT_REGISTRY,
    s3_endpoint: str = DEFAULT_S3_ENDPOINT,
    s3_secret: str = DEFAULT_S3_SECRET,
    model_repository: str = "",
    model_registry_address: str = "",
    accelerator_type: str = "nvidia.com/gpu",
    accelerator_limit: int = 1,
    gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
    gpu_tolerations: list = DEFAULT_GPU_TOLERATIONS,
    train_nodes: int = 1,
    train_gpus_per_node: int = 1,
    trainjob_runtime: str = "torch-distributed",
    trainjob_image: str = IMAGE,
    train_work_uri: str = DEFAULT_TRAIN_WORK_URI,
    train_volume: str = "",
    train_metrics_port: int = 0,
    pushgateway: str = "",
):
    synth = synthesize(images_uri=images_uri, cases=cases, per_case=per_case, seed=seed, crop=crop).set_display_name("synthesize")
    train = train_grpo(dataset=synth.outputs["dataset"], judge=judge, encoder=encoder, tools=tools, group_size=group_size,
                       steps=steps, max_steps=max_steps, batch_images=batch_images, seed=seed, planner=planner, vlm_model=vlm_model,
                       vlm_options=vlm_options, train_nodes=train_nodes, train_gpus_per_node=train_gpus_per_node,
                       trainjob_image=trainjob_image, trainjob_runtime=trainjob_runtime, train_work_uri=train_work_uri,
                       train_volume=train_volume, accelerator_type=accelerator_type, gpu_node_selector=gpu_node_selector,
                       gpu_tolerations=gpu_tolerations, s3_endpoint=s3_endpoint, s3_secret=s3_secret,
                       train_metrics_port=train_metrics_port, pushgateway=pushgateway,
                       run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("train_grpo")
    train.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_limit)
    kubernetes.add_node_selector_json(train, node_selector_json=gpu_node_selector)
    kubernetes.add_toleration_json(train, toleration_json=gpu_tolerations)
    ev = evaluate(policy=train.outputs["policy"], images_uri=heldout_images_uri, cases=eval_cases, per_case=eval_per_case, seed=seed,
                  crop=crop, methods=eval_methods, metric_names=eval_metrics, judge=judge).set_display_name("evaluate")
    decision = gate(results=ev.outputs["results"], registry=registry, model_name=model_name, metric=gate_metric,
                    min_delta=gate_min_delta, s3_endpoint=s3_endpoint).set_display_name("gate")
    decision.set_caching_options(False)  # production may have moved since an identical run
    registry_tasks = [synth, train, ev, decision]  # train: the TrainJob's data and result go through S3
    with dsl.If(decision.outputs["Output"] == True, name="beats-production"):  # noqa: E712 (KFP condition syntax)
        reg = register(policy=train.outputs["policy"], results=ev.outputs["results"], dataset=synth.outputs["dataset"],
                       registry=registry, model_name=model_name, promote=promote, s3_endpoint=s3_endpoint,
                       model_registry_address=model_registry_address, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                       run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER).set_display_name("register")
        reg.set_caching_options(False)
        registry_tasks.append(reg)
        with dsl.If(planner == "mlp", name="mlp-planner"):  # Triton serves MLP policies only
            export = export_serving(registry=registry, model_name=model_name, version=reg.outputs["Output"], s3_endpoint=s3_endpoint,
                                    model_repository=model_repository).set_display_name("export_serving")
            registry_tasks.append(export)
    for task in registry_tasks:
        kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS, optional=True)
