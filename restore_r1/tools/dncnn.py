"""DnCNN denoisers trained by scico (BSD-3), run with torch on CPU.

The network is scico's ``DnCNNNet`` (scico/flax/_models.py; Zhang et al., "Beyond a Gaussian
denoiser", TIP 2017), grey, on [0, 1]::

    y_1 = ReLU(conv_start(x))                                  # 3×3, c -> 64, no bias
    y_k = ReLU(BN_k(conv_k(y_{k-1})))    k = 2 .. depth − 1    # 3×3, 64 -> 64, no bias
    out = x − conv_end(y_{depth−1})                            # 3×3, 64 -> c: the predicted noise

Every convolution pads circularly (flax ``padding="CIRCULAR"``); BatchNorm runs on its running
statistics, ``BN(z) = (z − mean)·scale/√(var + ε) + bias`` with ε = 1e-5, and is folded into the
preceding convolution when the weights are loaded. The blind variants (``c = 1``) were trained at
one noise σ each (L 0.06, M 0.10, H 0.20 on [0, 1]); the ``N`` variants (``c = 2``) take a second
input plane filled with σ (trained on σ ∈ [0, 0.2]) and their first output plane is the image.

The shipped weights (``restore_r1/data/dncnn/``, made by ``bench/convert_dncnn.py``) are scico's
float32 arrays unchanged, under their flax tree paths (``params/ConvBNBlock_0/Conv_0/kernel``,
kernels H×W×in×out), so a reference written against flax's layout can check this module.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restore_r1.errors import WeightsNotFoundError
from restore_r1.tools.classic import estimate_noise_sigma
from restore_r1.tools.neural import default_device
from restore_r1.weights import WeightSpec, resolve_weights

#: The package folder holding the converted weights, their index and scico's licence.
DNCNN_DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "dncnn"
#: Index beside the weights: sha256 and size of every file, and where they came from.
DNCNN_INDEX = "weights.json"
DNCNN_LICENCE_FILE = "LICENSE-scico.txt"
DNCNN_SPDX = "BSD-3-Clause"
DNCNN_LICENCE = "BSD-3-Clause (scico, Los Alamos National Laboratory; see LICENSE-scico.txt)"
DNCNN_SOURCE = "scico 0.0.7 wheel (scico/data/flax), converted by `make dncnn-weights`"

#: scico DnCNNNet: filters per hidden layer and BatchNorm ε (scico/flax/_models.py).
FEATURES = 64
BN_EPS = 1e-5


@dataclass(frozen=True)
class Variant:
    """One of scico's trained models.

    Attributes:
        name: scico's variant name, e.g. ``"17H"``.
        depth: number of convolutions (also the receptive-field radius in pixels).
        channels: 1 for a blind model, 2 when a σ plane is the second input.
        train_sigma: the noise σ (on [0, 1]) it was trained at, ``None`` for σ-input models.
    """

    name: str
    depth: int
    channels: int
    train_sigma: float | None


#: scico/data/flax/README.rst: L, M, H trained at σ 0.06, 0.10, 0.20; N with a σ input on [0, 0.2].
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("6L", 6, 1, 0.06),
        Variant("6M", 6, 1, 0.10),
        Variant("6H", 6, 1, 0.20),
        Variant("6N", 6, 2, None),
        Variant("17L", 17, 1, 0.06),
        Variant("17M", 17, 1, 0.10),
        Variant("17H", 17, 1, 0.20),
        Variant("17N", 17, 2, None),
    )
}
#: The variants shipped in the package, chosen by measurement (bench/results/tools.md, "DnCNN"):
#: the σ-input models beat every blind one over σ 20–50 (a blind model loses 4–8 dB away from
#: its training σ); 17N is 0.1–0.3 dB above 6N at 3.7× the time, so both are offered.
SHIPPED_VARIANTS: tuple[str, ...] = ("6N", "17N")


def variant_info(name: str) -> Variant:
    """The :class:`Variant` called ``name``.

    Raises:
        KeyError: unknown name.
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown DnCNN variant {name!r}; expected one of {sorted(VARIANTS)}") from None


def weights_filename(variant: str) -> str:
    """File name of a converted variant, e.g. ``dncnn17H.safetensors``."""
    return f"dncnn{variant_info(variant).name}.safetensors"


# ===================================================================================================
# the flax variables
# ===================================================================================================
def _block(k: int) -> str:
    return f"ConvBNBlock_{k}"


