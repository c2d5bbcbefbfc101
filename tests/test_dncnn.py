"""scico's DnCNN as shipped: the files and their index, the torch network against a numpy
implementation of scico's flax DnCNNNet, tiling, errors, and the converter's msgpack decoding."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch

from restore_r1.degradations import gaussian_noise
from restore_r1.errors import ChecksumError, WeightsNotFoundError
from restore_r1.tools import dncnn, get_tool
from restore_r1.weights import WeightSpec

SHIPPED = dncnn.SHIPPED_VARIANTS
INDEX = json.loads((dncnn.DNCNN_DATA_DIR / dncnn.DNCNN_INDEX).read_text())
#: The issue's bound on each shipped file.
MAX_BYTES = 5 * 1024 * 1024


def shipped_variables(variant: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(dncnn.DNCNN_DATA_DIR / dncnn.weights_filename(variant)))


# --- reference: scico's flax DnCNNNet (scico/flax/_models.py) in plain numpy, NHWC, float64 -------
def conv_circular(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """flax ``Conv(padding="CIRCULAR", use_bias=False)``: x N×H×W×I, kernel 3×3×I×O (cross-correlation)."""
    h, w = x.shape[1:3]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap")
    return sum(xp[:, dy : dy + h, dx : dx + w, :] @ kernel[dy, dx] for dy in range(3) for dx in range(3))


def flax_dncnn(v: dict[str, np.ndarray], x: np.ndarray, depth: int) -> np.ndarray:
    y = np.maximum(conv_circular(x, v["params/conv_start/kernel"]), 0.0)
    for k in range(depth - 2):
        bn = f"ConvBNBlock_{k}/BatchNorm_0"
        z = conv_circular(y, v[f"params/ConvBNBlock_{k}/Conv_0/kernel"])
        z = (z - v[f"batch_stats/{bn}/mean"]) / np.sqrt(v[f"batch_stats/{bn}/var"] + 1e-5) * v[f"params/{bn}/scale"] + v[f"params/{bn}/bias"]
        y = np.maximum(z, 0.0)
    return x - conv_circular(y, v["params/conv_end/kernel"])


@pytest.mark.parametrize("variant", SHIPPED)
def test_shipped_file_matches_its_index(variant):
    name = dncnn.weights_filename(variant)
    path = dncnn.DNCNN_DATA_DIR / name
    entry = INDEX["files"][name]
    assert entry["variant"] == variant and path.stat().st_size == entry["bytes"] < MAX_BYTES
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"] == dncnn.weight_spec(variant).sha256
    dncnn.check_variables(shipped_variables(variant), variant)


def test_index_lists_exactly_the_shipped_files_and_the_licence_is_there():
    assert set(INDEX["files"]) == {dncnn.weights_filename(v) for v in SHIPPED}
    assert {p.name for p in dncnn.DNCNN_DATA_DIR.glob("*.safetensors")} == set(INDEX["files"])
    licence = (dncnn.DNCNN_DATA_DIR / dncnn.DNCNN_LICENCE_FILE).read_text()
    assert "BSD 3-Clause License" in licence and "Los Alamos National Laboratory" in licence
    assert INDEX["source"]["package"] == "scico" and "make dncnn-weights" in INDEX["command"]


@pytest.mark.parametrize("variant", SHIPPED)
def test_torch_network_matches_the_flax_reference(variant):
    info = dncnn.variant_info(variant)
    v = shipped_variables(variant)
    rng = np.random.default_rng(0)
    x = rng.random((2, 40, 44, info.channels)).astype(np.float32)  # > 2·17 for the valid check
    if info.channels == 2:
        x[0, :, :, 1], x[1, :, :, 1] = 0.08, 0.15  # the σ planes
    ref = flax_dncnn({k: a.astype(np.float64) for k, a in v.items()}, x.astype(np.float64), info.depth)
    model = dncnn.DnCNN.from_variables(v, variant)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        out = model.forward(xt).permute(0, 2, 3, 1).numpy()
        valid = model.forward(xt, padding="valid").permute(0, 2, 3, 1).numpy()
    assert np.abs(out - ref).max() < 1e-5
    d = info.depth
    assert np.abs(valid - ref[:, d:-d, d:-d]).max() < 1e-5


def test_denoise_planes_tiles_equal_one_pass_and_keep_the_borders():
    model = dncnn.load_dncnn(dncnn.DNCNN_DATA_DIR / dncnn.weights_filename("6N"), "6N")
    rng = np.random.default_rng(1)
    planes = rng.random((3, 45, 61)).astype(np.float32)
    whole = dncnn.denoise_planes(model, planes, [0.1, 0.05, 0.08])
    tiled = dncnn.denoise_planes(model, planes, [0.1, 0.05, 0.08], tile=16)
    assert whole.shape == planes.shape and np.abs(whole - tiled).max() < 1e-5
    # one pass = the network with its own circular padding on the reflection-padded plane, cropped
    d = model.variant.depth
    padded = np.pad(planes[:1], ((0, 0), (d, d), (d, d)), mode="reflect")
    x = torch.from_numpy(np.stack([padded, np.full_like(padded, 0.1)], axis=1))
    with torch.inference_mode():
        ref = model.forward(x)[:, 0, d:-d, d:-d].numpy()
    assert np.abs(whole[:1] - ref).max() < 1e-5
    with pytest.raises(ValueError, match="sigmas required"):
        dncnn.denoise_planes(model, planes)


def test_opponent_planes_get_their_own_sigma():
    flat = np.full((128, 128, 3), 128, np.uint8)
    noisy = gaussian_noise(flat, 25.0, np.random.default_rng(0))
    rgb = dncnn.plane_sigmas(noisy, "rgb", 1.0)
    opp = dncnn.plane_sigmas(noisy, "opponent", 1.0)
    assert rgb[0] == pytest.approx(25.0 / 255.0, rel=0.1)
    assert opp == pytest.approx([rgb[0] / np.sqrt(3), rgb[0] / np.sqrt(2), rgb[0] * np.sqrt(6) / 4])
    assert max(dncnn.plane_sigmas(gaussian_noise(flat, 120.0, np.random.default_rng(0)))) == dncnn.SIGMA_MAX
    with pytest.raises(ValueError, match="colour"):
        dncnn.plane_sigmas(noisy, "lab")


def test_tool_equals_the_pure_function():
    tool = get_tool("dncnn6_denoise")
    img = gaussian_noise(np.full((40, 50, 3), 100, np.uint8), 30.0, np.random.default_rng(2))
    model = dncnn.load_dncnn(dncnn.DNCNN_DATA_DIR / dncnn.weights_filename("6N"), "6N")
    threads = torch.get_num_threads()
    assert np.array_equal(tool(img), dncnn.dncnn_denoise(img, model))
    assert torch.get_num_threads() == threads  # bounded during the call only


def test_the_tool_runs_on_the_device_it_is_given(monkeypatch):
    """Issue 10 §3: ``$RESTORE_R1_DEVICE`` (set by a Triton GPU instance) picks the device."""
    from restore_r1.tools.neural import DEVICE_ENV

    model = dncnn.load_dncnn(dncnn.DNCNN_DATA_DIR / dncnn.weights_filename("6N"), "6N")
    assert model.device == "cpu" and model.to("cpu") is model
    seen = []
    real = dncnn.cached_model
    monkeypatch.setattr(dncnn, "cached_model", lambda spec, variant, device="cpu": seen.append(device) or real(spec, variant, device))
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    img = gaussian_noise(np.full((40, 50, 3), 100, np.uint8), 30.0, np.random.default_rng(2))
    out = get_tool("dncnn6_denoise")(img)
    assert seen == ["cpu"] and np.array_equal(out, dncnn.dncnn_denoise(img, model))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh runs it on one)")
def test_gpu_output_matches_the_cpu_within_a_grey_level():
    model = dncnn.load_dncnn(dncnn.DNCNN_DATA_DIR / dncnn.weights_filename("17N"), "17N")
    img = gaussian_noise(np.full((300, 520, 3), 100, np.uint8), 25.0, np.random.default_rng(3))
    cpu = dncnn.dncnn_denoise(img, model)
    gpu = dncnn.dncnn_denoise(img, model.to("cuda"))
    assert np.abs(cpu.astype(int) - gpu.astype(int)).max() <= 1


def test_missing_or_corrupt_weights_name_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "cache"))
    good = dncnn.weight_spec("6N")
    missing = WeightSpec(good.filename, good.source, good.sha256, good.licence, packaged=tmp_path / "gone.safetensors")
    with pytest.raises(WeightsNotFoundError, match="gone.safetensors"):
        dncnn.DnCNNTool("6N", missing)(np.zeros((32, 32, 3), np.uint8))
    corrupt_path = tmp_path / "corrupt.safetensors"
    corrupt_path.write_bytes(good.packaged.read_bytes()[:-4] + b"\0\0\0\0")
    corrupt = WeightSpec(good.filename, good.source, good.sha256, good.licence, packaged=corrupt_path)
    with pytest.raises(ChecksumError, match="corrupt.safetensors"):
        dncnn.DnCNNTool("6N", corrupt)(np.zeros((32, 32, 3), np.uint8))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        dncnn.load_dncnn(junk, "6N")
    with pytest.raises(ValueError, match="17N"):
        dncnn.load_dncnn(good.packaged, "17N")  # a 6-layer file is not a 17-layer model


# --- the converter (bench/convert_dncnn.py; needs msgpack, the dev extra) -------------------------
def _flax_msgpack(tree: dict) -> bytes:
    """What flax.serialization.msgpack_serialize writes: arrays as extension 1 of (shape, dtype, bytes)."""
    import msgpack

    def default(obj):
        if isinstance(obj, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((obj.shape, obj.dtype.name, obj.tobytes("C")), use_bin_type=True))
        raise TypeError(type(obj))

    return msgpack.packb(tree, default=default, use_bin_type=True)


def test_converter_decodes_flax_msgpack_and_writes_reproducible_files(tmp_path):
    pytest.importorskip("msgpack")
    from bench import convert_dncnn

    variables = {k: a + np.float32(0.5) for k, a in shipped_variables("6N").items()}
    tree: dict = {}
    for path, arr in variables.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = arr
    wheel = tmp_path / "scico-0.0.7-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("scico/data/flax/dncnn6N.mpk", _flax_msgpack(tree))
        zf.writestr("scico-0.0.7.dist-info/licenses/LICENSE", "BSD 3-Clause License\n")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="differs from scico"):
        convert_dncnn.convert(wheel, tmp_path / "a", ("6N",))
    index = convert_dncnn.convert(wheel, tmp_path / "a", ("6N",), expected_sha256=sha)
    convert_dncnn.convert(wheel, tmp_path / "b", ("6N",), expected_sha256=sha)
    name = dncnn.weights_filename("6N")
    blob = (tmp_path / "a" / name).read_bytes()
    assert blob == (tmp_path / "b" / name).read_bytes() and index["files"][name]["sha256"] == hashlib.sha256(blob).hexdigest()
    from safetensors.numpy import load_file

    back = load_file(str(tmp_path / "a" / name))
    assert set(back) == set(variables) and all(np.array_equal(back[k], variables[k]) for k in variables)
    assert (tmp_path / "a" / dncnn.DNCNN_LICENCE_FILE).read_text() == "BSD 3-Clause License\n"
