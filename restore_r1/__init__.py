"""Restore-R1: efficient image restoration agents trained with GRPO against a perceptual judge.

Data flows one way: images -> degradations -> tools -> judge -> policy/trainer -> registry ->
serving. Lower layers never import higher ones: :data:`LAYERS` is that rule, and
``tests/test_layers.py`` fails on any import (lazy ones included) that goes up a layer or closes
a cycle between two parts of one layer.
"""

__version__ = "0.1.0"

#: The package's parts (subpackages and modules under ``restore_r1/``), lowest layer first. A part
#: imports only from its own layer (without cycles) or lower ones; ``""`` is this file.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "versions", "catalog", "images", "weights"),  # foundations
    ("depth", "degradations", "cleanimages", "corpus", "synth"),  # clean photos and their degradation
    ("tools", "metrics", "encoders"),  # what acts on and measures an image
    ("judges",),  # the reward's Q, and its offline fits
    ("agent",),  # policy, GRPO, episodes, planners, inference, baselines
    ("evaluate", "registry"),  # comparing and publishing what the agent layer makes
    ("demo", "pipeline", "serving", "deploy", "cli"),  # the edges: Kubeflow, Triton, Helm, the command
)

#: Degradation types, in the names every layer uses (docs/method.md §2).
DEGRADATION_TYPES: tuple[str, ...] = (
    "dark",
    "noise",
    "jpeg",
    "haze",
    "motion_blur",
    "defocus_blur",
    "rain",
)