def expected_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Path -> shape of every variable of scico's DnCNNNet of ``variant`` (flax layout)."""
    v = variant_info(variant)
    shapes: dict[str, tuple[int, ...]] = {
        "params/conv_start/kernel": (3, 3, v.channels, FEATURES),
        "params/conv_end/kernel": (3, 3, FEATURES, v.channels),
    }
    for k in range(v.depth - 2):
        shapes[f"params/{_block(k)}/Conv_0/kernel"] = (3, 3, FEATURES, FEATURES)
        for name in ("scale", "bias"):
            shapes[f"params/{_block(k)}/BatchNorm_0/{name}"] = (FEATURES,)
        for name in ("mean", "var"):
            shapes[f"batch_stats/{_block(k)}/BatchNorm_0/{name}"] = (FEATURES,)
    return shapes


def check_variables(variables: dict[str, np.ndarray], variant: str) -> None:
    """Raises ``ValueError`` unless ``variables`` are exactly DnCNNNet's of ``variant``, float32."""
    expected = expected_shapes(variant)
    if set(variables) != set(expected):
        missing, extra = sorted(set(expected) - set(variables)), sorted(set(variables) - set(expected))
        raise ValueError(f"DnCNN {variant}: variables differ from scico's DnCNNNet (missing {missing[:3]}, unexpected {extra[:3]})")
    for path, shape in expected.items():
        arr = variables[path]
        if tuple(arr.shape) != shape or arr.dtype != np.float32:
            raise ValueError(f"DnCNN {variant}: {path} is {arr.dtype} {tuple(arr.shape)}, expected float32 {shape}")


def fold_layers(variables: dict[str, np.ndarray], variant: str) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The network as ``[(weight O×I×3×3, bias O or None), ...]`` with BatchNorm folded in.

    ``BN(conv(x, W)) = conv(x, W·s) + (bias − mean·s)`` with ``s = scale/√(var + ε)``; computed in
    float64, returned as float32.
    """
    check_variables(variables, variant)
    v = variant_info(variant)

    def oihw(kernel: np.ndarray) -> np.ndarray:
        return kernel.astype(np.float64).transpose(3, 2, 0, 1)

    layers: list[tuple[np.ndarray, np.ndarray | None]] = [(oihw(variables["params/conv_start/kernel"]), None)]
    for k in range(v.depth - 2):
        bn = f"{_block(k)}/BatchNorm_0"
        scale = variables[f"params/{bn}/scale"].astype(np.float64)
        bias = variables[f"params/{bn}/bias"].astype(np.float64)
        mean = variables[f"batch_stats/{bn}/mean"].astype(np.float64)
        var = variables[f"batch_stats/{bn}/var"].astype(np.float64)
        s = scale / np.sqrt(var + BN_EPS)
        weight = oihw(variables[f"params/{_block(k)}/Conv_0/kernel"]) * s[:, None, None, None]
        layers.append((weight, bias - mean * s))
    layers.append((oihw(variables["params/conv_end/kernel"]), None))
    return [(w.astype(np.float32), None if b is None else b.astype(np.float32)) for w, b in layers]


# ===================================================================================================
# the network (torch)
# ===================================================================================================
@dataclass(frozen=True)
class DnCNN:
    """A loaded DnCNN: folded layers as float32 torch tensors (on the CPU unless moved by :meth:`to`).

    Attributes:
        variant: the :class:`Variant` it is.
        layers: ``(weight O×I×3×3, bias O or None)`` per convolution, first to last.
    """

    variant: Variant
    layers: tuple

    @classmethod
    def from_variables(cls, variables: dict[str, np.ndarray], variant: str) -> DnCNN:
        import torch

        layers = tuple((torch.from_numpy(w), None if b is None else torch.from_numpy(b)) for w, b in fold_layers(variables, variant))
        return cls(variant_info(variant), layers)

    @property
    def device(self) -> str:
        """The torch device the layers are on, e.g. ``"cpu"`` or ``"cuda:0"``."""
        return str(self.layers[0][0].device)

    def to(self, device: str) -> DnCNN:
        """The same network with its layers on ``device`` (itself when they are already there)."""
        if self.device == str(device):
            return self
        layers = tuple((w.to(device), None if b is None else b.to(device)) for w, b in self.layers)
        return DnCNN(self.variant, layers)

    def forward(self, x, padding: str = "circular"):
        """The network on ``x``, float32 torch N×c×H×W on [0, 1] (c = ``variant.channels``).

        Args:
            padding: ``"circular"``, as scico trained it: output N×c×H×W; or ``"valid"``: no
                padding, output N×c×(H − 2·depth)×(W − 2·depth), equal to the circular output
                cropped by ``depth`` on each side (the wrap-around never reaches it) and about
                twice as fast on CPU (no pad copies; channels-last memory).
        """
        import torch
        import torch.nn.functional as F

        if padding == "circular":
            y = x
        elif padding == "valid":
            y = x.contiguous(memory_format=torch.channels_last)
        else:
            raise ValueError(f"padding must be 'circular' or 'valid', got {padding!r}")
        last = len(self.layers) - 1
        for i, (weight, bias) in enumerate(self.layers):
            if padding == "circular":
                y = F.pad(y, (1, 1, 1, 1), mode="circular")
            y = F.conv2d(y, weight, bias)
            if i < last:
                y = F.relu_(y)
        if padding == "valid":
            d = self.variant.depth
            return x[..., d:-d, d:-d] - y
        return x - y


def load_dncnn(path: str | Path, variant: str) -> DnCNN:
    """Reads a converted safetensors file (no pickle) and builds the network.

    Raises:
        WeightsNotFoundError: ``path`` does not exist.
        ValueError: the file is not a DnCNN of ``variant`` (the message names ``path``).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"DnCNN weights file {path} not found")
    try:
        variables = load_file(str(path))
        return DnCNN.from_variables(variables, variant)
    except (SafetensorError, ValueError) as err:
        raise ValueError(f"{path}: not a converted DnCNN {variant}: {err}") from err


