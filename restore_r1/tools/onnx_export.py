"""ONNX exports of the neural tools' networks, and an onnxruntime runner for them.

Where the architecture allows it (today: the shipped DnCNN denoisers, plain 3×3 convolutions and
ReLUs), a tool's network is exported to ONNX so that Triton's ``onnxruntime`` backend (or
TensorRT) can serve it on a GPU node. Only the network is exported: the tool's own pre- and
post-processing (noise-σ estimate, the opponent colour transform, reflection padding, tiling) stays
in :mod:`restore_r1.tools.dncnn`, which runs an :class:`OnnxDnCNN` exactly like the torch
network (same ``variant``, ``device`` and ``forward(x, padding="valid")``).

The exported graph is the network of :meth:`restore_r1.tools.dncnn.DnCNN.forward` with
``padding="valid"``: input ``PLANES`` float32 N×c×(H+2d)×(W+2d) (c = 2 for σ-input variants: the
plane and a constant σ plane; d = the network's depth), output ``DENOISED`` float32 N×c×H×W, of
which channel 0 is the denoised plane. N, H and W are dynamic.

    restore-r1 tools export-onnx dncnn17_denoise -o dncnn17.onnx

``export_onnx`` checks the export against torch on random planes with onnxruntime (CPU) before it
writes the file atomically; ``tests/test_onnx_export.py`` checks the file, the runner and the tool
outputs. onnx and onnxruntime come with the ``onnx`` extra (``pip install 'restore-r1[onnx]'``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.errors import UnavailableError

#: Names of the exported graph's input and output.
INPUT_NAME = "PLANES"
OUTPUT_NAME = "DENOISED"
#: ONNX opset of the exports (onnxruntime ≥ 1.13 and Triton's onnxruntime backend run it).
OPSET = 17
#: Largest |onnxruntime − torch| accepted by the export check (float32 on planes in [0, 1]).
EXPORT_TOLERANCE = 1e-4
#: The modules the export and the runner need, and the extra that brings them.
REQUIRES = ("onnx", "onnxruntime")
EXTRA = "onnx"


def exportable(tool_name: str) -> str:
    """The DnCNN variant of ``tool_name`` if its network can be exported.

    Raises:
        KeyError: no such tool (close matches named).
        ValueError: the tool has no network ONNX can hold (a classical tool, a checkpoint tool).
    """
    from restore_r1.tools import get_tool
    from restore_r1.tools.dncnn import DnCNNTool

    tool = get_tool(tool_name)
    if not isinstance(tool.fn, DnCNNTool):
        kind = "a classical tool with no network" if not tool.neural else "a network this exporter does not know (only the DnCNN tools so far)"
        raise ValueError(f"tool {tool.name!r} cannot be exported to ONNX: {kind}")
    return tool.fn.variant


def _require() -> None:
    import importlib.util

    missing = [m for m in REQUIRES if importlib.util.find_spec(m) is None]
    if missing:
        raise UnavailableError(f"ONNX export needs {', '.join(missing)}: pip install 'restore-r1[{EXTRA}]'")


def _module(network):
    import torch

    class ValidDnCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()

        def forward(self, x):
            return network.forward(x, padding="valid")

    return ValidDnCNN().eval()


def export_bytes(network) -> bytes:
    """The ONNX file of a loaded :class:`~restore_r1.tools.dncnn.DnCNN` (on the CPU)."""
    import warnings

    import torch

    _require()
    d, c = network.variant.depth, network.variant.channels
    example = torch.rand(1, c, 32 + 2 * d, 40 + 2 * d)
    axes = {0: "n", 2: "h", 3: "w"}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice of the TorchScript exporter
        path = Path(tmp) / "net.onnx"
        torch.onnx.export(
            _module(network.to("cpu")),
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=OPSET,
            dynamo=False,
        )
        return path.read_bytes()


def check_export(data: bytes, network, shapes=((2, 24, 30), (1, 57, 41)), seed: int = 0) -> float:
    """Largest |onnxruntime − torch| over random planes of ``shapes`` (N, H, W).

    Raises:
        ValueError: it exceeds :data:`EXPORT_TOLERANCE`.
    """
    import torch

    runner = OnnxDnCNN.from_bytes(data, network.variant)
    rng = np.random.default_rng(seed)
    d, c = network.variant.depth, network.variant.channels
    worst = 0.0
    for n, h, w in shapes:
        x = torch.from_numpy(rng.random((n, c, h + 2 * d, w + 2 * d), dtype=np.float32))
        with torch.inference_mode():
            ref = network.to("cpu").forward(x, padding="valid").numpy()
        worst = max(worst, float(np.abs(runner.forward(x).numpy() - ref).max()))
    if worst > EXPORT_TOLERANCE:
        raise ValueError(f"ONNX export of DnCNN {network.variant.name} differs from torch by {worst:.2e} (> {EXPORT_TOLERANCE:g})")
    return worst


def export_onnx(tool_name: str, out: str | os.PathLike, overwrite: bool = False) -> tuple[Path, float]:
    """Exports ``tool_name``'s network to ``out`` (checked, written atomically); (path, max diff).

    Raises:
        KeyError / ValueError: see :func:`exportable`; ValueError also for a failed check.
        FileExistsError: ``out`` exists and not ``overwrite``.
        UnavailableError: onnx or onnxruntime is missing.
    """
    from restore_r1.images import atomic_write_bytes
    from restore_r1.tools import get_tool
    from restore_r1.tools.dncnn import cached_model

    variant = exportable(tool_name)
    _require()
    network = cached_model(get_tool(tool_name).fn.weights, variant, "cpu")
    data = export_bytes(network)
    worst = check_export(data, network)
    return atomic_write_bytes(out, data, overwrite=overwrite), worst


@dataclass
class OnnxDnCNN:
    """An exported DnCNN run by onnxruntime, usable wherever :class:`~restore_r1.tools.dncnn.DnCNN`
    is (``denoise_planes``, ``dncnn_denoise``): ``forward`` takes and returns torch tensors on the
    CPU; onnxruntime picks its own execution providers (``providers``, CPU by default)."""

    session: Any
    variant: Any
    device: str = "cpu"
    providers: tuple[str, ...] = field(default=("CPUExecutionProvider",))

    @classmethod
    def from_bytes(cls, data: bytes, variant, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> OnnxDnCNN:
        _require()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        return cls(ort.InferenceSession(data, sess_options=options, providers=list(providers)), variant, providers=providers)

    def to(self, device: str) -> OnnxDnCNN:
        if str(device) != "cpu":
            raise ValueError(f"OnnxDnCNN runs through onnxruntime's providers {self.providers}, not on torch device {device!r}")
        return self

    def forward(self, x, padding: str = "valid"):
        import torch

        if padding != "valid":
            raise ValueError(f"the ONNX export holds the 'valid' network only, got padding={padding!r}")
        (y,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})
        return torch.from_numpy(y)
