"""The paper's 28 tools (docs/method.md §4).

The three brightening tools run embedded (:mod:`restore_r1.tools.classic`). Each of the 25
neural ones is a :class:`~restore_r1.tools.checkpoints.NeuralModel` naming the authors' file as
they publish it, the page it is published on, its licence and the call it needs:

* 13 load the authors' checkpoint as it is with spandrel: 6 with spandrel itself (SwinIR, FBCNN),
  7 only with the opt-in non-commercial extra (Restormer, MPRNet:
  ``pip install 'restore-r1[noncommercial]'``);
* 12 have no spandrel architecture (MAXIM, X-Restormer, DRBNet, IFAN, RIDCP, DehazeFormer) and
  run from a TorchScript export the user makes (:mod:`restore_r1.tools.torchscript`); our own
  stand-ins that spandrel does load are in :mod:`restore_r1.tools.substitutes`.

Nothing is downloaded at run time: ``restore-r1 weights list`` says what to fetch and where it
goes, ``restore-r1 weights add FILE`` verifies and installs it. Licences are read from each
repository's LICENSE file (snapshots of 2022-04 to 2025-03). No published source gives a sha256
of any of these files (the authors publish none; GitHub release pages and Google Drive were not
reachable from here), so every ``sha256`` is ``None`` and a file is checked by its architecture,
variant and a forward pass.
"""

from __future__ import annotations

from restore_r1.tools import classic
from restore_r1.tools.base import Tool
from restore_r1.tools.checkpoints import NeuralModel, PlainCall, QualityFactorCall, neural_tool

# The authors' repositories.
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

# Where they publish the weights (release pages; Google Drive / Dropbox / Baidu / GCS where they use those).
SWINIR_RELEASE = "https://github.com/JingyunLiang/SwinIR/releases/tag/v0.0"
FBCNN_RELEASE = "https://github.com/jiaxi-jiang/FBCNN/releases/tag/v1.0"
RESTORMER_RELEASE = "https://github.com/swz30/Restormer/releases/tag/v1.0"
#: MPRNet/<task>/pretrained_models/README.md, one Google-Drive file per task.
MPRNET_DEBLUR = "https://drive.google.com/file/d/1QwQUVbk6YVOJViCsOKYNykCsdJSVGRtb/view"
MPRNET_DERAIN = "https://drive.google.com/file/d/1O3WEJbcat7eTY6doXWeorAbQ1l_WmMnM/view"
MPRNET_DENOISE = "https://drive.google.com/file/d/1LODPt9kYmxwU98g96UrRA0_Eh5HYcsRw/view"
#: X-Restormer's README ("The pretrained models are available at Google Drive"); file names from options/test/*.yml.
XRESTORMER_DRIVE = "https://drive.google.com/drive/folders/1HpmReFfoUqUbnAOQ7rvOeNU3uf_m69w0"
#: MAXIM's README table: one Flax checkpoint folder per task on Google Cloud Storage.
MAXIM_GCS = "https://console.cloud.google.com/storage/browser/gresearch/maxim/ckpt/"
#: DRBNet's download_ckpts.py (ckpts.zip holds ckpts/single/single_image_defocus_deblurring.pth).
DRBNET_DRIVE = "https://drive.google.com/file/d/1vGImev9LdagttXE_nN1gZGVstVTRVQHt/view"
#: IFAN's README (checkpoints.zip holds ckpt/IFAN.pytorch; also on OneDrive).
IFAN_DROPBOX = "https://www.dropbox.com/s/qohhmr9p81u0syi/checkpoints.zip?dl=1"
#: RIDCP's README (pretrained_RIDCP.pth; Baidu Disk, password huea; its Google Drive link is "TBD").
RIDCP_BAIDU = "https://pan.baidu.com/s/1ps9dPmerWyXILxb6lkHihQ"
#: DehazeFormer's README (saved_models/<dataset>/dehazeformer-*.pth).
DEHAZEFORMER_DRIVE = "https://drive.google.com/drive/folders/1Yy_GH6_bydYPU6_JJzFQwig4LTh86VI4"

