"""Our own stand-ins for the paper's models that no loader knows, clearly not the paper's tools.

MAXIM, X-Restormer, DRBNet, IFAN, RIDCP and DehazeFormer have no spandrel architecture, so their
paper tools need a TorchScript export. These entries are the closest models spandrel does load
from their authors' files, under permissive licences, so that a user can run a neural tool of
the same kind from a published file alone. They are ``paper=False`` and their names say the
model they run. Neither spandrel nor its extra has a permissive deraining or single-image defocus
network (Restormer and MPRNet, both non-commercial, are already paper tools), so rain and
defocus have no stand-in.
"""

from __future__ import annotations

from restore_r1.tools.base import Tool
from restore_r1.tools.checkpoints import NeuralModel, NoiseLevelCall, SignedRangeCall, neural_tool

NAFNET = "https://github.com/megvii-research/NAFNet"
KAIR = "https://github.com/cszn/KAIR"
MIXDEHAZENET = "https://github.com/AmeryXiong/MixDehazeNet"
RETINEXFORMER = "https://github.com/caiyuanhao1998/Retinexformer"

#: NAFNet's README table (NAFNet-GoPro-width64, Google Drive).
NAFNET_GOPRO = "https://drive.google.com/file/d/1S0PVRbyTakYY9a82kujgZLbMihfNBLfC/view"
#: KAIR's release v1.0 (main_download_pretrained_models.py, DPIR: drunet_color.pth).
KAIR_RELEASE = "https://github.com/cszn/KAIR/releases/tag/v1.0"
#: MixDehazeNet's README: the authors' Google-Drive folder of weights (the -B indoor file, as spandrel's tests name and load it).
MIXDEHAZENET_DRIVE = "https://drive.google.com/drive/folders/1ep6W4H3vNxshYjq71Tb3MzxrXGgaiM6C"
#: Retinexformer's README: the authors' Google-Drive folder ("Put them in folder pretrained_weights").
RETINEXFORMER_DRIVE = "https://drive.google.com/drive/folders/1ynK5hfQachzc8y96ZumhkPPDXzHJwaQV"

MIT = "MIT"

#: Our stand-ins, by degradation.
SUBSTITUTE_MODELS: tuple[NeuralModel, ...] = (
    NeuralModel(
        "nafnet_motion_deblur", "motion_blur", "NAFNet-GoPro-width64", NAFNET, MIT, "spandrel", "NAFNet-GoPro-width64.pth", NAFNET_GOPRO,
        architecture="NAFNet", pad_multiple=16, paper=False, folder="nafnet",
        note="stands in for maxim_motion_deblur and xrestormer_motion_deblur (no spandrel architecture)",
    ),
    NeuralModel(
        "drunet_denoise", "noise", "DRUNet colour (DPIR), noise-level input", KAIR, MIT, "spandrel", "drunet_color.pth", KAIR_RELEASE,
        architecture="DRUNet", call=NoiseLevelCall(), pad_multiple=8, paper=False, folder="drunet",
        note="stands in for maxim_denoise and xrestormer_denoise (no spandrel architecture)",
    ),
    NeuralModel(
        "mixdehazenet_dehaze", "haze", "MixDehazeNet-B (indoor)", MIXDEHAZENET, MIT, "spandrel", "MixDehazeNet-b indoor.pth", MIXDEHAZENET_DRIVE,
        architecture="MixDehazeNet", call=SignedRangeCall(), pad_multiple=4, paper=False, folder="mixdehazenet",
        note="stands in for maxim_dehaze, xrestormer_dehaze, ridcp_dehaze and dehazeformer_dehaze (no spandrel architecture)",
    ),
    NeuralModel(
        "retinexformer_lowlight", "dark", "Retinexformer (LOL-v2 synthetic)", RETINEXFORMER, MIT, "spandrel", "LOL_v2_synthetic.pth", RETINEXFORMER_DRIVE,
        architecture="RetinexFormer", pad_multiple=8, paper=False, folder="retinexformer",
        note="a neural low-light model beside the paper's three brightening curves",
    ),
)  # fmt: skip


def substitute_tools() -> list[Tool]:
    """Our stand-in tools (not the paper's), one per entry of :data:`SUBSTITUTE_MODELS`."""
    return [neural_tool(m) for m in SUBSTITUTE_MODELS]
