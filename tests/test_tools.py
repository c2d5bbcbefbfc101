"""The tool catalogue: tests generated from list_tools(), plus the TorchScript runner on a tiny
scripted model saved into the test's weights folder."""

from __future__ import annotations

import os

import numpy as np
import pytest
import skimage.data
import torch

from restore_r1 import DEGRADATION_TYPES
from restore_r1.degradations import (
    darken_gamma,
    defocus_blur,
    gaussian_noise,
    haze,
    jpeg_compress,
    motion_blur,
    rain,
)
from restore_r1.errors import ImageError, UnavailableError
from restore_r1.metrics import psnr
from restore_r1.tools import classic, get_tool, list_tools, tool_info
from restore_r1.tools.paper import PAPER_MODELS
from restore_r1.tools.torchscript import clear_cache

ALL = list_tools()
AVAILABLE = list_tools(available_only=True)
UNAVAILABLE = [t for t in ALL if not t.available]
EMBEDDED = [t for t in AVAILABLE if t.backend == "function"]

#: docs/method.md §4: the paper's 28 tools and their targets.
PAPER_TARGETS = {
    "clahe": "dark",
    "gamma_correction": "dark",
    "constant_shift": "dark",
    "drbnet_defocus": "defocus_blur",
    "ifan_defocus": "defocus_blur",
    "restormer_defocus": "defocus_blur",
    "swinir_jpeg_q40": "jpeg",
    "fbcnn_q90": "jpeg",
    "fbcnn_q5": "jpeg",
    "fbcnn_blind": "jpeg",
    "swinir_denoise_s15": "noise",
    "swinir_denoise_s50": "noise",
    "maxim_denoise": "noise",
    "mprnet_denoise": "noise",
    "restormer_denoise": "noise",
    "xrestormer_denoise": "noise",
    "maxim_derain": "rain",
    "mprnet_derain": "rain",
    "restormer_derain": "rain",
    "xrestormer_derain": "rain",
    "maxim_motion_deblur": "motion_blur",
    "mprnet_motion_deblur": "motion_blur",
    "restormer_motion_deblur": "motion_blur",
    "xrestormer_motion_deblur": "motion_blur",
    "maxim_dehaze": "haze",
    "xrestormer_dehaze": "haze",
    "ridcp_dehaze": "haze",
    "dehazeformer_dehaze": "haze",
}


def _input(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = skimage.data.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.int16)
    return np.clip(base + rng.integers(-10, 11, base.shape), 0, 255).astype(np.uint8)


CLEAN = np.ascontiguousarray(skimage.data.astronaut()[20:148, 180:308])  # 128×128 face and suit


def _depth(h: int, w: int) -> np.ndarray:
    return np.tile(np.linspace(1.0, 0.2, h)[:, None], (1, w))


#: One fixed synthetic example per degradation (parameters inside the docs/method.md §2 ranges).
DEGRADE = {
    "dark": lambda img: darken_gamma(img, 0.6),
    "noise": lambda img: gaussian_noise(img, 30.0, np.random.default_rng(1)),
    "jpeg": lambda img: jpeg_compress(img, 15),
    "haze": lambda img: haze(img, _depth(*img.shape[:2]), 0.85, 1.2),
    "motion_blur": lambda img: motion_blur(img, 10, 3.0, 30.0),
    "defocus_blur": lambda img: defocus_blur(img, 4, 0.5),
    "rain": lambda img: rain(img, np.random.default_rng(2), 80, 30, 10.0),
}


def _ids(tools):
    return [t.name for t in tools]


def test_catalogue_has_the_28_paper_tools_with_their_targets():
    paper = {t.name: t.degradation for t in list_tools(paper=True)}
    assert paper == PAPER_TARGETS
    assert len(PAPER_MODELS) == 25
    for name in ("clahe", "gamma_correction", "constant_shift"):
        assert get_tool(name).backend == "function" and get_tool(name).available
    for m in PAPER_MODELS:
        tool = get_tool(m.name)
        assert tool.model is m and tool.weights.sha256 is None  # no published sha256 for any (restore_r1/tools/paper.py)
        if m.loader == "torchscript":
            assert tool.backend == "torchscript" and tool.weights.filename == f"{m.name}/{m.name}.pt"
        else:  # the authors' file as published, loaded by spandrel (tests/test_spandrel_tools.py)
            assert tool.backend == "spandrel" and tool.weights.filename.endswith("/" + m.file)
        assert m.repo.startswith("https://github.com/") and m.url.startswith("https://")


@pytest.mark.parametrize("degradation", DEGRADATION_TYPES)
def test_every_degradation_has_two_available_tools(degradation):
    assert len(list_tools(available_only=True, degradation=degradation)) >= 2


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="fbcnn_q5"):
        get_tool("fbcnn_q05")
    with pytest.raises(ValueError, match="degradation"):
        list_tools(degradation="blur")


def test_tool_info_fields():
    info = tool_info("fbcnn_q90")
    assert set(info) >= {"name", "degradation", "paper", "backend", "licence", "available", "reason", "weights", "description"}
    assert info["available"] is False and "RESTORE_R1_WEIGHTS" in info["reason"]
    assert tool_info("clahe")["reason"] == "" and tool_info("clahe")["weights"] is None


