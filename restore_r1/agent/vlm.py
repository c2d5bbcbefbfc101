"""The second planner kind: a vision-language model that looks at the photo and writes its tool plan.

Any model that transformers' ``AutoModelForImageTextToText`` and ``AutoProcessor`` load from a
folder (Qwen2-VL / Qwen2.5-VL, SmolVLM, Idefics3, LLaVA, ...) can plan. It is prompted with the
image and the tool list (names, one-line catalogue descriptions: :func:`restore_r1.agent.plan.build_prompt`)
and answers with a plan, ``"nlm_denoise, clahe, STOP"``, parsed strictly
(:func:`restore_r1.agent.plan.parse_plan`): a malformed answer raises, it is never replaced by a
default plan. Unlike the MLP policy, which decides one step at a time, the plan is written once,
from the input image, and then applied (:func:`restore_r1.agent.env.apply_plans`).

Weights come from an explicit folder or ``$RESTORE_R1_VLM_MODEL`` (a registry URI is pulled by
:func:`restore_r1.registry.local_vlm_model` first); nothing is
downloaded, and a missing folder is an error naming it (:func:`resolve_vlm_model`). Training is
:mod:`restore_r1.agent.vlm_trainer` (TRL's GRPOTrainer); docs/vlm.md says what was tested.

A trained planner is a folder: the model's and the processor's own files (``save_pretrained``) and
``planner.json`` (format version, kind, :class:`VLMPlannerConfig`, and the sha256 of every other
file, checked on load).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.agent.plan import build_prompt, check_tool_names, parse_plan
from restore_r1.errors import ChecksumError, UnavailableError, WeightsNotFoundError
from restore_r1.images import atomic_directory, check_rgb, sha256_file
from restore_r1.weights import REGISTRY_SCHEMES, resolve_model_dir

#: Version of the planner folder layout written by :func:`save_vlm_planner`.
VLM_PLANNER_FORMAT_VERSION = 1
#: The file that makes a folder a VLM planner (beside the model's and processor's files).
PLANNER_FILE = "planner.json"
#: ``kind`` in ``planner.json``, and the registry format of a planner folder.
VLM_PLANNER_KIND = "restore_r1.vlm_planner"
#: Environment variable naming the base model folder (or registry URI) to train from.
VLM_MODEL_ENV = "RESTORE_R1_VLM_MODEL"
#: How to supply a model, for the errors that say one is missing.
VLM_HOW_TO = (
    "download a transformers vision-language model folder (config.json, weights, processor files) on a machine "
    "with network and pass its path, or publish it with `restore-r1 registry publish-vlm DIR --name NAME` and "
    "pass registry://NAME@REF (docs/vlm.md)"
)
#: Tokens a plan may take: 5 tool names of up to ~8 tokens each, the commas and STOP.
DEFAULT_MAX_NEW_TOKENS = 48
#: torch dtypes by name.
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class VLMPlannerConfig:
    """What a VLM planner needs beside its weights.

    Attributes:
        tool_names: the tools a plan may call (catalogue names).
        max_steps: the most tools a plan may call.
        prompt: the instruction shown with the image; ``""`` builds it from the catalogue
            (:func:`~restore_r1.agent.plan.build_prompt`). Stored, so a planner is prompted at
            inference exactly as it was trained even if a description changes later.
        max_new_tokens: generation budget of an answer.
        base_model: where the weights came from (a folder or registry URI), for the record.
        extra: free-form JSON metadata (the trainer records the judge and its settings here).
    """

    tool_names: list[str]
    max_steps: int = 5
    prompt: str = ""
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    base_model: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tool_names = check_tool_names(self.tool_names)
        if self.max_steps < 1:
            raise ValueError(f"VLMPlannerConfig.max_steps must be >= 1, got {self.max_steps}")
        if self.max_new_tokens < 1:
            raise ValueError(f"VLMPlannerConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.prompt:
            self.prompt = build_prompt(self.tool_names, self.max_steps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VLMPlannerConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown VLMPlannerConfig fields {unknown}")
        return cls(**data)


def prompt_messages(prompt: str) -> list[dict]:
    """The conversation a planner is given, before the image goes in: one user turn.

    This is also the ``prompt`` column of the training data; TRL puts the image in front of the
    text of the first user turn, as :func:`image_messages` does here.
    """
    return [{"role": "user", "content": prompt}]


def image_messages(prompt: str, image) -> list[dict]:
    """The conversation with the image: ``[{"type": "image", ...}, {"type": "text", ...}]``."""
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]


def to_pil(img: np.ndarray):
    """uint8 RGB H×W×3 -> PIL RGB image (what processors take)."""
    from PIL import Image

    return Image.fromarray(check_rgb(img, name="planner input"), mode="RGB")


def torch_dtype(name: str):
    """The torch dtype called ``name`` (one of :data:`DTYPES`)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} must be one of {', '.join(DTYPES)}")
    return getattr(torch, name)