# Licences, from each repository's LICENSE file.
APACHE = "Apache-2.0"
MIT = "MIT"
AGPL = "AGPL-3.0"
CC_BY_NC = "CC-BY-NC-4.0"
#: swz30's "ACADEMIC PUBLIC LICENSE" (Restormer, MPRNet): non-commercial use only. (A third-party
#: survey reports Restormer relicensed to MIT in 2025-10; the snapshot read here, 2024-04, is not.)
ACADEMIC_NC = "Academic Public License (non-commercial)"

NO_SPANDREL = "spandrel has no {} architecture: TorchScript export only"


def _torchscript(name: str, degradation: str, model: str, repo: str, licence: str, file: str, url: str, arch: str, pad: int) -> NeuralModel:
    return NeuralModel(name, degradation, model, repo, licence, "torchscript", file, url, pad_multiple=pad, note=NO_SPANDREL.format(arch))


def _maxim(name: str, degradation: str, model: str, task: str) -> NeuralModel:
    note = NO_SPANDREL.format("MAXIM") + " (the authors publish a JAX/Flax checkpoint: a PyTorch port, exported)"
    return NeuralModel(name, degradation, model, MAXIM, APACHE, "torchscript", "checkpoint.npz", f"{MAXIM_GCS}{task}/", pad_multiple=64, note=note)


def _swinir(name: str, degradation: str, model: str, file: str, tag: str, pad: int) -> NeuralModel:
    return NeuralModel(
        name, degradation, model, SWINIR, APACHE, "spandrel", file, SWINIR_RELEASE, architecture="SwinIR", tags=(tag,), pad_multiple=pad, folder="swinir"
    )


def _fbcnn(name: str, model: str, call) -> NeuralModel:
    return NeuralModel(name, "jpeg", model, FBCNN, APACHE, "spandrel", "fbcnn_color.pth", FBCNN_RELEASE, architecture="FBCNN", call=call, folder="fbcnn")


def _restormer(name: str, degradation: str, model: str, file: str) -> NeuralModel:
    return NeuralModel(
        name, degradation, model, RESTORMER, ACADEMIC_NC, "spandrel_extra", file, RESTORMER_RELEASE, architecture="Restormer", folder="restormer"
    )


def _mprnet(name: str, degradation: str, model: str, file: str, url: str) -> NeuralModel:
    return NeuralModel(name, degradation, model, MPRNET, ACADEMIC_NC, "spandrel_extra", file, url, architecture="MPRNet", folder="mprnet")


def _xrestormer(name: str, degradation: str, model: str, file: str) -> NeuralModel:
    return _torchscript(name, degradation, model, XRESTORMER, MIT, file, XRESTORMER_DRIVE, "X-Restormer", 16)


