"""The paper's 28 tools (docs/method.md §4).

The three brightening tools run embedded (:mod:`restore_r1.tools.classic`). The 25 neural ones
run through :mod:`restore_r1.tools.torchscript` from a TorchScript export of the authors' release
that the user makes and places at ``$RESTORE_R1_WEIGHTS/<tool>/<tool>.pt``: no package registry
ships these weights and nothing is downloaded at run time. Licences are those the authors publish
with their code and weights; where we could not verify one, the entry says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from restore_r1.tools import classic
from restore_r1.tools.base import Tool
from restore_r1.tools.torchscript import TorchScriptRunner
from restore_r1.weights import WeightSpec


@dataclass(frozen=True)
class PaperModel:
    """One neural tool of the paper.

    Attributes:
        name: tool name.
        degradation: the degradation type it targets.
        model: the model and checkpoint, as the paper names them.
        source: the authors' release.
        licence: the licence the authors publish.
        pad_multiple: spatial stride the network needs.
    """

    name: str
    degradation: str
    model: str
    source: str
    licence: str
    pad_multiple: int = 8


SWINIR = "https://github.com/JingyunLiang/SwinIR"
FBCNN = "https://github.com/jiaxi-jiang/FBCNN"
MAXIM = "https://github.com/google-research/maxim"
MPRNET = "https://github.com/swz30/MPRNet"
RESTORMER = "https://github.com/swz30/Restormer"
XRESTORMER = "https://github.com/Andrew0613/X-Restormer"
DRBNET = "https://github.com/lingyanruan/DRBNet"
IFAN = "https://github.com/codeslake/IFAN"
RIDCP = "https://github.com/RQ-Wu/RIDCP_dehazing"
DEHAZEFORMER = "https://github.com/IDKiro/DehazeFormer"

UNVERIFIED = "unverified: see the authors' repository"

#: docs/method.md §4's neural tools, in the paper's order within each degradation.
PAPER_MODELS: tuple[PaperModel, ...] = (
    # defocus deblurring
    PaperModel("drbnet_defocus", "defocus_blur", "DRBNet", DRBNET, UNVERIFIED, 16),
    PaperModel("ifan_defocus", "defocus_blur", "IFAN", IFAN, UNVERIFIED, 8),
    PaperModel("restormer_defocus", "defocus_blur", "Restormer (single-image defocus deblurring)", RESTORMER, UNVERIFIED, 8),
    # JPEG artefact removal
    PaperModel("swinir_jpeg_q40", "jpeg", "SwinIR JPEG CAR, QF 40", SWINIR, "Apache-2.0", 8),
    PaperModel("fbcnn_q90", "jpeg", "FBCNN, QF 90", FBCNN, "Apache-2.0", 8),
    PaperModel("fbcnn_q5", "jpeg", "FBCNN, QF 5", FBCNN, "Apache-2.0", 8),
    PaperModel("fbcnn_blind", "jpeg", "FBCNN, blind QF", FBCNN, "Apache-2.0", 8),
    # denoising
    PaperModel("swinir_denoise_s15", "noise", "SwinIR colour denoising, σ 15", SWINIR, "Apache-2.0", 8),
    PaperModel("swinir_denoise_s50", "noise", "SwinIR colour denoising, σ 50", SWINIR, "Apache-2.0", 8),
    PaperModel("maxim_denoise", "noise", "MAXIM-3S denoising (SIDD)", MAXIM, "Apache-2.0", 64),
    PaperModel("mprnet_denoise", "noise", "MPRNet denoising (SIDD)", MPRNET, UNVERIFIED, 8),
    PaperModel("restormer_denoise", "noise", "Restormer real denoising", RESTORMER, UNVERIFIED, 8),
    PaperModel("xrestormer_denoise", "noise", "X-Restormer denoising", XRESTORMER, UNVERIFIED, 16),
    # deraining
    PaperModel("maxim_derain", "rain", "MAXIM-2S deraining (Rain13k)", MAXIM, "Apache-2.0", 64),
    PaperModel("mprnet_derain", "rain", "MPRNet deraining", MPRNET, UNVERIFIED, 8),
    PaperModel("restormer_derain", "rain", "Restormer deraining", RESTORMER, UNVERIFIED, 8),
    PaperModel("xrestormer_derain", "rain", "X-Restormer deraining", XRESTORMER, UNVERIFIED, 16),
    # motion deblurring
    PaperModel("maxim_motion_deblur", "motion_blur", "MAXIM-3S deblurring (GoPro)", MAXIM, "Apache-2.0", 64),
    PaperModel("mprnet_motion_deblur", "motion_blur", "MPRNet deblurring (GoPro)", MPRNET, UNVERIFIED, 8),
    PaperModel("restormer_motion_deblur", "motion_blur", "Restormer motion deblurring", RESTORMER, UNVERIFIED, 8),
    PaperModel("xrestormer_motion_deblur", "motion_blur", "X-Restormer deblurring", XRESTORMER, UNVERIFIED, 16),
    # dehazing
    PaperModel("maxim_dehaze", "haze", "MAXIM-2S dehazing (RESIDE)", MAXIM, "Apache-2.0", 64),
    PaperModel("xrestormer_dehaze", "haze", "X-Restormer dehazing", XRESTORMER, UNVERIFIED, 16),
    PaperModel("ridcp_dehaze", "haze", "RIDCP", RIDCP, UNVERIFIED, 32),
    PaperModel("dehazeformer_dehaze", "haze", "DehazeFormer", DEHAZEFORMER, "MIT", 16),
)

#: AgenticIR's brightening toolbox (docs/method.md §4), run embedded.
AGENTICIR_BRIGHTENING = "https://github.com/Kaiwen-Zhu/AgenticIR"


def weight_spec(model: PaperModel) -> WeightSpec:
    """Where the user's TorchScript export of ``model`` is looked for (no sha256: user export)."""
    return WeightSpec(
        filename=f"{model.name}/{model.name}.pt",
        source=f"TorchScript export (float32 RGB N×3×H×W in [0, 1] -> same) of {model.model} from {model.source}",
        sha256=None,
        licence=model.licence,
    )


def paper_tools() -> list[Tool]:
    """The 28 tools of docs/method.md §4: 3 embedded brightening tools, then the 25 neural ones."""
    tools = [
        Tool("clahe", "dark", "function", "Apache-2.0", True, "CLAHE on V of HSV, clipLimit 2.0, 8×8 tiles (AgenticIR)", fn=classic.clahe),
        Tool(
            "gamma_correction", "dark", "function", "Apache-2.0", True, "gamma γ=2/3 on V of HSV: 255·(v/255)^(1/1.5) (AgenticIR)", fn=classic.gamma_correction
        ),
        Tool("constant_shift", "dark", "function", "Apache-2.0", True, "V of HSV + 40, clipped (AgenticIR)", fn=classic.constant_shift),
    ]
    for m in PAPER_MODELS:
        spec = weight_spec(m)
        runner = TorchScriptRunner(spec, pad_multiple=m.pad_multiple)
        tools.append(Tool(m.name, m.degradation, "torchscript", m.licence, True, f"{m.model} ({m.source})", fn=runner, weights=spec, batch_fn=runner.run_batch))
    return tools