#: Core tile side: larger images are denoised in tiles (3 planes × 64 float32 features of a
#: 256² tile with its halo are ~65 MB per layer).
TILE = 256
#: Torch intra-op threads used for DnCNN (at most; fewer when torch is set lower).
MAX_THREADS = 4

_THREADS_LOCK = threading.Lock()


@contextmanager
def bounded_threads(n: int = MAX_THREADS) -> Iterator[None]:
    """Runs the block with at most ``n`` torch threads, one DnCNN call at a time per process."""
    import torch

    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, min(n, before)))
        try:
            yield
        finally:
            torch.set_num_threads(before)


def denoise_planes(model: DnCNN, planes: np.ndarray, sigmas: Sequence[float] | None = None, tile: int | None = None) -> np.ndarray:
    """Denoises grey planes.

    Each plane is reflection-padded by the receptive-field radius (``depth`` pixels) and the
    network runs unpadded (``padding="valid"``), so no circular wrap-around reaches the result;
    tiles carry the same margin, so a tiled result equals the untiled one. The network runs on
    ``model.device``, one tile at a time, so its memory is bounded by ``tile`` whatever the
    image's size (a 24 MP photo on a GPU as on the CPU).

    Args:
        model: a loaded :class:`DnCNN`.
        planes: float32 N×H×W on [0, 1].
        sigmas: noise σ per plane on [0, 1], for σ-input variants only (``None`` for blind ones).
        tile: core tile side in pixels, or ``None`` for the whole plane at once.
    Returns:
        float32 N×H×W (not clipped).
    Raises:
        ValueError: ``sigmas`` given to a blind model, missing for a σ-input one, or of the wrong length.
    """
    import torch

    n, h, w = planes.shape
    if (sigmas is not None) != (model.variant.channels == 2):
        raise ValueError(f"DnCNN {model.variant.name}: sigmas {'required' if model.variant.channels == 2 else 'not accepted'}")
    halo = model.variant.depth
    padded = np.pad(planes.astype(np.float32), ((0, 0), (halo, halo), (halo, halo)), mode="reflect")
    x = torch.from_numpy(padded)[:, None]
    if sigmas is not None:
        if len(sigmas) != n:
            raise ValueError(f"{len(sigmas)} sigmas for {n} planes")
        level = torch.tensor(np.asarray(sigmas, np.float32))[:, None, None, None].expand_as(x)
        x = torch.cat([x, level], dim=1)
    out = np.empty((n, h, w), np.float32)
    step_y, step_x = (tile or h), (tile or w)
    device = model.device
    with torch.inference_mode():
        for y0 in range(0, h, step_y):
            for x0 in range(0, w, step_x):
                y1, x1 = min(y0 + step_y, h), min(x0 + step_x, w)
                patch = x[:, :, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo].to(device)
                out[:, y0:y1, x0:x1] = model.forward(patch, padding="valid")[:, 0].cpu().numpy()
    return out


# ===================================================================================================
# the tool: uint8 RGB in and out
# ===================================================================================================
#: Colour handling. "opponent": CBM3D's opponent transform (Dabov et al., ICIP 2007), each plane
#: denoised with its own σ; "rgb": each channel on its own. Opponent measured 0.5–1.2 dB better
#: (bench/results/tools.md, "DnCNN").
COLOUR_SPACES = ("opponent", "rgb")
COLOUR = "opponent"
#: CBM3D's opponent rows; the offsets keep the chroma planes in [0, 1]. For noise i.i.d. per
#: channel of σ, plane i has σ·‖row_i‖.
OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / 2, 0, -1 / 2], [1 / 4, -1 / 2, 1 / 4]], np.float32)
OPPONENT_OFFSET = np.array([0.0, 0.5, 0.5], np.float32)
#: σ given to σ-input models = SIGMA_SCALE × the estimated σ (classic.estimate_noise_sigma),
#: clipped to the trained range. 1.15 measured 0.2–0.7 dB above 1.0 (and above 1.3 on average).
SIGMA_SCALE = 1.15
SIGMA_MAX = 0.2