class VLMPlanner:
    """A vision-language model that writes tool plans; greedy decoding, so a plan is deterministic.

    Args:
        model: an ``AutoModelForImageTextToText`` model (eval mode is set here).
        processor: its ``AutoProcessor`` (tokenizer, image processor, chat template).
        config: tools, prompt, limits.
        folder: where it was loaded from, if anywhere.
    """

    kind = "vlm"

    def __init__(self, model, processor, config: VLMPlannerConfig, folder: Path | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.config = config
        self.folder = folder

    @property
    def device(self):
        return next(self.model.parameters()).device

    def answer(self, img: np.ndarray) -> str:
        """The model's greedy answer for one uint8 RGB H×W×3 image (not parsed)."""
        import torch

        inputs = self.processor.apply_chat_template(
            image_messages(self.config.prompt, to_pil(img)), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self._greedy_config())
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]

    def plan(self, img: np.ndarray) -> tuple[str, ...]:
        """The tools to apply to ``img``, in order.

        Raises:
            PlanParseError: the model's answer is not a plan (the error quotes it).
        """
        return parse_plan(self.answer(img), self.config.tool_names, self.config.max_steps)

    def _greedy_config(self):
        """The model's generation config with sampling switched off (a model folder may ship
        sampling defaults such as temperature or top_p)."""
        gen = copy.deepcopy(self.model.generation_config)
        gen.do_sample = False
        gen.temperature = gen.top_p = gen.top_k = None
        gen.num_beams = 1
        gen.max_new_tokens = self.config.max_new_tokens
        if gen.pad_token_id is None:
            tokenizer = getattr(self.processor, "tokenizer", self.processor)
            gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return gen


# --------------------------------------------------------------------------------- base models
def resolve_vlm_model(spec: str | os.PathLike | None = None) -> Path:
    """The local folder of a transformers VLM: ``spec`` or ``$RESTORE_R1_VLM_MODEL`` (a registry
    URI goes through :func:`restore_r1.registry.local_vlm_model` first).

    Raises:
        WeightsNotFoundError: nothing given, or the folder or its config.json is missing; the
            message names the path and how to supply a model.
    """
    raw = str(spec) if spec else os.environ.get(VLM_MODEL_ENV, "")
    if raw.startswith(REGISTRY_SCHEMES):  # resolved a layer up: restore_r1.registry.local_vlm_model
        raise WeightsNotFoundError(f"VLM model {raw} is a registry URI: resolve it with restore_r1.registry.local_vlm_model first (restore-r1 commands do)")
    return resolve_model_dir(raw, VLM_MODEL_ENV, "VLM planner", VLM_HOW_TO)


def load_vlm_model(path: str | os.PathLike, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """``(model, processor)`` of a local transformers VLM folder, local files only.

    Raises:
        UnavailableError: transformers cannot load the folder as an image-text-to-text model.
        ValueError: its processor is a plain tokenizer (no image processor in the folder).
    """
    import transformers

    from restore_r1.encoders import torch_device

    path = Path(path)
    target = torch_device(device)
    try:
        model = transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype(dtype), local_files_only=True)
        processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnavailableError(f"VLM planner: cannot load {path} as an image-text-to-text model ({first})") from None
    if not isinstance(processor, transformers.ProcessorMixin):
        raise ValueError(f"VLM planner: {path} has no image processor (AutoProcessor gave a {type(processor).__name__}); the folder needs the processor files")
    return model.to(target), processor


