"""The 15 evaluation cases of docs/method.md §3 (paper Table 4), chains of degradations, and the
parsers of the ``--cases`` / ``--degradations`` lists."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from restore_r1 import DEGRADATION_TYPES
from restore_r1.degradations.catalogue import DEGRADATIONS, apply_degradation
from restore_r1.degradations.functions import Params
from restore_r1.depth import depth_prior
from restore_r1.images import check_rgb

# --- the 15 cases (docs/method.md §3, paper Table 4) --------------------------------------------------------


#: The settings of Table 4, in order.
SETTINGS: tuple[str, ...] = ("I", "II", "III", "IV")


@dataclass(frozen=True)
class Case:
    """One evaluation case: degradations applied in the listed order.

    Attributes:
        number: 1..15.
        name: the degradations joined by "+", e.g. ``"dark+noise"``.
        setting: "I".."IV", the group of Table 4 the case is averaged in.
        degradations: names from ``DEGRADATION_TYPES``, in application order.
    """

    number: int
    setting: str
    degradations: tuple[str, ...]
    #: the degradations joined by "+", e.g. ``"dark+noise"`` (derived, not passed).
    name: str = field(init=False)

    def __post_init__(self) -> None:
        for n in self.degradations:
            DEGRADATIONS.get(n)  # KeyError for a misspelt name
        if self.setting not in SETTINGS:
            raise ValueError(f"case {self.number}: unknown setting {self.setting!r}; use one of {SETTINGS}")
        object.__setattr__(self, "name", "+".join(self.degradations))


#: The 15 cases of docs/method.md §3 (paper Table 4), by number.
CASES: dict[int, Case] = {
    c.number: c
    for c in (
        Case(1, "I", ("dark", "noise")),
        Case(2, "I", ("defocus_blur", "jpeg")),
        Case(3, "I", ("motion_blur", "dark")),
        Case(4, "I", ("noise", "jpeg")),
        Case(5, "I", ("rain", "haze")),
        Case(6, "II", ("haze", "noise")),
        Case(7, "II", ("motion_blur", "jpeg")),
        Case(8, "II", ("rain", "dark")),
        Case(9, "III", ("dark", "defocus_blur", "jpeg")),
        Case(10, "III", ("motion_blur", "defocus_blur", "noise")),
        Case(11, "III", ("rain", "dark", "noise")),
        Case(12, "III", ("rain", "haze", "noise")),
        Case(13, "IV", ("haze", "dark", "motion_blur", "jpeg")),
        Case(14, "IV", ("rain", "haze", "defocus_blur", "jpeg")),
        Case(15, "IV", ("rain", "motion_blur", "defocus_blur", "noise", "jpeg")),
    )
}


def get_case(number: int) -> Case:
    """The case numbered ``number``.

    Raises:
        KeyError: no such case.
    """
    try:
        return CASES[int(number)]
    except (KeyError, ValueError, TypeError):
        raise KeyError(f"unknown case {number!r}; cases are numbered {min(CASES)}..{max(CASES)}") from None


def apply_case(case_number: int, img: np.ndarray, rng: np.random.Generator, depth: np.ndarray | None = None) -> tuple[np.ndarray, list[Params]]:
    """Applies the degradations of a case in order.

    Args:
        case_number: 1..15.
        img: uint8 RGB, H×W×3.
        rng: parameter and noise source; degradations draw from it in order.
        depth: float H×W in [0, 1] for haze (None: the depth prior of the image *before* any
            degradation, so that rain or darkening earlier in the case does not move it).

    Returns:
        (uint8 RGB H×W×3, ``[{"degradation": name, "params": {...}}, ...]`` in order).
    """
    return apply_chain(get_case(case_number).degradations, img, rng, depth=depth)


def apply_chain(names: Sequence[str], img: np.ndarray, rng: np.random.Generator, depth: np.ndarray | None = None) -> tuple[np.ndarray, list[Params]]:
    """Applies degradations in the given order (a case is one such chain).

    Args:
        names: names from ``DEGRADATION_TYPES``, in application order; repeats allowed.
        img: uint8 RGB, H×W×3.
        rng: parameter and noise source; degradations draw from it in order.
        depth: float H×W in [0, 1] for haze (None: the depth prior of the image *before* any
            degradation, so that rain or darkening earlier in the chain does not move it).

    Returns:
        (uint8 RGB H×W×3, ``[{"degradation": name, "params": {...}}, ...]`` in order).

    Raises:
        KeyError: an unknown name (with close-match suggestions).
        ValueError: an empty chain.
    """
    entries = [DEGRADATIONS.get(n) for n in names]
    if not entries:
        raise ValueError("empty degradation chain; name at least one of " + ", ".join(DEGRADATION_TYPES))
    check_rgb(img)
    prior_used = depth is None and any(e.uses_depth for e in entries)
    if prior_used:
        depth = depth_prior(img)
    steps: list[Params] = []
    out = img
    for entry in entries:
        out, params = apply_degradation(entry.name, out, rng, depth=depth)
        if prior_used and entry.uses_depth:
            params = {**params, "depth": "prior"}
        steps.append({"degradation": entry.name, "params": params})
    return out, steps


#: The chain of no degradation (``--degradations none``): clean pairs, input = target, which show
#: a policy that the right answer is to STOP.
NO_DEGRADATION = "none"


def parse_degradations(text: str) -> tuple[str, ...]:
    """Parses an ordered comma list of degradation names such as ``"noise,jpeg"``.

    Returns:
        The names in the given order (repeats kept: ``"noise,noise"`` degrades twice);
        ``()`` for :data:`NO_DEGRADATION` alone.

    Raises:
        ValueError: empty text or an empty item.
        KeyError: an unknown name; the message suggests close matches.
    """
    known = ", ".join(DEGRADATION_TYPES)
    if text is None or not str(text).strip():
        raise ValueError(f"empty degradation list; give names such as 'noise,jpeg' from {known}")
    names = tuple(item.strip() for item in str(text).split(","))
    if names == (NO_DEGRADATION,):
        return ()
    if NO_DEGRADATION in names:
        raise ValueError(f"{NO_DEGRADATION!r} stands alone (clean pairs); it cannot be chained with {text!r}")
    if "" in names:
        raise ValueError(f"empty item in degradation list {text!r}; separate names by single commas")
    for name in names:
        DEGRADATIONS.get(name)  # KeyError with close matches
    return names


_CASE_TOKEN = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_cases(text: str) -> list[int]:
    """Parses a case list such as ``"1,3,9-12"`` or ``"all"``.

    Returns:
        Sorted distinct case numbers.

    Raises:
        ValueError: empty text, a malformed item, a reversed range or a number outside 1..15.
    """
    lo, hi = min(CASES), max(CASES)
    if text is None or not str(text).strip():
        raise ValueError(f"empty case list; give numbers {lo}..{hi} such as '1,3,9-12' or 'all'")
    text = str(text).strip()
    if text.lower() == "all":
        return sorted(CASES)
    numbers: set[int] = set()
    for item in text.split(","):
        match = _CASE_TOKEN.match(item)
        if not match:
            raise ValueError(f"bad case item {item.strip()!r} in {text!r}; expected N or N-M, e.g. '1,3,9-12'")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"bad case range {item.strip()!r}: {first} > {last}")
        for n in (first, last):
            if n not in CASES:
                raise ValueError(f"case {n} is out of range; cases are numbered {lo}..{hi}")
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def cases_with(names: Sequence[str]) -> list[int]:
    """Numbers of the cases that use any of the degradations ``names``."""
    wanted = set(names)
    return [n for n, c in CASES.items() if wanted & set(c.degradations)]