@pytest.mark.parametrize("tool", AVAILABLE, ids=_ids(AVAILABLE))
def test_available_tool_contract(tool):
    img = _input()
    out = tool(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(tool(img), out)  # deterministic
    other = _input(seed=1)
    batch = tool.run_batch([img, other])
    assert np.array_equal(batch[0], out) and np.array_equal(batch[1], tool(other))


@pytest.mark.parametrize("tool", AVAILABLE, ids=_ids(AVAILABLE))
def test_bad_input_is_an_image_error(tool):
    with pytest.raises(ImageError, match="uint8"):
        tool(_input().astype(np.float32))
    with pytest.raises(ImageError, match="H×W×3"):
        tool(_input()[:, :, 0])


@pytest.mark.parametrize("tool", UNAVAILABLE, ids=_ids(UNAVAILABLE))
def test_unavailable_tool_raises_naming_the_weights(tool):
    with pytest.raises(UnavailableError) as err:
        tool(_input())
    message = str(err.value)
    if tool.weights is not None:
        assert tool.weights.filename in message and "RESTORE_R1_WEIGHTS" in message
    else:
        assert "pip install" in message


@pytest.mark.parametrize("tool", EMBEDDED, ids=_ids(EMBEDDED))
def test_embedded_tool_improves_its_degradation(tool):
    degraded = DEGRADE[tool.degradation](CLEAN)
    before = psnr(degraded, CLEAN)
    after = psnr(tool(degraded), CLEAN)
    assert after > before + 0.2, f"{tool.name}: {before:.2f} -> {after:.2f} dB"


def test_brightening_formulas_match_agenticir():
    v = np.arange(256, dtype=np.uint8)
    grey = np.repeat(np.repeat(v[None, :, None], 16, axis=0), 3, axis=2)  # H=16, W=256, R=G=B
    assert np.array_equal(classic.constant_shift(grey)[0, :, 0], np.minimum(v.astype(int) + 40, 255))
    expected = np.round(255 * (v / 255.0) ** (2 / 3)).astype(np.uint8)
    assert np.array_equal(classic.gamma_correction(grey)[0, :, 0], expected)
    assert classic.gamma_correction(grey)[0, 64, 0] == 101  # 255·(64/255)^(2/3) = 101.2


def test_noise_sigma_estimate():
    flat = np.full((128, 128, 3), 128, np.uint8)
    noisy = gaussian_noise(flat, 25.0, np.random.default_rng(0))
    assert classic.estimate_noise_sigma(noisy) == pytest.approx(25.0, rel=0.1)


def test_defocus_radius_estimate():
    blurred = defocus_blur(CLEAN, 4, 0.5)
    outs = {r: classic.normalised_sparsity(classic.wiener_deconvolve(blurred, classic.disk_kernel(r), classic.DEFOCUS_NSR)) for r in (2, 4, 6)}
    assert min(outs, key=outs.get) == 4


# --- TorchScript runner on a real scripted model -----------------------------------------------
class _Invert(torch.nn.Module):
    """1 − x, refusing inputs whose sides are not multiples of 8 (as strided networks do)."""

    def forward(self, x):
        if x.shape[-1] % 8 != 0 or x.shape[-2] % 8 != 0:
            raise RuntimeError("input not padded to a multiple of 8")
        return 1.0 - x


def _save_model(name: str) -> str:
    spec = next(m for m in PAPER_MODELS if m.name == name).weights
    path = os.path.join(os.environ["RESTORE_R1_WEIGHTS"], spec.filename)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.jit.save(torch.jit.script(_Invert()), path)
    clear_cache()
    return path


def test_torchscript_runner_pads_crops_and_batches(monkeypatch):
    monkeypatch.setenv("RESTORE_R1_DEVICE", "cpu")
    tool = get_tool("xrestormer_derain")
    assert not tool.available
    _save_model("xrestormer_derain")
    assert tool.available and tool_info(tool)["reason"] == ""
    img = _input(45, 61)  # not multiples of 8
    out = tool(img)
    assert out.shape == img.shape and np.array_equal(out, 255 - img)
    other = _input(48, 64, seed=3)
    batch = tool.run_batch([img, other, img])
    assert np.array_equal(batch[0], out) and np.array_equal(batch[1], 255 - other) and np.array_equal(batch[2], out)


def test_torchscript_runner_tiles_large_images(monkeypatch):
    from restore_r1.tools import torchscript

    monkeypatch.setenv("RESTORE_R1_DEVICE", "cpu")
    monkeypatch.setattr(torchscript, "TILE_ABOVE_PIXELS", 64 * 64)
    _save_model("maxim_derain")
    tool = get_tool("maxim_derain")
    img = _input(100, 120)
    assert tool.fn._tile_for(img) == torchscript.DEFAULT_TILE
    runner = torchscript.TorchScriptRunner(tool.weights, pad_multiple=8, tile=40)  # tiles of 64: two 32-pixel overlaps
    out = runner(img)
    assert np.array_equal(out, 255 - img)


def test_torchscript_runner_rejects_a_wrong_output(monkeypatch):
    class Gray(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=1, keepdim=True)

    monkeypatch.setenv("RESTORE_R1_DEVICE", "cpu")
    path = _save_model("ridcp_dehaze")
    torch.jit.save(torch.jit.script(Gray()), path)
    clear_cache()
    with pytest.raises(RuntimeError, match="N×3×H×W"):
        get_tool("ridcp_dehaze")(_input())