# --------------------------------------------------------------------------------- planner folders
def is_vlm_planner(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a VLM planner (its ``planner.json``)."""
    return (Path(folder) / PLANNER_FILE).is_file()


def save_vlm_planner(planner: VLMPlanner, directory: str | os.PathLike) -> Path:
    """Writes the planner folder (model and processor files, ``planner.json``) atomically.

    The files go into a temporary sibling folder that then replaces ``directory``, so a killed
    writer leaves the old planner or the new one, never a mix.

    Raises:
        ValueError: the model still carries LoRA adapters (merge them first: ``merge_and_unload``).
    """
    if type(planner.model).__module__.split(".")[0] == "peft":
        raise ValueError("save_vlm_planner: the model is a peft model; merge the adapters first (model.merge_and_unload())")
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        planner.model.save_pretrained(tmp)
        planner.processor.save_pretrained(tmp)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        meta = {
            "format_version": VLM_PLANNER_FORMAT_VERSION,
            "kind": VLM_PLANNER_KIND,
            "config": planner.config.to_dict(),
            "files": {name: sha256_file(tmp / name) for name in files},
        }
        (tmp / PLANNER_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def read_vlm_planner_config(directory: str | os.PathLike) -> VLMPlannerConfig:
    """The :class:`VLMPlannerConfig` in a planner folder's ``planner.json`` (no file is hashed)."""
    return _read_meta(Path(directory))[1]


def _read_meta(directory: Path) -> tuple[dict, VLMPlannerConfig]:
    meta_path = directory / PLANNER_FILE
    if not meta_path.is_file():
        raise WeightsNotFoundError(f"VLM planner {directory}: {meta_path} not found; pass a folder written by `restore-r1 train --planner vlm` (<out>/policy/)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != VLM_PLANNER_FORMAT_VERSION or meta.get("kind") != VLM_PLANNER_KIND:
        got = (meta.get("kind"), meta.get("format_version")) if isinstance(meta, dict) else meta
        raise ValueError(f"{meta_path}: kind/format {got!r} is not supported (expected {VLM_PLANNER_KIND!r}, {VLM_PLANNER_FORMAT_VERSION})")
    return meta, VLMPlannerConfig.from_dict(meta["config"])


def verify_vlm_planner(directory: str | os.PathLike) -> VLMPlannerConfig:
    """Reads ``planner.json`` and checks every file it lists against its sha256 (no weights loaded).

    Raises:
        WeightsNotFoundError: no ``planner.json``, or a listed file is missing; the path is named.
        ChecksumError: a file differs from its recorded sha256.
        ValueError: unsupported format or kind.
    """
    directory = Path(directory)
    meta, config = _read_meta(directory)
    if "config.json" not in meta.get("files", {}):
        raise ValueError(f"{directory / PLANNER_FILE}: lists no model files (config.json missing from 'files')")
    for name, expected in sorted(meta.get("files", {}).items()):
        path = directory / name
        if not path.is_file():
            raise WeightsNotFoundError(f"VLM planner {directory}: file {path} listed in {PLANNER_FILE} not found")
        digest = sha256_file(path)
        if digest != expected:
            raise ChecksumError(f"{path}: sha256 {digest} differs from {expected} recorded in {PLANNER_FILE}")
    return config


def load_vlm_planner(directory: str | os.PathLike, available_tools: Sequence[str] | None = None, device: str = "cpu", dtype: str = "float32") -> VLMPlanner:
    """Loads a planner folder written by :func:`save_vlm_planner` (checksums verified first).

    Args:
        available_tools: names of the tools that can run here; when given, every tool of the
            planner must be among them.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        dtype: one of :data:`DTYPES`.

    Raises:
        WeightsNotFoundError / ChecksumError / ValueError: see :func:`verify_vlm_planner`;
        ValueError also when a tool of the planner is unavailable here.
    """
    directory = Path(directory)
    config = verify_vlm_planner(directory)
    if available_tools is not None:
        missing = [t for t in config.tool_names if t not in set(available_tools)]
        if missing:
            raise ValueError(f"VLM planner {directory} plans with tools that are not available here: {missing}")
    model, processor = load_vlm_model(directory, dtype=dtype, device=device)
    return VLMPlanner(model, processor, config, folder=directory)
