"""``openai``: the Q-Align rule through an OpenAI-compatible endpoint (e.g. vLLM serving a VLM),
reading ``top_logprobs`` of a one-token answer. Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from restore_r1.errors import UnavailableError
from restore_r1.images import encode_image
from restore_r1.judges.base import (
    LEVEL_RANGE,
    QUALITY_LEVELS,
    JudgeError,
    check_images,
    level_probabilities_to_score,
)

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
        imgs = check_images(imgs, self.name)
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
