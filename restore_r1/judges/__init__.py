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

The package has the shape of every kind (degradations, tools, metrics, encoders):

* :mod:`~restore_r1.judges.catalogue` — :data:`JUDGES`, one :class:`JudgeEntry` (a
  :class:`restore_r1.catalog.Entry`) per judge, :func:`create_judge`, :func:`judge_availability`
  and :data:`DEFAULT_JUDGE`;
* :mod:`~restore_r1.judges.base` — the :class:`Judge` protocol, :class:`JudgeError` and the
  Q-Align level rule;
* the implementations: :mod:`~restore_r1.judges.mllm`, :mod:`~restore_r1.judges.openai_judge`,
  :mod:`~restore_r1.judges.metric` (``niqe``, ``piqe``, ``nr_offline``),
  :mod:`~restore_r1.judges.calibrated`, :mod:`~restore_r1.judges.ranker`,
  :mod:`~restore_r1.judges.relative`, over the shared features of
  :mod:`~restore_r1.judges.features`;
* the offline fits, which build on the runtime models: :mod:`~restore_r1.judges.fit` (``ranker``,
  ``relative``; ``make judge``) and :mod:`~restore_r1.judges.calibrate` (``calibrated``).

Heavy modules (torch, transformers) are imported lazily.
"""

from __future__ import annotations

from restore_r1.judges.base import (
    ANSWER_PREFIX,
    LEVEL_RANGE,
    LEVEL_VALUES,
    QUALITY_LEVELS,
    QUALITY_QUESTION,
    Judge,
    JudgeError,
    check_images,
    level_probabilities,
    level_probabilities_to_score,
    level_token_ids,
)
from restore_r1.judges.calibrated import CalibratedJudge
from restore_r1.judges.catalogue import (
    DEFAULT_ALIAS,
    DEFAULT_JUDGE,
    JUDGES,
    JudgeEntry,
    create_judge,
    judge_availability,
    judge_is_relative,
    resolve_judge_name,
)
from restore_r1.judges.features import upscale_to_min_side
from restore_r1.judges.metric import (
    METRIC_MIN_SIDE,
    NIQE_TO_LEVEL,
    NR_OFFLINE_WEIGHTS,
    PIQE_TO_LEVEL,
    MetricJudge,
    WeightedJudge,
    map_to_levels,
)
from restore_r1.judges.mllm import DEQA_REPO, MLLM_HOW_TO, MLLM_PATH_ENV, PLAIN_TEMPLATE, MLLMJudge
from restore_r1.judges.openai_judge import (
    OPENAI_BACKOFF,
    OPENAI_BACKOFF_CAP,
    OPENAI_MODEL_ENV,
    OPENAI_QUESTION,
    OPENAI_TOP_LOGPROBS,
    OPENAI_URL_ENV,
    OpenAIJudge,
    image_data_url,
    levels_from_top_logprobs,
)

__all__ = [
    "ANSWER_PREFIX",
    "CalibratedJudge",
    "DEFAULT_ALIAS",
    "DEFAULT_JUDGE",
    "DEQA_REPO",
    "JUDGES",
    "Judge",
    "JudgeEntry",
    "JudgeError",
    "LEVEL_RANGE",
    "LEVEL_VALUES",
    "METRIC_MIN_SIDE",
    "MLLMJudge",
    "MLLM_HOW_TO",
    "MLLM_PATH_ENV",
    "MetricJudge",
    "NIQE_TO_LEVEL",
    "NR_OFFLINE_WEIGHTS",
    "OPENAI_BACKOFF",
    "OPENAI_BACKOFF_CAP",
    "OPENAI_MODEL_ENV",
    "OPENAI_QUESTION",
    "OPENAI_TOP_LOGPROBS",
    "OPENAI_URL_ENV",
    "OpenAIJudge",
    "PIQE_TO_LEVEL",
    "PLAIN_TEMPLATE",
    "QUALITY_LEVELS",
    "QUALITY_QUESTION",
    "WeightedJudge",
    "check_images",
    "create_judge",
    "image_data_url",
    "judge_availability",
    "judge_is_relative",
    "level_probabilities",
    "level_probabilities_to_score",
    "level_token_ids",
    "levels_from_top_logprobs",
    "map_to_levels",
    "resolve_judge_name",
    "upscale_to_min_side",
]