#: docs/method.md §4's neural tools, in the paper's order within each degradation.
PAPER_MODELS: tuple[NeuralModel, ...] = (
    # defocus deblurring
    _torchscript("drbnet_defocus", "defocus_blur", "DRBNet (single image)", DRBNET, AGPL, "single_image_defocus_deblurring.pth", DRBNET_DRIVE, "DRBNet", 16),
    _torchscript("ifan_defocus", "defocus_blur", "IFAN", IFAN, AGPL, "IFAN.pytorch", IFAN_DROPBOX, "IFAN", 8),
    _restormer("restormer_defocus", "defocus_blur", "Restormer (single-image defocus deblurring)", "single_image_defocus_deblurring.pth"),
    # JPEG artefact removal: SwinIR's colour CAR model for QF 40 (window 7); FBCNN's one colour
    # model with a fixed quality factor (flexible control) or its own predicted one (blind)
    _swinir("swinir_jpeg_q40", "jpeg", "SwinIR colour JPEG CAR, QF 40", "006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg40.pth", "s126w7", 7),
    _fbcnn("fbcnn_q90", "FBCNN, QF 90", QualityFactorCall(90)),
    _fbcnn("fbcnn_q5", "FBCNN, QF 5", QualityFactorCall(5)),
    _fbcnn("fbcnn_blind", "FBCNN, blind QF", PlainCall()),
    # denoising
    _swinir("swinir_denoise_s15", "noise", "SwinIR colour denoising, σ 15", "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth", "s128w8", 8),
    _swinir("swinir_denoise_s50", "noise", "SwinIR colour denoising, σ 50", "005_colorDN_DFWB_s128w8_SwinIR-M_noise50.pth", "s128w8", 8),
    _maxim("maxim_denoise", "noise", "MAXIM-3S denoising (SIDD)", "Denoising/SIDD"),
    _mprnet("mprnet_denoise", "noise", "MPRNet denoising (SIDD)", "model_denoising.pth", MPRNET_DENOISE),
    _restormer("restormer_denoise", "noise", "Restormer real denoising (SIDD)", "real_denoising.pth"),
    _xrestormer("xrestormer_denoise", "noise", "X-Restormer denoising", "denoise_300k.pth"),
    # deraining
    _maxim("maxim_derain", "rain", "MAXIM-2S deraining (Rain13k)", "Deraining/Rain13k"),
    _mprnet("mprnet_derain", "rain", "MPRNet deraining", "model_deraining.pth", MPRNET_DERAIN),
    _restormer("restormer_derain", "rain", "Restormer deraining", "deraining.pth"),
    _xrestormer("xrestormer_derain", "rain", "X-Restormer deraining", "derain_155k.pth"),
    # motion deblurring
    _maxim("maxim_motion_deblur", "motion_blur", "MAXIM-3S deblurring (GoPro)", "Deblurring/GoPro"),
    _mprnet("mprnet_motion_deblur", "motion_blur", "MPRNet deblurring (GoPro)", "model_deblurring.pth", MPRNET_DEBLUR),
    _restormer("restormer_motion_deblur", "motion_blur", "Restormer motion deblurring (GoPro)", "motion_deblurring.pth"),
    _xrestormer("xrestormer_motion_deblur", "motion_blur", "X-Restormer deblurring", "deblur_300k.pth"),
    # dehazing
    _maxim("maxim_dehaze", "haze", "MAXIM-2S dehazing (RESIDE outdoor)", "Dehazing/SOTS-Outdoor"),
    _xrestormer("xrestormer_dehaze", "haze", "X-Restormer dehazing", "dehaze_300k.pth"),
    _torchscript("ridcp_dehaze", "haze", "RIDCP", RIDCP, CC_BY_NC, "pretrained_RIDCP.pth", RIDCP_BAIDU, "RIDCP", 32),
    _torchscript(
        "dehazeformer_dehaze", "haze", "DehazeFormer-B (RESIDE outdoor)", DEHAZEFORMER, MIT, "dehazeformer-b.pth", DEHAZEFORMER_DRIVE, "DehazeFormer", 16
    ),
)

#: AgenticIR's brightening toolbox (docs/method.md §4), run embedded.
AGENTICIR_BRIGHTENING = "https://github.com/Kaiwen-Zhu/AgenticIR"


def paper_tools() -> list[Tool]:
    """The 28 tools of docs/method.md §4: 3 embedded brightening tools, then the 25 neural ones."""
    tools = [
        Tool("clahe", "dark", "function", "Apache-2.0", True, "CLAHE on V of HSV, clipLimit 2.0, 8×8 tiles (AgenticIR)", fn=classic.clahe),
        Tool(
            "gamma_correction", "dark", "function", "Apache-2.0", True, "gamma γ=2/3 on V of HSV: 255·(v/255)^(1/1.5) (AgenticIR)", fn=classic.gamma_correction
        ),
        Tool("constant_shift", "dark", "function", "Apache-2.0", True, "V of HSV + 40, clipped (AgenticIR)", fn=classic.constant_shift),
    ]
    return tools + [neural_tool(m) for m in PAPER_MODELS]