def plane_sigmas(img: np.ndarray, colour: str = COLOUR, sigma_scale: float = SIGMA_SCALE) -> list[float]:
    """σ on [0, 1] for each plane of ``img`` (uint8 RGB H×W×3) in ``colour``, clipped to ``[0, SIGMA_MAX]``."""
    sigma = sigma_scale * estimate_noise_sigma(img) / 255.0
    if colour == "opponent":
        norms = np.linalg.norm(OPPONENT, axis=1)
    elif colour == "rgb":
        norms = np.ones(3)
    else:
        raise ValueError(f"colour must be one of {COLOUR_SPACES}, got {colour!r}")
    return [float(min(max(sigma * n, 0.0), SIGMA_MAX)) for n in norms]


def dncnn_denoise(img: np.ndarray, model: DnCNN, colour: str = COLOUR, sigma_scale: float = SIGMA_SCALE, tile: int | None = TILE) -> np.ndarray:
    """Denoises uint8 RGB H×W×3 with ``model``, plane by plane in ``colour``; uint8 RGB out.

    σ-input models get :func:`plane_sigmas`; blind ones ignore ``sigma_scale``.
    """
    x = img.astype(np.float32) / np.float32(255.0)
    if colour == "opponent":
        x = x @ OPPONENT.T + OPPONENT_OFFSET
    elif colour != "rgb":
        raise ValueError(f"colour must be one of {COLOUR_SPACES}, got {colour!r}")
    sigmas = plane_sigmas(img, colour, sigma_scale) if model.variant.channels == 2 else None
    y = denoise_planes(model, np.ascontiguousarray(x.transpose(2, 0, 1)), sigmas, tile).transpose(1, 2, 0)
    if colour == "opponent":
        y = (y - OPPONENT_OFFSET) @ np.linalg.inv(OPPONENT).T
    return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _index() -> dict:
    path = DNCNN_DATA_DIR / DNCNN_INDEX
    return json.loads(path.read_text(encoding="utf-8"))["files"] if path.is_file() else {}


def weight_spec(variant: str) -> WeightSpec:
    """The converted ``variant``: shipped in the package, sha256 from ``weights.json``."""
    name = weights_filename(variant)
    return WeightSpec(
        filename=f"dncnn/{name}",
        source=DNCNN_SOURCE,
        sha256=_index().get(name, {}).get("sha256"),
        licence=DNCNN_LICENCE,
        packaged=DNCNN_DATA_DIR / name,
    )


_CACHE: dict[tuple[str, float, str, str], DnCNN] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(spec: WeightSpec, variant: str, device: str = "cpu") -> DnCNN:
    """Resolves ``spec`` (sha256 checked) and loads it onto ``device`` once per path, mtime and device.

    Raises:
        WeightsNotFoundError: no file, or no sha256 recorded for it (``weights.json`` missing).
        ChecksumError: the file differs from the recorded sha256.
    """
    if spec.sha256 is None:
        raise WeightsNotFoundError(f"no sha256 recorded for {spec.filename} in {DNCNN_DATA_DIR / DNCNN_INDEX}; run `make dncnn-weights`")
    path = resolve_weights(spec)
    key = (str(path.resolve()), path.stat().st_mtime, variant, str(device))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _CACHE[key] = load_dncnn(path, variant).to(device)
    return model


@dataclass(frozen=True)
class DnCNNTool:
    """Catalogue wrapper: ``uint8 RGB H×W×3 -> uint8 RGB H×W×3`` with a shipped variant.

    Attributes:
        variant: the scico variant, e.g. ``"6N"``.
        weights: where its converted file is found.
        colour: see :data:`COLOUR_SPACES`.
        sigma_scale: see :data:`SIGMA_SCALE`.
        threads: at most this many torch threads (on the CPU).

    The device is :func:`restore_r1.tools.neural.default_device` (``$RESTORE_R1_DEVICE``, else
    CUDA when torch sees a GPU, else the CPU), as for the checkpoint tools; a Triton tool model
    on a ``KIND_GPU`` instance sets ``$RESTORE_R1_DEVICE`` to its GPU.
    """

    variant: str
    weights: WeightSpec
    colour: str = COLOUR
    sigma_scale: float = SIGMA_SCALE
    threads: int = MAX_THREADS

    def __call__(self, img: np.ndarray) -> np.ndarray:
        model = cached_model(self.weights, self.variant, default_device())
        with bounded_threads(self.threads):
            return dncnn_denoise(img, model, self.colour, self.sigma_scale)
