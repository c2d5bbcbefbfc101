"""Issue 10 §3: the DnCNN networks exported to ONNX match torch under onnxruntime (CPU), and the
tool run through the export gives the same image up to a grey level."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (installed by make venv)")

from restore_r1.degradations import gaussian_noise  # noqa: E402
from restore_r1.tools import dncnn, get_tool  # noqa: E402
from restore_r1.tools import onnx_export as ox  # noqa: E402


@pytest.fixture(scope="module", params=dncnn.SHIPPED_VARIANTS)
def exported(request, tmp_path_factory):
    variant = request.param
    tool = next(n for n in ("dncnn6_denoise", "dncnn17_denoise") if get_tool(n).fn.variant == variant)
    path, worst = ox.export_onnx(tool, tmp_path_factory.mktemp("onnx") / f"{tool}.onnx")
    network = dncnn.load_dncnn(dncnn.DNCNN_DATA_DIR / dncnn.weights_filename(variant), variant)
    return tool, path, worst, network


def test_export_matches_torch_on_dynamic_shapes_and_batches(exported):
    import onnx

    tool, path, worst, network = exported
    assert worst < ox.EXPORT_TOLERANCE
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == [ox.INPUT_NAME] and [o.name for o in model.graph.output] == [ox.OUTPUT_NAME]
    runner = ox.OnnxDnCNN.from_bytes(path.read_bytes(), network.variant)
    d, c = network.variant.depth, network.variant.channels
    for n, h, w in ((3, 17, 95), (1, 128, 64)):  # shapes other than the export's example
        x = torch.rand(n, c, h + 2 * d, w + 2 * d, generator=torch.Generator().manual_seed(n))
        with torch.inference_mode():
            ref = network.forward(x, padding="valid")
        got = runner.forward(x)
        assert got.shape == ref.shape == (n, c, h, w) and got.dtype == torch.float32
        assert float((got - ref).abs().max()) < ox.EXPORT_TOLERANCE


def test_the_tool_through_onnxruntime_gives_the_same_image(exported):
    tool, path, _, network = exported
    runner = ox.OnnxDnCNN.from_bytes(path.read_bytes(), network.variant)
    img = gaussian_noise(np.full((70, 90, 3), 120, np.uint8), 25.0, np.random.default_rng(4))
    with_torch = dncnn.dncnn_denoise(img, network, tile=32)
    with_onnx = dncnn.dncnn_denoise(img, runner, tile=32)  # tiled: the export is shape-free
    assert np.abs(with_torch.astype(int) - with_onnx.astype(int)).max() <= 1
    assert np.array_equal(with_torch, get_tool(tool)(img))


def test_classical_tools_and_existing_files_are_refused(tmp_path, exported):
    with pytest.raises(ValueError, match="classical tool"):
        ox.export_onnx("clahe", tmp_path / "x.onnx")
    tool, path, _, _ = exported
    with pytest.raises(FileExistsError):
        ox.export_onnx(tool, path)
    runner = ox.OnnxDnCNN.from_bytes(path.read_bytes(), exported[3].variant)
    with pytest.raises(ValueError, match="'valid'"):
        runner.forward(torch.zeros(1, 2, 40, 40), padding="circular")


def test_cli_writes_the_file_and_errors_are_one_line(tmp_path):
    out = tmp_path / "d6.onnx"
    cli = [sys.executable, "-m", "restore_r1.cli", "tools", "export-onnx"]
    done = subprocess.run([*cli, "dncnn6_denoise", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "max diff" in done.stdout
    for args in (["clahe", "-o", str(tmp_path / "c.onnx")], ["dncnn6_denoise", "-o", str(out)], ["dncnn6_denoise", "-o", str(tmp_path / "x.bin")]):
        bad = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_gpu_repository_serves_the_network_through_its_onnx_model(tmp_path):
    """``repository --onnx``: the DnCNN tool model of the GPU config calls its ONNX network model
    by BLS (here routed to onnxruntime on the CPU, as Triton's onnxruntime backend would run it)
    and answers the in-process tool's image up to a grey level; the committed (CPU) configs and
    the other tools are unchanged."""
    import onnxruntime as ort
    import serving_pb_stub as stub

    from restore_r1.serving import backend as b
    from restore_r1.serving.repository import CPU_CONFIG_NAME, write_repository

    pb = sys.modules.get("triton_python_backend_utils") or stub.install()  # one stub for all test files
    root = write_repository(tmp_path / "repo", onnx=True)
    nets = sorted(p.name for p in root.iterdir() if p.name.startswith(b.NETWORK_MODEL_PREFIX))
    assert nets == [b.NETWORK_MODEL_PREFIX + t for t in ("dncnn17_denoise", "dncnn6_denoise")]
    assert "network_model" not in (root / b.tool_model_name("dncnn6_denoise") / "configs" / f"{CPU_CONFIG_NAME}.pbtxt").read_text()
    assert "network_model" not in (root / b.tool_model_name("clahe") / "config.pbtxt").read_text()
    network = b.NETWORK_MODEL_PREFIX + "dncnn6_denoise"
    session = ort.InferenceSession(str(root / network / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    calls = []

    def serve(tensors):
        (planes,) = [t.as_numpy() for t in tensors if t.name() == ox.INPUT_NAME]
        calls.append(planes.shape)
        (out,) = session.run([ox.OUTPUT_NAME], {ox.INPUT_NAME: planes})
        return pb.InferenceResponse(output_tensors=[pb.Tensor(ox.OUTPUT_NAME, out)])

    stub.BLS_MODELS[network] = serve
    try:
        model_dir = root / b.tool_model_name("dncnn6_denoise")
        spec = importlib.util.spec_from_file_location("dncnn6_model", model_dir / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        model.initialize(stub.model_args(model_dir, config_name=""))  # the GPU config.pbtxt
        img = gaussian_noise(np.full((600, 530, 3), 110, np.uint8), 25.0, np.random.default_rng(5))
        (response,) = model.execute([stub.Request(IMAGE=img[None])])
        served = pb.get_output_tensor_by_name(response, b.OUTPUT_IMAGE).as_numpy()[0]
    finally:
        stub.BLS_MODELS.pop(network, None)
    assert len(calls) == 4 and max(max(s[2], s[3]) for s in calls) <= b.DEFAULT_NETWORK_TILE + 2 * 6  # 2×2 tiles
    assert np.abs(served.astype(int) - get_tool("dncnn6_denoise")(img).astype(int)).max() <= 1
