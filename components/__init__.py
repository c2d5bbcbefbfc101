"""KFP v2 components of the Restore-R1 pipeline: thin shells over :mod:`restore_r1.pipeline.steps`."""

from components.restore_r1_components import evaluate, export_serving, gate, register, synthesize, train_grpo

__all__ = ["evaluate", "export_serving", "gate", "register", "synthesize", "train_grpo"]
