"""Baselines that share the agent's tools and judge (issue: the agent, §5).

Every method maps a degraded uint8 RGB H×W×3 image to a :class:`MethodResult`; tool calls are
counted as real tool invocations (a method that recomputes something pays for it again).

* ``input``       no restoration.
* ``random``      a random tool sequence of random length 0..max_steps (no tool twice in a row).
* ``fixed``       one tool per degradation type in the fixed order :data:`FIXED_ORDER`, which
                  undoes the synthesis order of docs/method.md §3 backwards (artefacts added last are removed
                  first: JPEG, noise, defocus, motion, dark, haze, rain).
* ``exploration`` in the style of AgenticIR: at each step every tool is tried on the current image
                  and the judge scores each result; the best-scoring one is kept if it raises the
                  judge score, otherwise the step is rolled back and the search stops.
* ``oracle``      exhaustive search over every tool sequence of length <= ``oracle_depth``
                  (default 2), picking the one with the highest PSNR against the clean image. It
                  reads the ground truth, so no deployable method can reach it; with depth 2 it is
                  an upper bound only among sequences of up to two tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from restore_r1.catalog import Catalogue
from restore_r1.judges.relative import score_images
from restore_r1.metrics import psnr

ToolFn = Callable[[np.ndarray], np.ndarray]

#: Degradation types in the order the ``fixed`` baseline treats them: the reverse of the
#: synthesis order of docs/method.md §3 (JPEG is always applied last, rain/haze/dark first).
FIXED_ORDER: tuple[str, ...] = ("jpeg", "noise", "defocus_blur", "motion_blur", "dark", "haze", "rain")
#: Default search depth of the ``oracle`` (number of tools in a sequence).
ORACLE_DEPTH = 2


@dataclass
class MethodResult:
    """What a method did to one image.

    Attributes:
        image: the restored image, uint8 RGB H×W×3.
        tools: names of the tools kept, in the order applied.
        tool_calls: tool invocations made, including tried-and-discarded ones.
        scores: judge score of the input and after each kept tool (len = len(tools) + 1),
            empty when the method uses no judge.
        seconds: wall-clock time of the method.
    """

    image: np.ndarray
    tools: list[str]
    tool_calls: int
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0


def run_input(img: np.ndarray, **_: object) -> MethodResult:
    """No restoration."""
    return MethodResult(image=img, tools=[], tool_calls=0)


def run_random(img: np.ndarray, *, tools: Mapping[str, ToolFn], rng: np.random.Generator, max_steps: int = 5, **_: object) -> MethodResult:
    """A random tool sequence of random length in 0..max_steps (uniform), no immediate repeats."""
    names = sorted(tools)
    length = int(rng.integers(0, max_steps + 1))
    chosen: list[str] = []
    for _step in range(length):
        pool = [n for n in names if not chosen or n != chosen[-1]]
        chosen.append(pool[int(rng.integers(0, len(pool)))])
    out = img
    for name in chosen:
        out = tools[name](out)
    return MethodResult(image=out, tools=chosen, tool_calls=len(chosen))


def fixed_sequence(tool_types: Mapping[str, str], preferred: Mapping[str, str] | None = None) -> list[str]:
    """The ``fixed`` baseline's tools: one per type in :data:`FIXED_ORDER`.

    Args:
        tool_types: tool name -> degradation type, for the available tools.
        preferred: degradation type -> tool name to use; types without an entry take the first
            available tool of that type (in catalogue order).
    """
    seq = []
    for kind in FIXED_ORDER:
        wanted = (preferred or {}).get(kind)
        if wanted is not None:
            if wanted not in tool_types:
                raise KeyError(f"fixed baseline: preferred {kind} tool {wanted!r} is not available")
            seq.append(wanted)
            continue
        of_kind = [name for name, t in tool_types.items() if t == kind]
        if of_kind:
            seq.append(of_kind[0])
    return seq


def run_fixed(img: np.ndarray, *, tools: Mapping[str, ToolFn], sequence: Sequence[str], **_: object) -> MethodResult:
    """Applies ``sequence`` (see :func:`fixed_sequence`) in order."""
    out = img
    for name in sequence:
        out = tools[name](out)
    return MethodResult(image=out, tools=list(sequence), tool_calls=len(sequence))


def run_exploration(img: np.ndarray, *, tools: Mapping[str, ToolFn], judge, max_steps: int = 5, **_: object) -> MethodResult:
    """AgenticIR-style try-all-and-keep-the-best search with rollback (see the module doc)."""
    names = sorted(tools)
    current, current_score = img, score_images(judge, [img], [img])[0]  # a relative judge: 0
    kept: list[str] = []
    scores = [current_score]
    calls = 0
    for _step in range(max_steps):
        candidates = [n for n in names if not kept or n != kept[-1]]
        outputs = []
        for name in candidates:
            outputs.append(tools[name](current))
            calls += 1
        cand_scores = score_images(judge, outputs, [img] * len(outputs))  # a relative judge: against the input
        best = int(np.argmax(cand_scores))
        if cand_scores[best] <= current_score:
            break  # every try lowered the judge score: roll back and stop
        current, current_score = outputs[best], cand_scores[best]
        kept.append(candidates[best])
        scores.append(current_score)
    return MethodResult(image=current, tools=kept, tool_calls=calls, scores=scores)


def run_oracle(img: np.ndarray, *, tools: Mapping[str, ToolFn], clean: np.ndarray, oracle_depth: int = ORACLE_DEPTH, **_: object) -> MethodResult:
    """Exhaustive search over tool sequences of length <= ``oracle_depth``, by PSNR vs ``clean``.

    Each distinct prefix is computed once (depth-first), so with N tools it makes
    N + N² + ... + N^depth tool calls.
    """
    if clean is None:
        raise ValueError("the oracle needs the clean image")
    names = sorted(tools)
    best_seq: list[str] = []
    best_img, best_psnr = img, psnr(img, clean)
    calls = 0

    def visit(prefix: list[str], current: np.ndarray) -> None:
        nonlocal best_seq, best_img, best_psnr, calls
        if len(prefix) == oracle_depth:
            return
        for name in names:
            if prefix and prefix[-1] == name:
                continue
            out = tools[name](current)
            calls += 1
            value = psnr(out, clean)
            if value > best_psnr:
                best_seq, best_img, best_psnr = prefix + [name], out, value
            visit(prefix + [name], out)

    visit([], img)
    return MethodResult(image=best_img, tools=best_seq, tool_calls=calls)


#: Baselines by name; ``policy`` is added by the evaluation, which owns the trained policy.
BASELINES: Catalogue[Callable[..., MethodResult]] = Catalogue("method")
BASELINES.register("input", run_input)
BASELINES.register("random", run_random)
BASELINES.register("fixed", run_fixed)
BASELINES.register("exploration", run_exploration)
BASELINES.register("oracle", run_oracle)


def timed(fn: Callable[..., MethodResult], img: np.ndarray, **kwargs: object) -> MethodResult:
    """Runs a method and records its wall-clock seconds."""
    start = time.perf_counter()
    result = fn(img, **kwargs)
    result.seconds = time.perf_counter() - start
    return result


#: The ``fixed`` baseline's tool per degradation type (chosen from bench/results/tools.md as the
#: best own-degradation PSNR gain per type); types missing here take the first available tool.
FIXED_PREFERRED: dict[str, str] = {
    "jpeg": "jpeg_dct_deblock",
    "noise": "nlm_denoise",
    "defocus_blur": "wiener_defocus_deblur",
    "motion_blur": "rl_motion_deblur",
    "dark": "gamma_correction",
    "haze": "dcp_dehaze",
    "rain": "rain_opening",
}
