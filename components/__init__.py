"""KFP v2 components of the Restore-R1 pipelines: thin shells over :mod:`restore_r1.pipeline.steps` and :mod:`restore_r1.pipeline.batch`."""

from components.restore_r1_components import (
    evaluate,
    export_serving,
    gate,
    list_photos,
    register,
    restore_shard,
    summarize_batch,
    synthesize,
    train_grpo,
)

__all__ = ["evaluate", "export_serving", "gate", "list_photos", "register", "restore_shard", "summarize_batch", "synthesize", "train_grpo"]
