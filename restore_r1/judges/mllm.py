"""``mllm``: the DeQA-Score / Q-Align scoring rule on a local Hugging Face vision-language model.

After the prompt "... The quality of the image is", the next-token logits of the five level
words bad, poor, fair, good, excellent (1..5) are softmaxed and the score is the expected level
in [1, 5] (:func:`restore_r1.judges.base.level_probabilities_to_score`). DeQA-Score's own
checkpoint (``zhiyuanyou/DeQA-Score-Mix3``, mPLUG-Owl2 with custom code) is used through its
``score()`` method with ``trust_remote_code=True``, which is off by default because it runs code
from the model folder. torch and transformers are imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.errors import UnavailableError
from restore_r1.judges.base import (
    ANSWER_PREFIX,
    LEVEL_RANGE,
    QUALITY_QUESTION,
    check_images,
    level_probabilities_to_score,
    level_token_ids,
)
from restore_r1.weights import resolve_model_dir

#: Environment variable naming the local model folder of the ``mllm`` judge.
MLLM_PATH_ENV = "RESTORE_R1_MLLM_PATH"
#: The paper's judge (docs/method.md §1).
DEQA_REPO = "zhiyuanyou/DeQA-Score-Mix3"
MLLM_HOW_TO = (
    f"download a model once, e.g. `huggingface-cli download {DEQA_REPO} --local-dir DIR` (needs trust_remote_code=True) "
    f"or any transformers image-text-to-text model (e.g. a Qwen2-VL / LLaVA checkpoint), then pass model_path=DIR "
    f"or set ${MLLM_PATH_ENV}=DIR"
)
#: Plain prompt used when the processor has no chat template (Q-Align / mPLUG-Owl2 style).
PLAIN_TEMPLATE = "USER: {image}\n{question}\nASSISTANT: {prefix}"


class MLLMJudge:
    """``mllm``: Q-Align / DeQA-Score scoring with a local vision-language model.

    Args:
        model_path: local Hugging Face folder; ``None`` reads ``$RESTORE_R1_MLLM_PATH``.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        trust_remote_code: run the model folder's own code (needed by DeQA-Score's mPLUG-Owl2
            checkpoint, whose ``score()`` method is then used directly). Off by default.
        question: the user question.
        prefix: the assistant's answer prefix; the next token is read.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    """

    name = "mllm"
    range = LEVEL_RANGE

    def __init__(
        self,
        model_path: str | None = None,
        device: str = "cpu",
        trust_remote_code: bool = False,
        question: str = QUALITY_QUESTION,
        prefix: str = ANSWER_PREFIX,
        dtype: str = "float32",
    ) -> None:
        import torch

        from restore_r1.encoders import torch_device

        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype not in dtypes:
            raise ValueError(f"dtype {dtype!r} must be one of {sorted(dtypes)}")
        path = resolve_model_dir(model_path, MLLM_PATH_ENV, "mllm judge", MLLM_HOW_TO)
        self.model_path = str(path)
        self.device = device
        self.trust_remote_code = bool(trust_remote_code)
        self.question = question
        self.prefix = prefix
        self.dtype = dtype
        self._device = torch_device(device)
        self.model, self.processor = _load_vlm(path, self.trust_remote_code, dtypes[dtype])
        self.model = self.model.eval().to(self._device)
        # DeQA-Score's remote code scores by itself (its own prompt and level tokens).
        self._native_score = callable(getattr(self.model, "score", None)) and self.processor is None
        if not self._native_score:
            self.level_ids = level_token_ids(getattr(self.processor, "tokenizer", self.processor))
            self.prompt = self._build_prompt()

    def _build_prompt(self) -> str:
        proc = self.processor
        template = getattr(proc, "chat_template", None)
        if template:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.question}]}]
            return proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + self.prefix
        image_token = getattr(proc, "image_token", None) or "<image>"
        return PLAIN_TEMPLATE.format(image=image_token, question=self.question, prefix=self.prefix)

    def level_logits(self, img: np.ndarray) -> np.ndarray:
        """float64 [5]: next-token logits of bad..excellent for one uint8 RGB image."""
        import torch
        from PIL import Image

        inputs = self.processor(images=[Image.fromarray(img)], text=[self.prompt], return_tensors="pt")
        inputs = {k: (v.to(self._device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1]
        return logits[self.level_ids].double().cpu().numpy()

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Expected quality level in [1, 5] per uint8 RGB H×W×3 image."""
        from PIL import Image

        imgs = check_images(imgs, self.name)
        if self._native_score:
            import torch

            with torch.inference_mode():
                out = self.model.score([Image.fromarray(img) for img in imgs])
            return [float(v) for v in out.reshape(-1).tolist()]
        return [level_probabilities_to_score(self.level_logits(img)) for img in imgs]

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self.model_path,
            "device": self.device,
            "trust_remote_code": self.trust_remote_code,
            "question": self.question,
            "prefix": self.prefix,
            "dtype": self.dtype,
        }


def _load_vlm(path: Path, trust_remote_code: bool, torch_dtype: Any) -> tuple[Any, Any]:
    """(model, processor) from a local folder; processor is ``None`` for a native scorer."""
    import transformers

    opts = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    errors: list[str] = []
    for cls_name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            continue
        try:
            model = cls.from_pretrained(path, dtype=torch_dtype, **opts)
        except (ValueError, KeyError, OSError) as exc:
            errors.append(f"{cls_name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        return model, transformers.AutoProcessor.from_pretrained(path, **opts)
    if trust_remote_code:
        # DeQA-Score / Q-Align: AutoModelForCausalLM with the folder's code and a score() method.
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **opts)
        if callable(getattr(model, "score", None)):
            return model, None
        errors.append(f"AutoModelForCausalLM: {type(model).__name__} has no score() method")
    hint = "" if trust_remote_code else " (a model with custom code, like DeQA-Score, needs trust_remote_code=True)"
    raise UnavailableError(f"mllm judge: cannot load {path} as a vision-language model{hint}: {'; '.join(errors)}")
