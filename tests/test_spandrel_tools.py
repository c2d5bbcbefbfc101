"""Neural tools from the authors' checkpoints, loaded by spandrel.

Each supported architecture is built here in a small random-initialised configuration with
spandrel's own classes, saved in the authors' key layout (``.pth`` plain or wrapped as
``{"params": ...}`` / ``{"params_ema": ...}`` / ``{"state_dict": ...}`` with DataParallel's
``module.`` prefix, or ``.safetensors``) and installed with ``restore-r1 weights add``; the tool
then runs through the catalogue. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import pytest
import torch

spandrel = pytest.importorskip("spandrel", reason="spandrel is a core dependency: pip install spandrel==0.4.2")

from spandrel.architectures.DRUNet import DRUNet  # noqa: E402
from spandrel.architectures.FBCNN import FBCNN  # noqa: E402
from spandrel.architectures.MixDehazeNet import MixDehazeNet  # noqa: E402
from spandrel.architectures.NAFNet import NAFNet  # noqa: E402
from spandrel.architectures.RetinexFormer import RetinexFormer  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402

from restore_r1.cli import main  # noqa: E402
from restore_r1.errors import CheckpointError, ImageError  # noqa: E402
from restore_r1.tools import add_weights, checkpoints, get_tool, list_tools, neural, tool_info, weights_info  # noqa: E402
from restore_r1.tools.classic import estimate_noise_sigma  # noqa: E402
from restore_r1.tools.paper import PAPER_MODELS  # noqa: E402
from restore_r1.weights import weights_dir  # noqa: E402

EXTRA = checkpoints.extra_arches_installed()


def _swinir(window: int, img_size: int, img_range: float) -> SwinIR:
    return SwinIR(img_size=img_size, embed_dim=12, depths=[2], num_heads=[2], window_size=window, mlp_ratio=2.0, img_range=img_range, upsampler="")


def _restormer():
    from spandrel_extra_arches.architectures.Restormer import Restormer

    return Restormer(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])


def _mprnet():
    from spandrel_extra_arches.architectures.MPRNet import MPRNet

    return MPRNet(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1)


#: tool -> (small network, how its authors save it, file name). The SwinIR JPEG model has the
#: official window 7 / image range 255 / 126-pixel training size, the denoiser window 8 / 128
#: (spandrel tags them s126w7 / s128w8). FBCNN's quality-factor head is fixed at 512 features.
NETWORKS = {
    "swinir_denoise_s15": (lambda: _swinir(8, 128, 1.0), "params", "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.safetensors"),
    "swinir_jpeg_q40": (lambda: _swinir(7, 126, 255.0), "params_ema", "006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg40.pth"),
    "fbcnn_q90": (lambda: FBCNN(nc=[8, 16, 32, 512], nb=2), "plain", "fbcnn_color.pth"),
    "drunet_denoise": (lambda: DRUNet(in_nc=4, out_nc=3, nc=[8, 16, 32, 64], nb=2), "plain", "drunet_color.safetensors"),
    "nafnet_motion_deblur": (lambda: NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]), "params", "NAFNet-GoPro-width64.pth"),
    "mixdehazenet_dehaze": (lambda: MixDehazeNet(embed_dims=[8, 16, 32, 16, 8], depths=[1, 1, 1, 1, 1]), "module", "MixDehazeNet-b indoor.pth"),
    "retinexformer_lowlight": (lambda: RetinexFormer(n_feat=8, stage=1, num_blocks=[1, 1, 1]), "params", "LOL_v2_synthetic.safetensors"),
    "restormer_derain": (_restormer, "params", "deraining.pth"),
    "mprnet_derain": (_mprnet, "state_dict", "model_deraining.pth"),
}
NEEDS_EXTRA = {"restormer_derain", "mprnet_derain"}


def reference(name: str, net: torch.nn.Module, img: np.ndarray) -> np.ndarray:
    """The module's own forward as its authors call it, on an image whose sides need no padding."""
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        if name == "fbcnn_q90":
            y = net(x, torch.tensor([[1 - 90 / 100]]))[0]
        elif name == "drunet_denoise":
            y = net(torch.cat([x, torch.full_like(x[:, :1], estimate_noise_sigma(img) / 255.0)], dim=1))
        elif name == "mixdehazenet_dehaze":
            y = net(x * 2 - 1).clamp(-1, 1) * 0.5 + 0.5
        elif name == "mprnet_derain":
            y = net(x)[0]
        else:
            y = net(x)
    return (y.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def save(net: torch.nn.Module, layout: str, path) -> None:
    """``net``'s state dict as its authors' scripts save it."""
    state = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(path))
        return
    obj = {
        "plain": state,
        "params": {"params": state},
        "params_ema": {"params_ema": state, "params": {k: torch.zeros_like(v) for k, v in state.items()}},
        "state_dict": {"epoch": 250, "state_dict": state},
        "module": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }[layout]
    torch.save(obj, str(path))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """tool -> (network, saved file); each small network is built and saved once."""
    folder = tmp_path_factory.mktemp("checkpoints")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            if name in NEEDS_EXTRA and not EXTRA:
                pytest.skip("spandrel_extra_arches is the opt-in extra (pip install 'restore-r1[noncommercial]')")
            make, layout, filename = NETWORKS[name]
            torch.manual_seed(0)
            net = make().eval()
            path = folder / filename
            save(net, layout, path)
            cache[name] = (net, path)
        return cache[name]

    return get


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    """CPU, one torch thread: the networks here are tiny, and on a shared 2-core machine two
    threads spin-wait on each other (measured 4× slower under load)."""
    monkeypatch.setenv("RESTORE_R1_DEVICE", "cpu")
    checkpoints.clear_cache()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    import skimage.data

    rng = np.random.default_rng(seed)
    base = skimage.data.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.int16)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


