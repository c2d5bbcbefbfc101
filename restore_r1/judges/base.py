"""What every judge is (docs/method.md §1): the :class:`Judge` protocol, :class:`JudgeError`,
and the Q-Align / DeQA-Score scoring rule that the level-based judges share.

A judge scores a list of uint8 RGB H×W×3 images, higher is better, on the scale ``judge.range``;
a relative judge (``relative = True``) scores each image against the input it was restored from
instead (``score_relative(references, images)``, :mod:`restore_r1.judges.relative`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from restore_r1.errors import RestoreR1Error
from restore_r1.images import check_rgb


@runtime_checkable
class Judge(Protocol):
    """The judge contract (docs/development.md, "A judge")."""

    name: str
    range: tuple[float, float]

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """One score per uint8 RGB H×W×3 image, higher is better."""
        ...

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild it (``create_judge(**judge.config())``)."""
        ...


class JudgeError(RestoreR1Error, RuntimeError):
    """A judge that ran but could not produce a score (server error, timeout, no level token)."""


# --------------------------------------------------------------------------------------------
# the Q-Align / DeQA-Score scoring rule
# --------------------------------------------------------------------------------------------


#: The five quality levels and their values (Q-Align, DeQA-Score; docs/method.md §1).
QUALITY_LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
LEVEL_VALUES: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)
#: Score range of every level-based judge.
LEVEL_RANGE: tuple[float, float] = (1.0, 5.0)
#: Q-Align's user question and the assistant prefix whose next token is the level word.
QUALITY_QUESTION = "How would you rate the quality of this image?"
ANSWER_PREFIX = "The quality of the image is"


def level_probabilities(logits_of_levels: Sequence[float]) -> np.ndarray:
    """Softmax over the five level logits; ``-inf`` marks an absent level.

    Args:
        logits_of_levels: five logits (or log-probabilities) for bad..excellent.

    Returns:
        float64 probabilities, shape (5,), summing to 1.

    Raises:
        ValueError: not five values, a NaN or +inf, or every level absent.
    """
    x = np.asarray(logits_of_levels, dtype=np.float64).reshape(-1)
    if x.size != len(QUALITY_LEVELS):
        raise ValueError(f"expected {len(QUALITY_LEVELS)} level logits, got {x.size}: {x.tolist()}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError(f"level logits must be finite or -inf, got {x.tolist()}")
    if np.isneginf(x).all():
        raise ValueError("no quality level has a finite logit")
    e = np.exp(x - x.max())
    return e / e.sum()


def level_probabilities_to_score(logits_of_levels: Sequence[float]) -> float:
    """Expected quality level in [1, 5] from the five level logits (Q-Align's rule).

    Equal logits give 3.0; a single finite logit gives that level's value.
    """
    return float(np.dot(level_probabilities(logits_of_levels), LEVEL_VALUES))


def level_token_ids(tokenizer: Any) -> list[int]:
    """The token id that starts each level word as the model would write it after "is".

    The word is encoded with a leading space first (BPE tokenizers mark it, e.g. ``Ġgood``;
    SentencePiece ones write ``▁good`` either way), then bare; leading tokens that decode to
    whitespace only are skipped and the first remaining token is taken.

    Raises:
        ValueError: a word yields no token, or two levels share their first token.
    """
    ids: list[int] = []
    for word in QUALITY_LEVELS:
        chosen = None
        for text in (" " + word, word):
            toks = tokenizer.encode(text, add_special_tokens=False)
            toks = [t for t in toks if tokenizer.decode([t]).strip() != ""]
            if toks:
                chosen = int(toks[0])
                break
        if chosen is None:
            raise ValueError(f"the tokenizer encodes the level word {word!r} to no usable token")
        ids.append(chosen)
    if len(set(ids)) != len(ids):
        raise ValueError(f"level words {QUALITY_LEVELS} share first tokens {ids}; this tokenizer cannot separate them")
    return ids


def check_images(imgs: Sequence[np.ndarray], who: str) -> list[np.ndarray]:
    """``imgs`` as a list, each checked to be uint8 RGB H×W×3 (a TypeError for one array)."""
    if isinstance(imgs, np.ndarray):
        raise TypeError(f"{who}: expected a list of H×W×3 images, got one array of shape {imgs.shape}")
    imgs = list(imgs)
    for i, img in enumerate(imgs):
        check_rgb(img, name=f"image {i} given to {who}")
    return imgs
