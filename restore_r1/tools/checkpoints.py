"""Official checkpoints, loaded as their authors publish them.

A neural tool is a :class:`NeuralModel` entry: the authors' file (name, the page that publishes
it, its sha256 when a published source gives one, its licence), the loader that reads it and the
call the network needs. Three loaders:

* ``"spandrel"``: `spandrel <https://github.com/chaiNNer-org/spandrel>`_ (MIT, a core
  dependency) detects the architecture and its hyper-parameters from the state dict (SwinIR,
  FBCNN, NAFNet, DRUNet, MixDehazeNet, RetinexFormer, ...);
* ``"spandrel_extra"``: the same with ``spandrel_extra_arches`` (Restormer, MPRNet), whose
  architecture code is under non-commercial licences, so it is an opt-in extra
  (``pip install 'restore-r1[noncommercial]'``);
* ``"torchscript"``: a TorchScript export the user makes (:mod:`restore_r1.tools.torchscript`),
  for the networks no loader knows (MAXIM, X-Restormer, DRBNet, IFAN, RIDCP, DehazeFormer).

Files are read without running code: safetensors, or PyTorch files through
``torch.load(weights_only=True)``, whose unpickler refuses any global beyond tensors and plain
containers (a pickle whose ``__reduce__`` would call a function is an error, not a warning).
The authors' wrappers (``{"params": ...}``, ``{"params_ema": ...}``, ``{"state_dict": ...}``, a
``module.`` prefix) are unwrapped by spandrel's canonicalisation.

:func:`verify_checkpoint` checks a file for a tool (sha256 when known, the detected architecture
and variant, a forward pass on a small image) and :func:`install_checkpoint` puts it into the
weights folder of :mod:`restore_r1.weights` atomically; the tool is then available and runs
through the catalogue like any tool (:class:`CheckpointRunner`, with the padding, tiling and
batching of :mod:`restore_r1.tools.neural`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import pickle
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restore_r1.errors import CheckpointError, ChecksumError
from restore_r1.images import atomic_write_bytes
from restore_r1.tools import neural
from restore_r1.weights import WeightSpec, resolve_weights, weights_dir

#: How a neural tool's file is read (module docstring).
LOADERS = ("spandrel", "spandrel_extra", "torchscript")
#: Python modules each loader needs, and the pip extra that brings them (None: a core dependency).
LOADER_MODULES: dict[str, tuple[str, ...]] = {"spandrel": ("spandrel",), "spandrel_extra": ("spandrel", "spandrel_extra_arches"), "torchscript": ()}
LOADER_EXTRAS: dict[str, str | None] = {"spandrel": None, "spandrel_extra": "noncommercial", "torchscript": None}
#: Side of the image :func:`verify_checkpoint` runs the network on (above every minimum side).
SMOKE_SIDE = 64


# ===================================================================================================
# how a network is called
# ===================================================================================================
@dataclass(frozen=True)
class PlainCall:
    """spandrel's own call for the architecture (its descriptor: the final stage of multi-stage
    networks, the range change of MixDehazeNet, the blind quality factor of FBCNN, ...)."""

    def bind(self, descriptor, imgs: Sequence[np.ndarray], device: str) -> Callable:
        """The forward ``float32 N×3×H×W in [0, 1] -> N×3×H×W`` for this batch of ``imgs``."""
        return descriptor

    def describe(self) -> str:
        return "plain (spandrel's call for the architecture)"


@dataclass(frozen=True)
class QualityFactorCall:
    """FBCNN with a fixed JPEG quality factor instead of the predicted one: the authors' flexible
    control, ``model(x, qf_input)`` with ``qf_input = 1 − quality / 100`` (FBCNN's
    main_test_fbcnn_color_real.py)."""

    quality: int

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality factor {self.quality} is not in 1..100")

    def bind(self, descriptor, imgs: Sequence[np.ndarray], device: str) -> Callable:
        import torch

        level = torch.full((len(imgs), 1), 1.0 - self.quality / 100.0, dtype=torch.float32, device=device)

        def forward(x):
            return descriptor.model(x, level[: x.shape[0]])[0]

        return forward

    def describe(self) -> str:
        return f"quality factor {self.quality} (qf_input {1 - self.quality / 100:.2f})"


@dataclass(frozen=True)
class NoiseLevelCall:
    """DRUNet's noise-level map: a fourth input plane filled with σ/255 (DPIR), σ estimated on the
    whole image (:func:`restore_r1.tools.classic.estimate_noise_sigma`) times ``scale``, so that
    every tile of an image gets the same level."""

    scale: float = 1.0

    def bind(self, descriptor, imgs: Sequence[np.ndarray], device: str) -> Callable:
        import torch

        from restore_r1.tools.classic import estimate_noise_sigma

        sigmas = [self.scale * estimate_noise_sigma(img) / 255.0 for img in imgs]
        level = torch.tensor(sigmas, dtype=torch.float32, device=device)[:, None, None, None]

        def forward(x):
            plane = level[: x.shape[0]].expand(x.shape[0], 1, *x.shape[-2:])
            return descriptor.model(torch.cat([x, plane], dim=1))

        return forward

    def describe(self) -> str:
        return f"noise-level map σ/255, σ = {self.scale:g} × the estimated σ"


@dataclass(frozen=True)
class SignedRangeCall:
    """The network works on [-1, 1]: ``model(2x − 1)`` clamped to [-1, 1], then mapped back
    (MixDehazeNet's datasets/loader.py and predict.py, as DehazeFormer's). spandrel 0.4.2's own
    MixDehazeNet call maps the output back but feeds the input on [0, 1]."""

    def bind(self, descriptor, imgs: Sequence[np.ndarray], device: str) -> Callable:
        def forward(x):
            return descriptor.model(x * 2.0 - 1.0).clamp(-1.0, 1.0) * 0.5 + 0.5

        return forward

    def describe(self) -> str:
        return "input and output on [-1, 1] (the authors' predict.py)"


ModelCall = PlainCall | QualityFactorCall | NoiseLevelCall | SignedRangeCall


# ===================================================================================================
# the catalogue entry
# ===================================================================================================
@dataclass(frozen=True)
class NeuralModel:
    """One neural tool: the authors' file and how to run it.

    Attributes:
        name: tool name.
        degradation: the degradation type it targets.
        model: the model and checkpoint, as their authors name them.
        repo: the authors' repository.
        licence: the licence of the code and weights, as the authors publish it.
        loader: one of :data:`LOADERS`.
        file: the authors' file name, as published (for ``"torchscript"``: what to export from).
        url: the page where the authors publish ``file`` (a release or a Google-Drive page).
        sha256: its digest when a published source gives one, else ``None`` (then only the
            architecture and a forward pass are checked).
        architecture: spandrel's architecture id the file must be detected as (spandrel loaders).
        tags: spandrel tags the file must carry (a variant check, e.g. SwinIR's ``s126w7``).
        call: how the network is called (:data:`ModelCall`).
        pad_multiple: the network's stride; inputs are padded to a multiple of it.
        paper: one of the paper's 28 tools (docs/method.md §4); ``False`` for our own entries.
        note: why a paper model is not loadable, or what our entry stands in for.
        folder: sub-folder of the weights folder (the model family; files shared by several
            tools, like FBCNN's, are found once).
    """

    name: str
    degradation: str
    model: str
    repo: str
    licence: str
    loader: str
    file: str
    url: str
    sha256: str | None = None
    architecture: str | None = None
    tags: tuple[str, ...] = ()
    call: ModelCall = field(default_factory=PlainCall)
    pad_multiple: int = 8
    paper: bool = True
    note: str = ""
    folder: str = ""

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise ValueError(f"{self.name}: loader {self.loader!r} not in {LOADERS}")
        if (self.loader == "torchscript") != (self.architecture is None):
            raise ValueError(f"{self.name}: a spandrel loader needs an architecture, the TorchScript one none")
        if self.loader == "torchscript" and not isinstance(self.call, PlainCall):
            raise ValueError(f"{self.name}: a TorchScript export takes the plain call")

    @property
    def weights(self) -> WeightSpec:
        """Where the tool's file is looked for (:mod:`restore_r1.weights`)."""
        if self.loader == "torchscript":
            return WeightSpec(
                filename=f"{self.name}/{self.name}.pt",
                source=f"TorchScript export (float32 RGB N×3×H×W in [0, 1] -> same) of {self.model}, {self.file} from {self.url}",
                sha256=None,
                licence=self.licence,
            )
        return WeightSpec(filename=f"{self.folder or self.name}/{self.file}", source=self.url, sha256=self.sha256, licence=self.licence)

    @property
    def requires(self) -> tuple[str, ...]:
        return LOADER_MODULES[self.loader]

    @property
    def extra(self) -> str | None:
        return LOADER_EXTRAS[self.loader]


# ===================================================================================================
# reading a file without running code
# ===================================================================================================
def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header = int.from_bytes(data[:8], "little")
    return 0 < header <= len(data) - 8 and data[8:9] == b"{"


def _is_torch_file(data: bytes) -> bool:
    # a zip archive (torch.save since 1.6) or a legacy pickle (protocol 2+ starts with 0x80)
    return data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _refused_global(exc: BaseException) -> str:
    """What a refused pickle asked for (``posix.system``), from torch's message."""
    import re

    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else _first_line(exc)


def read_state_dict(data: bytes, name: str) -> dict:
    """The tensors of a checkpoint's bytes: safetensors, or a PyTorch file read with
    ``torch.load(weights_only=True)``, unwrapped by spandrel's canonicalisation.

    Raises:
        CheckpointError: not a checkpoint, a pickle that would run code, a TorchScript archive,
            or no tensors in it. The message starts with ``name``.
    """
    import torch

    if _is_safetensors(data):
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        try:
            obj = load_safetensors(data)
        except SafetensorError as err:
            raise CheckpointError(f"{name}: not a readable safetensors file: {_first_line(err)}") from err
    elif _is_torch_file(data):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TorchScript archive.*")  # refused below, with our message
                obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{name}: refused: the pickle asks for {_refused_global(err)}, which is code, not tensors "
                "(checkpoints are read with torch.load(weights_only=True)); use the authors' file or a safetensors conversion"
            ) from err
        except RuntimeError as err:
            if "TorchScript" in str(err):
                raise CheckpointError(f"{name}: a TorchScript archive, not a checkpoint (an export installs for a TorchScript tool: --tool NAME)") from err
            raise CheckpointError(f"{name}: not a readable PyTorch file: {_first_line(err)}") from err
        except (EOFError, ValueError, OSError) as err:
            raise CheckpointError(f"{name}: not a readable PyTorch file: {_first_line(err)}") from err
    else:
        raise CheckpointError(f"{name}: not a checkpoint (neither a PyTorch file nor safetensors)")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a state dict")
    from spandrel import canonicalize_state_dict

    tensors = {k: v for k, v in canonicalize_state_dict(obj).items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{name}: holds no tensors (keys: {', '.join(map(str, list(obj)[:5]))})")
    return tensors


def extra_arches_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("spandrel_extra_arches") is not None


@functools.cache
def arch_registry():
    """spandrel's registry, plus the extra architectures when their package is installed (a copy:
    spandrel's global registry is left as it is)."""
    from spandrel import MAIN_REGISTRY

    registry = MAIN_REGISTRY.copy()
    if extra_arches_installed():
        from spandrel_extra_arches import EXTRA_REGISTRY

        registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def detect(state_dict: dict, name: str):
    """spandrel's model descriptor for ``state_dict`` (architecture detected, weights loaded, CPU).

    Raises:
        CheckpointError: no architecture recognised, or the recognised one does not load it.
    """
    from spandrel import UnsupportedModelError

    try:
        return arch_registry().load(state_dict)
    except UnsupportedModelError:
        hint = "" if extra_arches_installed() else " (Restormer and MPRNet need the opt-in extra: pip install 'restore-r1[noncommercial]')"
        raise CheckpointError(f"{name}: spandrel recognises no architecture in it{hint}") from None
    except (KeyError, IndexError, RuntimeError, ValueError, TypeError, AssertionError) as err:
        raise CheckpointError(f"{name}: its tensors do not build a network: {_first_line(err)}") from err


def check_matches(descriptor, model: NeuralModel, name: str) -> None:
    """Raises ``CheckpointError`` unless ``descriptor`` is ``model``'s architecture and variant, RGB to RGB at scale 1."""
    arch = descriptor.architecture.id
    if arch != model.architecture:
        raise CheckpointError(f"{name}: a {arch} checkpoint, but tool {model.name} runs {model.architecture} ({model.file})")
    shape = (descriptor.input_channels, descriptor.output_channels, descriptor.scale)
    if shape != (3, 3, 1):
        raise CheckpointError(f"{name}: a {arch} with {shape[0]} input and {shape[1]} output channels at scale {shape[2]}; tools are RGB to RGB at scale 1")
    missing = [t for t in model.tags if t not in descriptor.tags]
    if missing:
        raise CheckpointError(f"{name}: a {arch} {descriptor.tags} without {missing}: not the {model.model} variant ({model.file})")


def load_checkpoint(data: bytes, model: NeuralModel, name: str, device: str = "cpu"):
    """``data`` read, detected and checked against ``model``; the descriptor on ``device`` in eval mode."""
    descriptor = detect(read_state_dict(data, name), name)
    check_matches(descriptor, model, name)
    return descriptor.to(device).eval()


def stride_of(descriptor, model: NeuralModel) -> tuple[int, int]:
    """``(multiple, minimum)`` inputs are padded to: the catalogue's stride and spandrel's size requirements."""
    req = descriptor.size_requirements
    return math.lcm(model.pad_multiple, req.multiple_of), req.minimum


def run_descriptor(descriptor, model: NeuralModel, imgs: Sequence[np.ndarray], device: str, tile: int | None = None) -> list[np.ndarray]:
    """``model``'s network on same-shaped uint8 RGB H×W×3 images; uint8 RGB out."""
    multiple, minimum = stride_of(descriptor, model)
    forward = model.call.bind(descriptor, imgs, device)
    return neural.run_model(forward, imgs, device, multiple, tile, neural.DEFAULT_TILE_OVERLAP, minimum)


_CACHE: dict[tuple[str, float, int, str, str], object] = {}
_LOCK = threading.Lock()


def cached_checkpoint(path: Path, model: NeuralModel, device: str):
    """:func:`load_checkpoint` of ``path``, once per path, mtime, size, tool and device."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime, stat.st_size, model.name, device)
    with _LOCK:
        descriptor = _CACHE.get(key)
        if descriptor is None:
            descriptor = _CACHE[key] = load_checkpoint(path.read_bytes(), model, str(path), device)
    return descriptor


def clear_cache() -> None:
    """Forgets every loaded checkpoint."""
    with _LOCK:
        _CACHE.clear()


@dataclass(frozen=True)
class CheckpointRunner:
    """Catalogue runner of a spandrel-loaded tool: ``uint8 RGB H×W×3 -> uint8 RGB H×W×3``.

    Attributes:
        model: the entry (file, call, stride).
        tile: tile side for images above :data:`restore_r1.tools.neural.TILE_ABOVE_PIXELS`; 0 disables tiling.
    """

    model: NeuralModel
    tile: int = neural.DEFAULT_TILE

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.run_batch([img])[0]

    def run_batch(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-shaped images go through the network together; others one by one."""
        device = neural.default_device()
        descriptor = cached_checkpoint(resolve_weights(self.model.weights), self.model, device)
        multiple = stride_of(descriptor, self.model)[0]
        return neural.run_grouped(imgs, lambda group: run_descriptor(descriptor, self.model, group, device, neural.tile_for(group[0], multiple, self.tile)))


# ===================================================================================================
# verifying and installing a file
# ===================================================================================================
@dataclass(frozen=True)
class VerifiedFile:
    """A file that passed :func:`verify_checkpoint` for a tool.

    Attributes:
        model: the tool's entry.
        data: the bytes that were checked (the ones installed).
        sha256: their digest.
        architecture: what was detected (``"TorchScript"`` for an export).
        checked_sha256: whether the digest was compared with a published one.
    """

    model: NeuralModel
    data: bytes
    sha256: str
    architecture: str
    checked_sha256: bool


def smoke_image() -> np.ndarray:
    """A deterministic uint8 RGB ``SMOKE_SIDE``² test image (smooth ramps and a checker)."""
    y, x = np.mgrid[0:SMOKE_SIDE, 0:SMOKE_SIDE]
    checker = ((y // 8 + x // 8) % 2) * 40
    img = np.stack([x * 3, y * 3, 120 + checker + 0 * x], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _smoke(run: Callable[[list[np.ndarray]], list[np.ndarray]], name: str) -> None:
    img = smoke_image()
    try:
        out = run([img])[0]
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise CheckpointError(f"{name}: the forward pass on a {SMOKE_SIDE}×{SMOKE_SIDE} image failed: {_first_line(err)}") from err
    if out.shape != img.shape or out.dtype != np.uint8:
        raise CheckpointError(f"{name}: the forward pass returned {out.dtype} {out.shape} for uint8 {img.shape}")


def verify_checkpoint(data: bytes, model: NeuralModel, name: str, descriptor=None) -> VerifiedFile:
    """Checks ``data`` (a file's bytes, called ``name`` in messages) for ``model``'s tool: its
    sha256 when a published one is known, the architecture and variant spandrel detects (or that
    it is a TorchScript module), and a forward pass on :func:`smoke_image`. ``descriptor`` is
    spandrel's network already detected in ``data`` (:func:`detect_models`), if any.

    Raises:
        ChecksumError: the digest differs from the published one.
        CheckpointError: anything else (the message says what).
    """
    digest = hashlib.sha256(data).hexdigest()
    if model.sha256 is not None and digest != model.sha256:
        raise ChecksumError(f"{name}: sha256 {digest} differs from the published {model.sha256} of {model.file} ({model.url})")
    if model.loader == "torchscript":
        module = _load_torchscript(data, name)
        _smoke(lambda imgs: neural.run_model(module, imgs, "cpu", model.pad_multiple), name)
        architecture = "TorchScript"
    else:
        if descriptor is None:
            descriptor = detect(read_state_dict(data, name), name)
        check_matches(descriptor, model, name)
        descriptor = descriptor.to("cpu").eval()
        _smoke(lambda imgs: run_descriptor(descriptor, model, imgs, "cpu"), name)
        architecture = descriptor.architecture.id
    return VerifiedFile(model, data, digest, architecture, model.sha256 is not None)


def _load_torchscript(data: bytes, name: str):
    import torch

    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"{name}: not a TorchScript export ({_first_line(err)}); this tool runs a TorchScript module (docs/method.md §4)") from err
    return module.eval()


def read_file(path: str | os.PathLike) -> tuple[bytes, str]:
    """``(bytes, name)`` of a file to verify.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_bytes(), str(path)


def install_checkpoint(verified: VerifiedFile) -> Path:
    """Writes the verified bytes to the tool's place in the weights folder, atomically (a reader
    sees no file or the whole file, never a truncated one); returns the path."""
    target = weights_dir() / verified.model.weights.filename
    return atomic_write_bytes(target, verified.data, overwrite=True)


def detect_models(data: bytes, name: str, models: Sequence[NeuralModel]) -> tuple[object, list[NeuralModel]]:
    """spandrel's network in ``data``, and the entries of ``models`` that run its architecture
    (and variant tags).

    Raises:
        CheckpointError: the file is not a checkpoint, or no entry runs its architecture.
    """
    descriptor = detect(read_state_dict(data, name), name)
    arch = descriptor.architecture.id
    found = [m for m in models if m.architecture == arch and all(t in descriptor.tags for t in m.tags)]
    if not found:
        runs = sorted({m.architecture for m in models if m.architecture})
        raise CheckpointError(f"{name}: a {arch} checkpoint {descriptor.tags}; no tool runs it (tools run {', '.join(runs)})")
    return descriptor, found


def choose_models(candidates: Sequence[NeuralModel], name: str) -> list[NeuralModel]:
    """The entries a file detected as ``candidates`` is for: all of them when they share one file
    (FBCNN's three tools), else those whose official file name has the file's stem.

    Raises:
        CheckpointError: still ambiguous (the message lists the tools; pass one with ``--tool``).
    """
    if len({m.weights.filename for m in candidates}) == 1:
        return list(candidates)
    stem = Path(name).stem  # a safetensors conversion keeps the authors' stem
    named = [m for m in candidates if Path(m.file).stem == stem]
    if named and len({m.weights.filename for m in named}) == 1:
        return named
    raise CheckpointError(f"{name}: fits {', '.join(m.name for m in candidates)}; say which with --tool")


# ===================================================================================================
# the catalogue's Tool
# ===================================================================================================
def neural_tool(model: NeuralModel):
    """The catalogue :class:`~restore_r1.tools.base.Tool` running ``model`` (spandrel or TorchScript)."""
    from restore_r1.tools.base import Tool
    from restore_r1.tools.torchscript import TorchScriptRunner

    description = f"{model.model} ({model.repo})"
    if not model.paper:
        description += f"; ours, not the paper's: {model.note}"
    if model.loader == "torchscript":
        runner = TorchScriptRunner(model.weights, pad_multiple=model.pad_multiple)
        backend = "torchscript"
    else:
        runner = CheckpointRunner(model)
        backend = "spandrel"
    return Tool(
        model.name,
        model.degradation,
        backend,
        model.licence,
        model.paper,
        description,
        fn=runner,
        weights=model.weights,
        requires=model.requires,
        extra=model.extra,
        batch_fn=runner.run_batch,
        model=model,
    )