# --- the catalogue ------------------------------------------------------------------------------
def test_catalogue_entries_name_the_authors_files():
    loaders = {m.name: m.loader for m in PAPER_MODELS}
    assert sum(v == "spandrel" for v in loaders.values()) == 6 and sum(v == "spandrel_extra" for v in loaders.values()) == 7
    assert {n for n, v in loaders.items() if v == "torchscript"} == {
        "drbnet_defocus", "ifan_defocus", "ridcp_dehaze", "dehazeformer_dehaze",
        *(f"{m}_{t}" for m in ("maxim", "xrestormer") for t in ("denoise", "derain", "motion_deblur", "dehaze")),
    }  # fmt: skip
    for m in PAPER_MODELS:
        assert m.file and m.url.startswith("https://") and m.licence and m.sha256 is None
        if m.loader == "torchscript":
            assert "no " in m.note and "architecture" in m.note
        else:
            assert m.architecture in KNOWN_ARCHS and get_tool(m.name).backend == "spandrel"
    fbcnn = {get_tool(n).weights.filename for n in ("fbcnn_q90", "fbcnn_q5", "fbcnn_blind")}
    assert fbcnn == {"fbcnn/fbcnn_color.pth"}  # one published file, three calls
    assert get_tool("fbcnn_q5").model.call.describe().startswith("quality factor 5")
    ours = [t for t in list_tools(paper=False) if t.model is not None]
    assert {t.name for t in ours} == {"nafnet_motion_deblur", "drunet_denoise", "mixdehazenet_dehaze", "retinexformer_lowlight"}
    assert all("ours, not the paper's" in t.description and t.backend == "spandrel" for t in ours)


#: spandrel's architecture ids, and the extra's two (known by name even where it is not installed).
KNOWN_ARCHS = {a.architecture.id for a in checkpoints.arch_registry().architectures()} | {"Restormer", "MPRNet"}


