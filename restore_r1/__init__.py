"""Restore-R1: efficient image restoration agents trained with GRPO against a perceptual judge.

Data flows one way: images -> degradations -> tools -> judge -> policy/trainer -> registry ->
serving. Lower layers never import higher ones.
"""

__version__ = "0.1.0"

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
