"""Frozen EfficientNet-Lite0 features of the change from a reference to an image (relative judge).

The hand-crafted change features of :mod:`restore_r1.judges.relative` see pixels, pyramid bands
and gradients. These add what an ImageNet network's frozen stages see change: for each of
:data:`DEEP_LEVELS` levels (the stem, the end of each of the 7 stages of
:data:`restore_r1.encoders.efficientnet.EFFNET_LITE0_STAGES`, the 1280-channel head), run on the
tile at its native resolution (no resize, so noise and blocks are not averaged away),

* ``deep{l}_dist``: an LPIPS-style distance without learned weights — the mean over positions of
  the squared difference of the channel-normalised activation vectors;
* ``deep{l}_log_energy_ratio``: log of the image's mean squared activation over the reference's;
* ``deep{l}_pooled_cos``: cosine of the two globally pooled activation vectors;
* ``deep{l}_ref_log_energy``: the reference's own log mean squared activation (context);

and, for the early stages in :data:`CHANNEL_LEVELS`, the per-channel log energy ratio
``deep{l}_ch{c}_log_energy_ratio`` (which filters of the bank gained or lost response).

:func:`deep_bank` computes all of them (:data:`DEEP_BANK`, in that order) for one reference's
maps against an image's; a relative judge reads the subset its model names. torch is imported
lazily; the network runs on the CPU, one tile at a time (a batch would pick other kernels, and a
score must not depend on what it is scored beside).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from restore_r1.encoders.efficientnet import EFFNET_LITE0_STAGES, EFFNET_LITE_MEAN, EFFNET_LITE_STD

#: Levels: 0 the stem, 1–7 the ends of the 7 stages, 8 the head (1280 channels).
DEEP_LEVELS = 2 + len(EFFNET_LITE0_STAGES)
#: Channels of each level's output.
LEVEL_CHANNELS: tuple[int, ...] = (32, *(s[4] for s in EFFNET_LITE0_STAGES), 1280)
#: The levels whose per-channel energy ratios are in the bank (stride 4 and 8: 24 + 40 channels).
CHANNEL_LEVELS: tuple[int, ...] = (2, 3)
#: Names of the bank, in vector order.
DEEP_SCALARS: tuple[str, ...] = tuple(f"deep{lv}_{what}" for what in ("dist", "log_energy_ratio", "pooled_cos") for lv in range(DEEP_LEVELS))
DEEP_REF: tuple[str, ...] = tuple(f"deep{lv}_ref_log_energy" for lv in range(DEEP_LEVELS))
DEEP_CHANNELS: tuple[str, ...] = tuple(f"deep{lv}_ch{c:03d}_log_energy_ratio" for lv in CHANNEL_LEVELS for c in range(LEVEL_CHANNELS[lv]))
DEEP_BANK: tuple[str, ...] = (*DEEP_SCALARS, *DEEP_REF, *DEEP_CHANNELS)
_EPS = 1e-6


@lru_cache(maxsize=1)
def _network() -> Any:
    import torch

    from restore_r1.encoders.efficientnet import _build_efficientnet_lite0, efficientnet_lite0_weights_path

    model = _build_efficientnet_lite0()
    model.load_state_dict(torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def _stage_ends() -> set[int]:
    ends, i = set(), -1
    for s in EFFNET_LITE0_STAGES:
        i += s[5]
        ends.add(i)
    return ends


class DeepMaps:
    """One tile's level summaries: per level the channel-normalised maps (for the distances), the
    pooled vector, the mean squared activation and the per-channel mean squares."""

    __slots__ = ("unit", "pooled", "energy", "channel_energy")

    def __init__(self, unit: list[np.ndarray], pooled: list[np.ndarray], energy: np.ndarray, channel_energy: list[np.ndarray]) -> None:
        self.unit, self.pooled, self.energy, self.channel_energy = unit, pooled, energy, channel_energy


def deep_maps(img: np.ndarray) -> DeepMaps:
    """The :class:`DeepMaps` of one uint8 RGB tile (any size ≥ 32 px), at its native resolution."""
    import torch
    import torch.nn.functional as F

    net = _network()
    x = torch.from_numpy(np.ascontiguousarray(((img.astype(np.float32) - EFFNET_LITE_MEAN) / EFFNET_LITE_STD).transpose(2, 0, 1)[None]))
    outs = []
    ends = _stage_ends()
    with torch.inference_mode():
        x = F.relu6(net._bn0(net._conv_stem(x)))
        outs.append(x)
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in ends:
                outs.append(x)
        outs.append(F.relu6(net._bn1(net._conv_head(x))))
        unit, pooled, energy, channel = [], [], [], []
        for o in outs:
            o = o[0].double()
            unit.append((o / (o.pow(2).sum(0, keepdim=True).sqrt() + 1e-10)).numpy())
            pooled.append(o.mean((1, 2)).numpy())
            ch = o.pow(2).mean((1, 2))
            channel.append(ch.numpy())
            energy.append(float(ch.mean()))
    return DeepMaps(unit, pooled, np.asarray(energy), channel)


def deep_bank(ref: DeepMaps, img: DeepMaps) -> np.ndarray:
    """The :data:`DEEP_BANK` features of ``img`` against ``ref``: float64 ``[len(DEEP_BANK)]``."""
    dist = [float(((u - v) ** 2).sum(0).mean()) for u, v in zip(ref.unit, img.unit)]
    ratio = list(np.log((img.energy + _EPS) / (ref.energy + _EPS)))
    cos = []
    for a, b in zip(ref.pooled, img.pooled):
        d = float(np.sqrt((a * a).sum() * (b * b).sum()))
        cos.append(float((a * b).sum()) / d if d > 1e-12 else 1.0)
    chans = [np.log((img.channel_energy[lv] + _EPS) / (ref.channel_energy[lv] + _EPS)) for lv in CHANNEL_LEVELS]
    return np.concatenate([dist, ratio, cos, np.log(ref.energy + _EPS), *chans]).astype(np.float64)


def deep_index(names: Sequence[str]) -> np.ndarray:
    """Positions of ``names`` in :data:`DEEP_BANK`."""
    unknown = [n for n in names if n not in DEEP_BANK]
    if unknown:
        raise ValueError(f"relative judge: no deep feature {unknown[0]!r}")
    return np.asarray([DEEP_BANK.index(n) for n in names], dtype=np.int64)


def deep_features_one(reference: np.ndarray, image: np.ndarray, names: Sequence[str], ref_maps: DeepMaps | None = None) -> np.ndarray:
    """The deep features ``names`` of ``image`` against ``reference`` (same-shape uint8 RGB
    tiles): float64 ``[len(names)]``; ``ref_maps``: the reference's :func:`deep_maps`, when known."""
    if not names:
        return np.zeros(0, dtype=np.float64)
    r = deep_maps(reference) if ref_maps is None else ref_maps
    return deep_bank(r, r if image is reference else deep_maps(image))[deep_index(names)]
