"""Triton python-backend models: one per tool, the policy, and the agent (a BLS loop).

Every ``model.py`` in ``triton_models/`` is a shell of three lines::

    import triton_python_backend_utils as pb_utils
    from restore_r1.serving.backend import make_model
    TritonPythonModel = make_model("tool", pb_utils)

so the logic here is tested with a stub of ``triton_python_backend_utils`` (``pb``) passed in.

Tensors (batch dimension first; the client sends one image per request):

* tool ``restore_r1_tool_<name>``: ``IMAGE`` uint8 [B, H, W, 3] -> ``OUTPUT_IMAGE`` uint8 [B, H, W, 3].
* policy ``restore_r1_policy``: ``IMAGE`` uint8 [B, H, W, 3] and ``HISTORY`` int32 [B, 16] (tool
  indices so far, padded with -1) -> ``ACTION`` int32 [B, 1] (K = STOP), ``ACTION_NAME`` bytes
  [B, 1] and ``POLICY_VERSION`` bytes [B, 1] (the model version Triton loaded it as, e.g. ``b"2"``).
  The policy model runs the policy's frozen encoder and the MLP (greedy argmax).
* agent ``restore_r1_agent``: ``IMAGE`` uint8 [B, H, W, 3] and optional ``MAX_STEPS`` int32 [B, 1]
  (0..16) -> ``OUTPUT_IMAGE`` uint8 [B, H, W, 3] and ``TRAJECTORY`` bytes [B, 1], a JSON object
  ``{"tools", "scores", "step_seconds", "seconds", "partial", "failed", "policy_version"}``.

Every decision of an episode comes from one policy version: the first call goes to the latest
version, the others ask for the version that answered it (a new version loaded mid-episode would
read the episode's tool history with other tool indices), and ``policy_version`` says which.

The agent loops policy -> tool -> ... -> STOP with BLS calls and scores each image with the judge
(``restore_r1.judges.create_judge``, in the agent's own process). Each BLS call runs in a worker
thread bounded by ``tool_timeout_s``, so the agent never waits longer for one model.

Faults. When a tool model answers with an error, returns a bad image, does not answer within
``tool_timeout_s`` or is not loaded (unloaded mid-request), or the policy model fails the same
ways, the episode stops at that step:

* if an earlier step succeeded, the answer is **partial**: ``OUTPUT_IMAGE`` is the best image so
  far, the one with the highest judge score among the input and the successful steps' outputs (the
  earliest on ties; it may be the input), ``TRAJECTORY`` has ``"partial": true`` and ``"failed":
  {"step", "tool", "model", "reason", "message"}`` (``tool`` is null when the policy failed), and
  the request counts as ``outcome="partial"`` plus one ``errors_total{reason}``;
* if it was the first step (nothing succeeded), the request ends with an error naming the step,
  the model and the reason tag (``[tool_failed] step 1, tool 'clahe': ...``), as a failure of the
  whole request.

Answers without a fault have ``"partial": false, "failed": null`` and the last image (the policy's
STOP or the step cap), as the in-process :class:`restore_r1.agent.inference.Agent`. Bad input
(wrong dtype or shape, empty, too small or too large images, ``MAX_STEPS`` outside 0..16, no
``IMAGE``) is INVALID_ARG (``[invalid_input]``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.agent.loop import EpisodeState, run_episodes
from restore_r1.agent.plan import STOP
from restore_r1.errors import ImageError, RestoreR1Error
from restore_r1.images import MIN_SIDE, check_rgb
from restore_r1.serving import metrics as m

#: Model names (the contract with the pipeline's export step and the dashboards).
POLICY_MODEL = "restore_r1_policy"
AGENT_MODEL = "restore_r1_agent"
TOOL_MODEL_PREFIX = "restore_r1_tool_"

#: Tensor names.
IMAGE = "IMAGE"
OUTPUT_IMAGE = "OUTPUT_IMAGE"
HISTORY = "HISTORY"
ACTION = "ACTION"
ACTION_NAME = "ACTION_NAME"
POLICY_VERSION = "POLICY_VERSION"
MAX_STEPS = "MAX_STEPS"
TRAJECTORY = "TRAJECTORY"

#: Length of the policy's HISTORY input; a policy with a larger ``max_steps`` is refused at load.
HISTORY_LEN = 16
#: Padding value of HISTORY.
HISTORY_PAD = -1
#: BLS ``model_version`` meaning "the latest loaded version".
LATEST_VERSION = -1
#: Sub-folder of a policy model version holding ``policy.safetensors`` + ``policy.json``
#: (written there by the pipeline's export_serving step).
POLICY_SUBDIR = "policy"

#: Agent parameters (``parameters`` of its config.pbtxt) and their defaults.
PARAM_JUDGE = "judge"
PARAM_TOOL_TIMEOUT = "tool_timeout_s"
PARAM_MAX_PIXELS = "max_pixels"
PARAM_WORKERS = "workers"
#: The served judge unless the config names one: the judges' "default" alias, which
#: restore_r1.judges resolves to its DEFAULT_JUDGE (one name for one thing).
SERVED_JUDGE = "default"
#: Seconds one tool (or policy) call may take before the request fails with ``tool_timeout``.
DEFAULT_TOOL_TIMEOUT_S = 60.0
#: Largest image the agent accepts (16 MP); larger ones get INVALID_ARG.
DEFAULT_MAX_PIXELS = 16 * 1024 * 1024
#: Episodes run concurrently inside one agent instance (one thread each).
DEFAULT_WORKERS = 4
#: Tool model parameter naming its catalogue tool.
PARAM_TOOL = "tool"
#: Parameter of a tool model in the ``--onnx`` GPU repository: the ONNX network model (Triton's
#: onnxruntime backend, ``NETWORK_MODEL_PREFIX`` + tool) that runs the tool's network, called by
#: BLS tile by tile while the tool's own pre- and post-processing stays in the python model.
PARAM_NETWORK_MODEL = "network_model"
PARAM_NETWORK_TILE = "network_tile"
NETWORK_MODEL_PREFIX = "restore_r1_net_"
#: Tile side of a network served by BLS (bounds the GPU memory of one call whatever the photo).
DEFAULT_NETWORK_TILE = 512
#: Parameter of every model: the pixel-library versions the repository was exported with
#: (:func:`restore_r1.versions.format_versions`), checked at load by :func:`check_pixel_versions`.
PARAM_PIXEL_VERSIONS = "pixel_versions"


#: glibc malloc settings of every python-model process (:func:`keep_freed_memory`): arrays up to
#: 32 MiB (glibc's largest ``M_MMAP_THRESHOLD`` on 64-bit) come from the heap, and up to 256 MiB of
#: freed heap stay mapped. With glibc's defaults, a model process that runs only the judge (the
#: agent) or one cheap tool mapped and unmapped its temporaries on every request: 30 000 page
#: faults per 1-MP restore in the agent, about half its judge time on this VM (docs/serving.md).
MALLOC_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
MALLOC_TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
#: ``mallopt`` parameter numbers (glibc ``<malloc.h>``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Environment variables that, when set, override :func:`keep_freed_memory` (glibc reads them).
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory(mmap_threshold: int = MALLOC_MMAP_THRESHOLD_BYTES, trim_threshold: int = MALLOC_TRIM_THRESHOLD_BYTES) -> bool:
    """Makes glibc's malloc keep freed memory for the next request instead of unmapping it.

    A served model allocates the same large temporaries (image-sized float arrays) on every
    request. glibc maps arrays above its mmap threshold fresh each time and trims the heap when
    they are freed, so every request page-faults its working set in again. Fixed thresholds turn
    that off (glibc then also stops adjusting them). Skipped when ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` is set (the operator chose), or off glibc.

    Returns:
        True when both settings were applied.
    """
    import ctypes

    if any(name in os.environ for name in MALLOC_ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def tool_model_name(tool: str) -> str:
    """The Triton model name of catalogue tool ``tool``."""
    return f"{TOOL_MODEL_PREFIX}{tool}"


class ServingError(RestoreR1Error, RuntimeError):
    """A request failed inside the server.

    Attributes:
        reason: one of :data:`restore_r1.serving.metrics.ERROR_REASONS`.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in m.ERROR_REASONS:
            raise ValueError(f"unknown error reason {reason!r}; expected one of {m.ERROR_REASONS}")
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# pure pieces
# --------------------------------------------------------------------------------------------


def config_parameter(model_config: dict, key: str, default: str | None = None) -> str | None:
    """``parameters[key].string_value`` of a parsed model config, or ``default``."""
    params = model_config.get("parameters") or {}
    entry = params.get(key)
    if entry is None:
        return default
    return str(entry.get("string_value", default))


def check_pixel_versions(model_config: dict, pb=None) -> list[str]:
    """Refuses a model whose repository was exported under other pixel-library versions than
    this server's Python runs (its tools would give other bytes than the evaluated ones).

    A config without :data:`PARAM_PIXEL_VERSIONS` is not checked. With
    ``RESTORE_R1_ALLOW_VERSION_MISMATCH=1`` the differences are returned and logged as an error
    (Triton's log through ``pb.Logger`` when there is one, and stderr) instead.

    Raises:
        RuntimeError: the versions differ (the message names each package); the model fails to load.
    """
    import sys

    from restore_r1.versions import check_versions, parse_versions

    text = config_parameter(model_config, PARAM_PIXEL_VERSIONS)
    if not text:
        return []
    diffs = check_versions(parse_versions(text), f"model {model_config.get('name')!r} of this repository")
    if diffs:
        message = f"model {model_config.get('name')!r}: SERVING WITH OTHER PIXEL-LIBRARY VERSIONS THAN EXPORTED ({'; '.join(diffs)}): outputs may differ from the evaluation"
        logger = getattr(pb, "Logger", None)
        if logger is not None and hasattr(logger, "log_error"):
            logger.log_error(message)
        print(message, file=sys.stderr, flush=True)
    return diffs


def validate_image(img: np.ndarray, max_pixels: int, name: str = "IMAGE") -> np.ndarray:
    """Checks a request image: uint8, H×W×3, sides ≥ MIN_SIDE, at most ``max_pixels``.

    Raises:
        ImageError: the message says what is wrong (becomes INVALID_ARG).
    """
    if not isinstance(img, np.ndarray):
        raise ImageError(f"{name}: expected an array, got {type(img).__name__}")
    if img.size == 0:
        raise ImageError(f"{name}: empty image of shape {tuple(img.shape)}")
    if img.ndim == 3 and img.shape[2] == 3 and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"{name}: {img.shape[1]}×{img.shape[0]} has more than {max_pixels} pixels")
    return check_rgb(img, name=name)


def parse_max_steps(caps: np.ndarray, n_images: int) -> list[int]:
    """``MAX_STEPS`` int [B, 1] -> one cap on tool calls per image, each in 0..HISTORY_LEN.

    Raises:
        ImageError: wrong count or a value out of range (becomes INVALID_ARG); the message names
            the bad value.
    """
    values = [int(c) for c in np.asarray(caps).reshape(-1)]
    if len(values) != n_images:
        raise ImageError(f"{MAX_STEPS}: {len(values)} values for {n_images} image(s); send one per image")
    for value in values:
        if not 0 <= value <= HISTORY_LEN:
            raise ImageError(f"{MAX_STEPS} {value} is out of range: expected 0..{HISTORY_LEN} tool calls")
    return values


def encode_history(history: Sequence[int], length: int = HISTORY_LEN) -> np.ndarray:
    """Tool indices -> int32 [length] padded with -1."""
    if len(history) > length:
        raise ValueError(f"history of {len(history)} actions exceeds HISTORY_LEN={length}")
    out = np.full(length, HISTORY_PAD, dtype=np.int32)
    out[: len(history)] = np.asarray(history, dtype=np.int32)
    return out


def decode_history(row: np.ndarray) -> list[int]:
    """int [HISTORY_LEN] padded with -1 -> tool indices (up to the first pad)."""
    out = []
    for v in np.asarray(row).reshape(-1).tolist():
        if v == HISTORY_PAD:
            break
        if v < 0:
            raise ValueError(f"HISTORY holds {v}; indices are >= 0 and padding is {HISTORY_PAD}")
        out.append(int(v))
    return out


@dataclass(frozen=True)
class StepFailure:
    """The failed call that ended an episode early (the ``"failed"`` object of ``TRAJECTORY``).

    Attributes:
        step: 1-based step: step n is the n-th policy decision and the tool call it chose.
        tool: the tool called at that step, or ``None`` when the policy model failed.
        model: the Triton model that failed (a tool model or the policy model).
        reason: one of :data:`restore_r1.serving.metrics.ERROR_REASONS`.
        message: one line saying what went wrong (starts with ``step n, ...``).
    """

    step: int
    tool: str | None
    model: str
    reason: str
    message: str


@dataclass
class Episode:
    """One restore through the agent loop.

    Attributes:
        image: uint8 RGB H×W×3, the answer: the last tool's output (or the input), or, when
            ``failed`` is set, the highest-scoring image of ``scores`` (the earliest on ties).
        tools: tool names in the order applied (successful calls only).
        scores: judge score of the input and after each tool in ``tools``.
        step_seconds: seconds of each decision (the last one is STOP unless capped, or the
            failed step when ``failed`` is set).
        seconds: the whole episode.
        failed: the failure that stopped the episode after at least one successful step, else None.
        policy_version: the policy model version that made the episode's decisions (served
            episodes; None in-process or for a policy model that does not say).
    """

    image: np.ndarray
    tools: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failed: StepFailure | None = None
    policy_version: str | None = None

    @property
    def partial(self) -> bool:
        """Whether the episode was cut short by a failure (the answer is the best image so far)."""
        return self.failed is not None

    def trajectory(self) -> dict[str, Any]:
        """The JSON-able trajectory returned in ``TRAJECTORY``."""
        return {
            "tools": self.tools,
            "scores": self.scores,
            "step_seconds": self.step_seconds,
            "seconds": self.seconds,
            "partial": self.partial,
            "failed": None if self.failed is None else asdict(self.failed),
            "policy_version": self.policy_version,
        }


def _checked_output(tool: str, out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A tool model's output, checked to be uint8 RGB of the input's ``shape``.

    Raises:
        ServingError: ``tool_failed``, naming the model and what is wrong.
    """
    try:
        out = check_rgb(out, name=f"output of tool model {tool_model_name(tool)}")
    except ImageError as exc:
        raise ServingError(m.ERROR_TOOL_FAILED, str(exc)) from None
    if out.shape != shape:
        raise ServingError(m.ERROR_TOOL_FAILED, f"tool model {tool_model_name(tool)} returned shape {out.shape} for {shape}")
    return out


def run_episode(
    image: np.ndarray,
    call_policy: Callable[[np.ndarray, list[int]], tuple[int, str]],
    call_tool: Callable[[str, np.ndarray], np.ndarray],
    score: Callable[[np.ndarray], float],
    max_steps: int,
    on_step: Callable[[str, float], None] | None = None,
) -> Episode:
    """One served episode: policy -> tool -> ... until STOP or ``max_steps`` tool calls.

    This is the agent layer's one loop (:func:`restore_r1.agent.loop.run_episodes`, which
    training and evaluation run too) with these callers injected and :class:`ServingError` as
    its failure. A :class:`ServingError` of ``call_policy`` or ``call_tool`` (or a bad tool output) after at
    least one successful tool call ends the episode early with ``failed`` set and, as its image,
    the best image so far: the highest judge score among the input and each successful step's
    output, the earliest on ties (a later tool may have made things worse, and the failure says
    nothing about the last good step being the best).

    Args:
        image: uint8 RGB H×W×3 (validated by the caller).
        call_policy: (image, history of tool indices) -> (action index, action name or "STOP").
        call_tool: (tool name, image) -> the tool's output image.
        score: judge score of one image (higher is better).
        max_steps: cap on tool calls (the policy also stops at its own ``max_steps``).
        on_step: called with (action name, seconds) after each successful decision.

    Raises:
        ServingError: the first step failed, so there is nothing to answer with (``reason`` says
            which way; the message starts with ``step 1, ...``).
    """

    def on_failure(ep: EpisodeState, step: int, name: str | None, exc: BaseException) -> StepFailure:
        where = f"tool {name!r}" if name is not None else "policy"
        failure = StepFailure(step, name, tool_model_name(name) if name is not None else POLICY_MODEL, exc.reason, f"step {step}, {where}: {exc}")
        if not ep.tools:
            raise ServingError(exc.reason, failure.message) from None
        return failure

    start = time.perf_counter()
    (done,) = run_episodes(
        [image],
        [max_steps],
        decide=lambda running: [call_policy(ep.image, ep.actions) for ep in running],
        call_tool=lambda ep, name: (_checked_output(name, call_tool(name, ep.image), ep.image.shape), None),
        score=lambda episodes: [float(score(ep.image)) for ep in episodes],
        failures=(ServingError,),
        on_failure=on_failure,
        on_step=None if on_step is None else lambda ep, name, seconds: on_step(name, seconds),
    )
    return Episode(
        image=done.image, tools=done.tools, scores=done.scores, step_seconds=done.step_seconds, seconds=time.perf_counter() - start, failed=done.failure
    )


# --------------------------------------------------------------------------------------------
# helpers over pb_utils
# --------------------------------------------------------------------------------------------


def _error_response(pb, exc: BaseException, invalid: bool):
    code = pb.TritonError.INVALID_ARG if invalid else pb.TritonError.INTERNAL
    message = " ".join(str(exc).split()) or type(exc).__name__
    return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message, code))


def _input(pb, request, name: str, required: bool = True) -> np.ndarray | None:
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise ImageError(f"input {name} is missing")
        return None
    return tensor.as_numpy()


def _text(tensor: np.ndarray) -> str:
    """The first element of a BYTES tensor as text."""
    raw = np.asarray(tensor).reshape(-1)[0]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _parse_config(args: dict) -> dict:
    return json.loads(args["model_config"])


# --------------------------------------------------------------------------------------------
# tool model
# --------------------------------------------------------------------------------------------


def instance_device(args: dict, neural: bool, env: dict | None = None) -> str | None:
    """The torch device of a neural tool's model instance: ``cuda:<id>`` on a ``KIND_GPU``
    instance, written to ``$RESTORE_R1_DEVICE`` of this model process (one stub process per
    instance) unless it is set already; None for classical tools and CPU instances."""
    from restore_r1.tools.neural import DEVICE_ENV

    env = os.environ if env is None else env
    if not neural or str(args.get("model_instance_kind", "")).upper() != "GPU":
        return None
    return env.setdefault(DEVICE_ENV, f"cuda:{args.get('model_instance_device_id', 0)}")


class BlsNetwork:
    """A tool's network served as its own Triton model (the ONNX export on the onnxruntime
    backend), called by BLS with the interface of :class:`restore_r1.tools.dncnn.DnCNN`:
    ``forward`` takes and returns float32 torch N×c×H×W tensors."""

    device = "cpu"

    def __init__(self, pb, model: str, variant: str) -> None:
        from restore_r1.tools.dncnn import variant_info

        self.pb, self.model, self.variant = pb, model, variant_info(variant)

    def to(self, device: str) -> BlsNetwork:
        return self

    def forward(self, x, padding: str = "valid"):
        import torch

        from restore_r1.tools.onnx_export import INPUT_NAME, OUTPUT_NAME

        if padding != "valid":
            raise ValueError(f"the served network holds the 'valid' network only, got padding={padding!r}")
        request = self.pb.InferenceRequest(
            model_name=self.model, requested_output_names=[OUTPUT_NAME], inputs=[self.pb.Tensor(INPUT_NAME, np.ascontiguousarray(x.numpy(), np.float32))]
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"network model {self.model} failed: {' '.join(response.error().message().split())}")
        return torch.from_numpy(np.array(self.pb.get_output_tensor_by_name(response, OUTPUT_NAME).as_numpy()))


def network_runner(tool, network, tile: int):
    """``run_batch`` of a DnCNN ``tool`` whose network is ``network`` (e.g. :class:`BlsNetwork`):
    the tool's own colour transform, σ estimate and padding, the network tile by tile.

    Raises:
        ValueError: the tool has no exportable network.
    """
    from restore_r1.tools.dncnn import dncnn_denoise
    from restore_r1.tools.onnx_export import exportable

    exportable(tool.name)
    fn = tool.fn
    return lambda imgs: [dncnn_denoise(img, network, fn.colour, fn.sigma_scale, tile=tile) for img in imgs]


class ToolModel:
    """A catalogue tool as a batched model; ``parameters { key: "tool" }`` names the tool. A
    neural tool on a GPU instance runs on that GPU (:func:`instance_device`), in tiles of bounded
    size (``tools/neural.py``, ``tools/dncnn.py``), so a large photo cannot exhaust its memory."""

    pb: Any = None

    def initialize(self, args: dict) -> None:
        from restore_r1.errors import UnavailableError
        from restore_r1.tools import get_tool

        config = _parse_config(args)
        check_pixel_versions(config, self.pb)
        keep_freed_memory()
        name = config_parameter(config, PARAM_TOOL)
        if not name:
            raise ValueError(f"model {config.get('name')!r}: parameter {PARAM_TOOL!r} is missing")
        self.tool = get_tool(name)
        self.device = instance_device(args, self.tool.neural)
        ok, reason = self.tool.availability()
        if not ok:
            raise UnavailableError(f"tool {name!r} is unavailable here: {reason}")
        self.run_batch = self.tool.run_batch
        network = config_parameter(config, PARAM_NETWORK_MODEL)
        if network:
            tile = int(config_parameter(config, PARAM_NETWORK_TILE, str(DEFAULT_NETWORK_TILE)))
            self.run_batch = network_runner(self.tool, BlsNetwork(self.pb, network, self.tool.fn.variant), tile)

    def execute(self, requests: list) -> list:
        pb = self.pb
        responses = []
        for request in requests:
            try:
                batch = _input(pb, request, IMAGE)
                if batch.ndim != 4:
                    raise ImageError(f"{IMAGE}: expected [B, H, W, 3], got shape {batch.shape}")
                imgs = [check_rgb(img, name=f"{IMAGE}[{i}]") for i, img in enumerate(batch)]
                out = np.stack(self.run_batch(imgs)) if imgs else batch
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(OUTPUT_IMAGE, np.ascontiguousarray(out))]))
            except (ImageError, ValueError) as exc:
                responses.append(_error_response(pb, exc, invalid=True))
            except Exception as exc:  # Triton edge: any failure becomes this request's error
                responses.append(_error_response(pb, exc, invalid=False))
        return responses

    def finalize(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# policy model
# --------------------------------------------------------------------------------------------


def policy_folder(model_dir: str | os.PathLike, version: str | int) -> Path:
    """``<model_dir>/<version>/policy`` when it holds a policy, else the library's resolution
    (``$RESTORE_R1_POLICY``, then the packaged default)."""
    from restore_r1.agent.policy import CONFIG_FILE
    from restore_r1.registry import local_policy

    exported = Path(model_dir) / str(version) / POLICY_SUBDIR
    if (exported / CONFIG_FILE).is_file():
        return exported
    return local_policy(None)


def load_policy_with_encoder(folder: str | os.PathLike):
    """(policy, encoder) of a checkpoint folder, as :meth:`restore_r1.agent.inference.Agent.load`."""
    from restore_r1.agent.policy import load_policy
    from restore_r1.encoders import create_encoder

    policy = load_policy(folder)
    if policy.config.max_steps > HISTORY_LEN:
        raise ValueError(f"policy max_steps {policy.config.max_steps} exceeds the served HISTORY_LEN={HISTORY_LEN}")
    config = dict(policy.config.encoder_config)
    name = config.pop("name", policy.config.encoder_name)
    return policy, create_encoder(name, **config)


class PolicyModel:
    """The policy: encoder features of each image + the MLP, greedy action per row."""

    pb: Any = None

    def initialize(self, args: dict) -> None:
        check_pixel_versions(_parse_config(args), self.pb)
        keep_freed_memory()
        folder = policy_folder(args["model_repository"], args["model_version"])
        self.policy, self.encoder = load_policy_with_encoder(folder)
        self.folder = folder
        # Answers say which policy served them: the version folder Triton loaded this one from.
        self.version = str(args["model_version"])

    def act(self, images: list[np.ndarray], histories: list[list[int]]) -> tuple[np.ndarray, list[str]]:
        """Greedy actions (int32 [N]) and their names for N images (one encoder batch)."""
        import torch

        feats = np.asarray(self.encoder.encode(images), dtype=np.float32)
        with torch.no_grad():
            actions, _ = self.policy.act(feats, histories, greedy=True)
        actions = actions.numpy().astype(np.int32)
        return actions, [self.policy.config.action_name(int(a)) for a in actions]

    def execute(self, requests: list) -> list:
        pb = self.pb
        responses: list = [None] * len(requests)
        parsed = []  # (request index, images, histories)
        for i, request in enumerate(requests):
            try:
                batch = _input(pb, request, IMAGE)
                hist = _input(pb, request, HISTORY)
                if batch.ndim != 4 or hist.ndim != 2 or hist.shape[0] != batch.shape[0]:
                    raise ImageError(f"{IMAGE} {batch.shape} and {HISTORY} {hist.shape}: expected [B, H, W, 3] and [B, {HISTORY_LEN}]")
                imgs = [check_rgb(img, name=f"{IMAGE}[{j}]") for j, img in enumerate(batch)]
                histories = [decode_history(row) for row in hist]
                for h in histories:
                    if any(a >= self.policy.config.num_tools for a in h):
                        raise ValueError(f"{HISTORY} {h} has indices beyond the policy's {self.policy.config.num_tools} tools")
                parsed.append((i, imgs, histories))
            except (ImageError, ValueError) as exc:
                responses[i] = _error_response(pb, exc, invalid=True)
        if parsed:
            try:
                # One encoder and one MLP batch over every request Triton grouped together.
                actions, names = self.act([im for _, ims, _ in parsed for im in ims], [h for _, _, hs in parsed for h in hs])
            except Exception as exc:  # Triton edge
                for i, _, _ in parsed:
                    responses[i] = _error_response(pb, exc, invalid=isinstance(exc, ValueError))
            else:
                pos = 0
                for i, imgs, _ in parsed:
                    n = len(imgs)
                    responses[i] = pb.InferenceResponse(
                        output_tensors=[
                            pb.Tensor(ACTION, actions[pos : pos + n].reshape(n, 1)),
                            pb.Tensor(ACTION_NAME, np.array([[s.encode()] for s in names[pos : pos + n]], dtype=np.object_).reshape(n, 1)),
                            pb.Tensor(POLICY_VERSION, np.array([[self.version.encode()]] * n, dtype=np.object_)),
                        ]
                    )
                    pos += n
        return responses

    def finalize(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# agent (BLS)
# --------------------------------------------------------------------------------------------


class AgentMetrics:
    """The agent metrics of :mod:`restore_r1.serving.metrics` on ``pb.MetricFamily``.

    Does nothing when the backend has no custom-metrics API.
    """

    def __init__(self, pb) -> None:
        self.enabled = hasattr(pb, "MetricFamily")
        self._families: dict[str, Any] = {}
        self._metrics: dict[tuple, Any] = {}
        self._specs = {s.name: s for s in m.AGENT_METRICS}
        if not self.enabled:
            return
        kinds = {m.COUNTER: pb.MetricFamily.COUNTER, m.HISTOGRAM: pb.MetricFamily.HISTOGRAM}
        for spec in m.AGENT_METRICS:
            self._families[spec.name] = pb.MetricFamily(name=spec.name, description=spec.description, kind=kinds[spec.kind])
        for name, (label, values) in m.INITIAL_SERIES.items():
            for value in values:
                self._metric(name, {label: value})

    def _metric(self, name: str, labels: dict[str, str]):
        key = (name, tuple(sorted(labels.items())))
        metric = self._metrics.get(key)
        if metric is None:
            spec = self._specs[name]
            if spec.kind == m.HISTOGRAM:
                metric = self._families[name].Metric(labels=labels, buckets=list(spec.buckets))
            else:
                metric = self._families[name].Metric(labels=labels)
            self._metrics[key] = metric
        return metric

    def increment(self, name: str, value: float = 1.0, **labels: str) -> None:
        if self.enabled:
            self._metric(name, labels).increment(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        if self.enabled:
            self._metric(name, labels).observe(value)

    def close(self) -> None:
        # Metrics must go before their families (python backend rule).
        self._metrics.clear()
        self._families.clear()


class MetricEvents:
    """Metric updates of one request, buffered by its worker thread and replayed in one thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float, dict[str, str]]] = []

    def increment(self, name: str, value: float = 1.0, **labels: str) -> None:
        self.events.append(("increment", name, value, labels))

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.events.append(("observe", name, value, labels))

    def replay(self, metrics: AgentMetrics) -> None:
        for method, name, value, labels in self.events:
            getattr(metrics, method)(name, value, **labels)


class AgentModel:
    """The agent: a BLS loop over the policy and tool models, scored by the judge."""

    pb: Any = None

    def initialize(self, args: dict) -> None:
        from restore_r1.judges import create_judge

        config = _parse_config(args)
        check_pixel_versions(config, self.pb)
        keep_freed_memory()
        self.judge_name = config_parameter(config, PARAM_JUDGE, SERVED_JUDGE)
        self.tool_timeout_s = float(config_parameter(config, PARAM_TOOL_TIMEOUT, str(DEFAULT_TOOL_TIMEOUT_S)))
        self.max_pixels = int(config_parameter(config, PARAM_MAX_PIXELS, str(DEFAULT_MAX_PIXELS)))
        workers = int(config_parameter(config, PARAM_WORKERS, str(DEFAULT_WORKERS)))
        if self.tool_timeout_s <= 0 or self.max_pixels < MIN_SIDE * MIN_SIDE or workers < 1:
            raise ValueError(
                f"agent parameters: {PARAM_TOOL_TIMEOUT}={self.tool_timeout_s} must be > 0, "
                f"{PARAM_MAX_PIXELS}={self.max_pixels} >= {MIN_SIDE * MIN_SIDE}, {PARAM_WORKERS}={workers} >= 1"
            )
        self.judge = create_judge(self.judge_name)
        # Episodes of one batch run side by side; BLS calls run on a second pool so a call that
        # never returns is abandoned after tool_timeout_s instead of blocking its episode.
        self.episodes = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="episode")
        self.calls = ThreadPoolExecutor(max_workers=2 * workers, thread_name_prefix="bls")
        # Triton 2.51's python stub crashed (boost lock_exception, SIGSEGV) when several threads
        # of one model ran BLS exec() at once with 256-512² images: one BLS call at a time per
        # instance. Episodes still overlap their judge and bookkeeping, and several agent
        # instances (instance_group count) call the policy/tool models side by side.
        self.bls_lock = threading.Lock()
        self.metrics = AgentMetrics(self.pb)

    # -- BLS calls ---------------------------------------------------------------------------
    def _bls(
        self, model: str, inputs: list, outputs: list[str], reason: str, optional: Sequence[str] = (), version: int = LATEST_VERSION
    ) -> list[np.ndarray | None]:
        """One BLS call to ``version`` of ``model`` (default: the latest loaded) bounded by
        ``tool_timeout_s``; the outputs as arrays (None for a missing one of ``optional``).

        Raises:
            ServingError: ``reason`` when the model answers with an error (a model that is not
                loaded, e.g. unloaded mid-request, answers so too), raises or lacks an output;
                ``tool_timeout`` (or ``reason`` for the policy) when it does not answer in time.
        """
        pb = self.pb
        kwargs = {} if version == LATEST_VERSION else {"model_version": version}
        request = pb.InferenceRequest(model_name=model, requested_output_names=outputs, inputs=inputs, **kwargs)

        def call():
            with self.bls_lock:
                return request.exec()

        future = self.calls.submit(call)
        try:
            response = future.result(timeout=self.tool_timeout_s)
        except FutureTimeout:
            raise ServingError(
                m.ERROR_TOOL_TIMEOUT if reason == m.ERROR_TOOL_FAILED else reason, f"model {model} did not answer within {self.tool_timeout_s:g} s"
            ) from None
        except Exception as exc:  # Triton edge: exec() itself raised (e.g. the stub lost the model)
            raise ServingError(reason, f"model {model} raised {type(exc).__name__}: {' '.join(str(exc).split())}") from None
        if response.has_error():
            raise ServingError(reason, f"model {model} failed: {' '.join(response.error().message().split())}")
        out = []
        for name in outputs:
            tensor = pb.get_output_tensor_by_name(response, name)
            if tensor is None and name not in optional:
                raise ServingError(reason, f"model {model} returned no {name}")
            out.append(None if tensor is None else tensor.as_numpy())
        return out

    def call_policy(self, image: np.ndarray, history: list[int], version: str | None = None) -> tuple[int, str, str | None]:
        """(action index, action name, policy model version) for ``image`` after ``history``, from
        ``version`` of the policy model (None: the latest). The version answered is None for a
        policy model that does not return one (exported before it did)."""
        pb = self.pb
        action, name, version = self._bls(
            POLICY_MODEL,
            [pb.Tensor(IMAGE, image[None]), pb.Tensor(HISTORY, encode_history(history)[None])],
            [ACTION, ACTION_NAME, POLICY_VERSION],
            m.ERROR_POLICY_FAILED,
            optional=(POLICY_VERSION,),
            version=LATEST_VERSION if version is None else int(version),
        )
        return int(action.reshape(-1)[0]), _text(name), None if version is None else _text(version)

    def call_tool(self, tool: str, image: np.ndarray) -> np.ndarray:
        pb = self.pb
        (out,) = self._bls(tool_model_name(tool), [pb.Tensor(IMAGE, image[None])], [OUTPUT_IMAGE], m.ERROR_TOOL_FAILED)
        return out[0]

    def score(self, image: np.ndarray, start: np.ndarray | None = None) -> float:
        """Judge score of ``image``; a relative judge scores it against the request's ``start`` image."""
        from restore_r1.judges.relative import score_images

        return score_images(self.judge, [image], [image if start is None else start])[0]

    # -- requests ----------------------------------------------------------------------------
    def _episode(self, image: np.ndarray, max_steps: int, events: MetricEvents) -> Episode:
        def on_step(name: str, seconds: float) -> None:
            events.observe(m.STEP_LATENCY_SECONDS, seconds, tool=name)
            if name != STOP:
                events.increment(m.TOOL_CALLS_TOTAL, tool=name)

        pinned: list[str | None] = []  # the version of the episode's first decision

        def decide(img: np.ndarray, history: list[int]) -> tuple[int, str]:
            action, name, version = self.call_policy(img, history, pinned[0] if pinned else None)
            if not pinned:
                pinned.append(version)
            return action, name

        ep = run_episode(image, decide, self.call_tool, lambda im: self.score(im, image), max_steps, on_step)
        ep.policy_version = pinned[0] if pinned else None
        return ep

    def _one(self, request) -> tuple[Any, MetricEvents]:
        events = MetricEvents()
        return self._respond(request, events), events

    def _respond(self, request, events: MetricEvents) -> Any:
        """One request's response: the images and trajectories (partial when an episode failed
        after a step), or an error (bad input; a failure at the first step; a bug)."""
        pb = self.pb
        start = time.perf_counter()
        try:
            try:
                batch = _input(pb, request, IMAGE)
                caps = _input(pb, request, MAX_STEPS, required=False)
                if batch.dtype != np.uint8:
                    raise ImageError(f"{IMAGE}: expected uint8 pixels, got {batch.dtype} of shape {batch.shape}; send decoded RGB, not file bytes")
                if batch.ndim != 4:
                    raise ImageError(f"{IMAGE}: expected [B, H, W, 3], got shape {batch.shape}")
                if batch.shape[0] == 0:
                    raise ImageError(f"{IMAGE}: empty batch")
                imgs = [validate_image(img, self.max_pixels, name=f"{IMAGE}[{i}]") for i, img in enumerate(batch)]
                limits = [HISTORY_LEN] * len(imgs) if caps is None else parse_max_steps(caps, len(imgs))
            except (ImageError, ValueError) as exc:
                raise ServingError(m.ERROR_INVALID_INPUT, str(exc)) from None
            episodes = [self._episode(img, cap, events) for img, cap in zip(imgs, limits)]
        except ServingError as exc:
            events.increment(m.ERRORS_TOTAL, reason=exc.reason)
            events.increment(m.REQUESTS_TOTAL, outcome=m.OUTCOME_ERROR)
            return _error_response(pb, f"[{exc.reason}] {exc}", invalid=exc.reason == m.ERROR_INVALID_INPUT)
        except Exception as exc:  # Triton edge: a bug must not take the server down
            events.increment(m.ERRORS_TOTAL, reason=m.ERROR_INTERNAL)
            events.increment(m.REQUESTS_TOTAL, outcome=m.OUTCOME_ERROR)
            return _error_response(pb, f"[{m.ERROR_INTERNAL}] {type(exc).__name__}: {exc}", invalid=False)
        for ep in episodes:
            events.observe(m.STEPS, len(ep.tools))
            events.observe(m.JUDGE_GAIN, (max(ep.scores) if ep.partial else ep.scores[-1]) - ep.scores[0])
            if ep.failed is not None:
                events.increment(m.ERRORS_TOTAL, reason=ep.failed.reason)
        events.increment(m.REQUESTS_TOTAL, outcome=m.OUTCOME_PARTIAL if any(ep.partial for ep in episodes) else m.OUTCOME_OK)
        events.observe(m.REQUEST_LATENCY_SECONDS, time.perf_counter() - start)
        trajectories = np.array([[json.dumps(ep.trajectory()).encode()] for ep in episodes], dtype=np.object_)
        return pb.InferenceResponse(
            output_tensors=[
                pb.Tensor(OUTPUT_IMAGE, np.ascontiguousarray(np.stack([ep.image for ep in episodes]))),
                pb.Tensor(TRAJECTORY, trajectories),
            ]
        )

    def execute(self, requests: list) -> list:
        # The requests Triton grouped run side by side, so their policy and tool calls reach
        # those models together and are batched there by the dynamic batcher.
        results = list(self.episodes.map(self._one, requests))
        # Metrics are recorded here, in the thread Triton called execute from: the 2.51 stub's
        # metric calls are not safe from several threads at once.
        for _, events in results:
            events.replay(self.metrics)
        return [response for response, _ in results]

    def finalize(self) -> None:
        self.episodes.shutdown(wait=False, cancel_futures=True)
        self.calls.shutdown(wait=False, cancel_futures=True)
        self.metrics.close()


#: Model kinds of :func:`make_model`.
MODEL_CLASSES: dict[str, type] = {"tool": ToolModel, "policy": PolicyModel, "agent": AgentModel}


def make_model(kind: str, pb) -> type:
    """The ``TritonPythonModel`` class of a ``model.py``: the model ``kind`` bound to ``pb``.

    Args:
        kind: ``"tool"``, ``"policy"`` or ``"agent"``.
        pb: the ``triton_python_backend_utils`` module (or a stub in tests).
    """
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_CLASSES)}")
    return type("TritonPythonModel", (MODEL_CLASSES[kind],), {"pb": pb})