def test_spandrel_has_no_architecture_for_the_torchscript_models():
    ids = {i.lower().replace("-", "") for i in KNOWN_ARCHS}
    for arch in ("maxim", "xrestormer", "drbnet", "ifan", "ridcp", "dehazeformer"):
        assert arch not in ids
    assert EXTRA == ({"Restormer", "MPRNet"} <= {a.architecture.id for a in checkpoints.arch_registry().architectures()})


# --- each architecture: detected, installed, equal to the module's own forward -------------------
@pytest.mark.parametrize("name", list(NETWORKS))
def test_architecture_detected_and_output_equals_the_module(name, built):
    net, path = built(name)
    tool = get_tool(name)
    assert not tool.available
    target, served, verified = add_weights(path)  # the tool found from the architecture (and the file name)
    assert name in {t.name for t in served} and tool.available and tool_info(tool)["reason"] == ""
    assert verified.architecture == tool.model.architecture and target == weights_dir() / tool.weights.filename
    assert hashlib.sha256(target.read_bytes()).hexdigest() == verified.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    img = image()  # 48×64: a multiple of every stride here but SwinIR-JPEG's window 7 (padded by reflection, as SwinIR itself does)
    out = tool(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out, reference(name, net, img))


def test_fbcnn_file_serves_three_calls(built):
    net, path = built("fbcnn_q90")
    _, served, _ = add_weights(path, "fbcnn_blind")
    assert {t.name for t in served} == {"fbcnn_q90", "fbcnn_q5", "fbcnn_blind"} and all(t.available for t in served)
    img = image()
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        blind = (net(x)[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(get_tool("fbcnn_blind")(img), blind)
    assert not np.array_equal(get_tool("fbcnn_q5")(img), get_tool("fbcnn_q90")(img))


# --- the runner: padding, tiling, batching, contract --------------------------------------------
def test_padding_to_the_stride(built):
    net, path = built("drunet_denoise")  # DRUNet has no padding of its own: 3 downsamplings need sides % 8 == 0
    add_weights(path, "drunet_denoise")
    img = image(45, 61)
    out = get_tool("drunet_denoise")(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    padded = np.pad(img, ((0, 3), (0, 3), (0, 0)), mode="reflect")  # to 48×64, as the runner pads
    sigma = estimate_noise_sigma(img)  # σ of the image itself, not of its padding
    x = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = net(torch.cat([x, torch.full_like(x[:, :1], sigma / 255.0)], dim=1))
    expected = (y.clamp(0, 1) * 255 + 0.5).to(torch.uint8)[0].permute(1, 2, 0).numpy()[:45, :61]
    assert np.array_equal(out, expected)
    with pytest.raises(ImageError, match="uint8"):
        get_tool("drunet_denoise")(img.astype(np.float32))


#: Tiled against whole-image output of the small DRUNet (receptive field larger than the discarded
#: quarter of the 16-pixel overlap): at most 2 grey levels anywhere, and 99 % of values equal.
TILE_MAX_DIFF, TILE_EQUAL_SHARE = 2, 0.99


def test_tiled_equals_untiled_within_tolerance_and_tiles_align(built, monkeypatch):
    _, path = built("drunet_denoise")
    add_weights(path, "drunet_denoise")
    model = get_tool("drunet_denoise").model
    img = image(88, 120)
    whole = checkpoints.CheckpointRunner(model, tile=0)(img)
    monkeypatch.setattr(neural, "TILE_ABOVE_PIXELS", 0)
    runner = checkpoints.CheckpointRunner(model, tile=48)
    assert neural.tile_for(img, 8, 48) == 64 and neural.tile_geometry(7, 48, 32) == (56, 112, 56)  # tiles hold two overlaps
    tiled = runner(img)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.max() <= TILE_MAX_DIFF and (diff == 0).mean() >= TILE_EQUAL_SHARE, (diff.max(), (diff == 0).mean())
    # the blend is a partition of unity: a pointwise network is reproduced exactly across seams
    x = torch.rand(1, 3, 88, 120)
    assert torch.allclose(neural.forward_tiled(lambda t: 1 - t, x, 8, 48, 16), 1 - x, atol=1e-6)


def test_batching_groups_shapes_and_equals_single_calls(built):
    _, path = built("nafnet_motion_deblur")
    add_weights(path, "nafnet_motion_deblur")
    tool = get_tool("nafnet_motion_deblur")
    a, b, c = image(48, 64, 1), image(48, 64, 2), image(40, 56, 3)
    batch = tool.run_batch([a, c, b])
    assert [o.shape for o in batch] == [a.shape, c.shape, b.shape]
    for out, img in zip(batch, (a, c, b), strict=True):
        assert np.array_equal(out, tool(img))


# --- weights add: the CLI, and refusing bad files ------------------------------------------------
def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_weights_list_and_add_cli(built, capsys):
    _, path = built("retinexformer_lowlight")
    code, out, _ = _cli(capsys, "weights", "list", "retinexformer_lowlight", "fbcnn_q90", "maxim_derain")
    assert code == 0 and "LOL_v2_synthetic.pth" in out and "https://drive.google.com/" in out and "missing" in out
    assert str(weights_dir() / "retinexformer" / "LOL_v2_synthetic.pth") in out and "quality factor 90" in out
    assert "TorchScript export of checkpoint.npz" in out
    code, out, err = _cli(capsys, "weights", "add", path)
    assert code == 0 and err == "" and "RetinexFormer" in out and "available: retinexformer_lowlight" in out
    code, out, _ = _cli(capsys, "weights", "list", "--json")
    info = {i["name"]: i for i in json.loads(out)}
    assert info["retinexformer_lowlight"]["installed"] and info["retinexformer_lowlight"]["available"]
    assert not info["fbcnn_q90"]["installed"] and len(info) == len([t for t in list_tools() if t.model])
    assert weights_info("maxim_derain")["loader"] == "torchscript"


class _RunsCode:
    """A pickle whose ``__reduce__`` would run a shell command on load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_files_are_one_line_errors_and_install_nothing(built, tmp_path, capsys):
    _, nafnet = built("nafnet_motion_deblur")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"params": _RunsCode(marker)}, str(evil))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(nafnet.read_bytes()[:2000])
    cases = [
        ((evil, "--tool", "drunet_denoise"), "refused: the pickle asks for"),
        ((junk, "--tool", "drunet_denoise"), "not a checkpoint"),
        ((truncated, "--tool", "drunet_denoise"), "not a readable PyTorch file"),
        ((nafnet, "--tool", "drunet_denoise"), "a NAFNet checkpoint, but tool drunet_denoise runs DRUNet"),
        ((nafnet, "--tool", "drunet_denoize"), "unknown tool 'drunet_denoize'; did you mean drunet_denoise"),
        ((nafnet, "--tool", "clahe"), "needs no weights file"),
        ((tmp_path / "absent.pth",), "no such file"),
    ]
    for argv, message in cases:
        code, out, err = _cli(capsys, "weights", "add", *argv)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1 and message in lines[0], (argv, err)
    assert not marker.exists()
    assert not any(p.is_file() for p in weights_dir().rglob("*"))  # nothing installed, no temporary left
    with pytest.raises(CheckpointError, match="refused"):
        checkpoints.read_state_dict(evil.read_bytes(), "evil")


def test_variant_and_torchscript_checks(built, tmp_path):
    _, jpeg = built("swinir_jpeg_q40")
    with pytest.raises(CheckpointError, match=r"without \['s128w8'\]"):
        add_weights(jpeg, "swinir_denoise_s15")  # a SwinIR, but the JPEG one
    scripted = tmp_path / "maxim_derain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(scripted))
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        add_weights(scripted)  # an export names no architecture: --tool is needed
    target, served, verified = add_weights(scripted, "maxim_derain")
    assert verified.architecture == "TorchScript" and [t.name for t in served] == ["maxim_derain"]
    img = image()
    assert np.array_equal(get_tool("maxim_derain")(img), img)


# --- the registry: publish-tool, then a pod installs it ------------------------------------------
def test_publish_tool_and_pull_into_a_fresh_weights_folder(built, tmp_path, capsys, monkeypatch):
    _, path = built("drunet_denoise")
    registry = tmp_path / "registry"
    code, _, err = _cli(capsys, "registry", "publish-tool", "drunet_denoise", "--registry", registry)
    assert code == 2 and "drunet/drunet_color.pth" in err  # not installed yet: nothing to publish
    add_weights(path, "drunet_denoise")
    code, out, _ = _cli(capsys, "registry", "publish-tool", "drunet_denoise", "--registry", registry, "--stage", "production")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert code == 0 and "registry://tool-drunet_denoise@1" in out and digest in out
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "pod"))
    monkeypatch.setenv("RESTORE_R1_REGISTRY_CACHE", str(tmp_path / "cache"))
    assert not get_tool("drunet_denoise").available
    code, out, _ = _cli(capsys, "weights", "pull", "drunet_denoise", "--registry", registry)
    assert code == 0 and "available: drunet_denoise" in out
    assert hashlib.sha256((tmp_path / "pod" / "drunet" / "drunet_color.pth").read_bytes()).hexdigest() == digest
    img = image()
    assert get_tool("drunet_denoise").available and get_tool("drunet_denoise")(img).shape == img.shape


def test_pull_refuses_a_corrupted_store(built, tmp_path, monkeypatch):
    from restore_r1.errors import ChecksumError
    from restore_r1.registry import open_registry, publish_tool_weights, pull_tool_weights

    _, path = built("drunet_denoise")
    add_weights(path, "drunet_denoise")
    registry = open_registry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    version = publish_tool_weights(registry, "drunet_denoise", stage="production")
    stored = tmp_path / "registry" / version.artifact_key / version.files[0].path
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "pod"))
    with pytest.raises(ChecksumError, match="corrupt"):
        pull_tool_weights("registry://tool-drunet_denoise@production", registry)
    assert not (tmp_path / "pod").exists()


def test_unknown_architecture_is_named(tmp_path):
    state = {"conv.weight": torch.zeros(3, 3, 3, 3)}
    buf = io.BytesIO()
    torch.save(state, buf)
    with pytest.raises(CheckpointError, match="recognises no architecture"):
        checkpoints.detect(checkpoints.read_state_dict(buf.getvalue(), "x.pth"), "x.pth")


@pytest.mark.slow
def test_publish_tool_to_s3_and_pull(built, tmp_path, monkeypatch, capsys):
    """The same round trip against a real S3 HTTP endpoint (moto's server, as tests/test_registry_s3.py)."""
    pytest.importorskip("moto", reason="moto[server] is a dev dependency")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="tools")
        _, path = built("drunet_denoise")
        add_weights(path, "drunet_denoise")
        location = "s3://tools/registry"
        code, out, _ = _cli(capsys, "registry", "publish-tool", "drunet_denoise", "--registry", location, "--endpoint", endpoint, "--stage", "production")
        assert code == 0 and f"{location}/tool-drunet_denoise/artifacts/" in out
        monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "pod"))
        monkeypatch.setenv("RESTORE_R1_REGISTRY_CACHE", str(tmp_path / "cache"))
        code, out, _ = _cli(capsys, "weights", "pull", "registry://tool-drunet_denoise@production", "--registry", location, "--endpoint", endpoint)
        assert code == 0 and "available: drunet_denoise" in out
        assert (tmp_path / "pod" / "drunet" / "drunet_color.pth").read_bytes() == path.read_bytes()
    finally:
        server.stop()
