"""Tool plans written as text: the VLM planner's prompt and the strict parser of its answers.

A plan is the ordered tool names, comma-separated, ending in STOP::

    nlm_denoise, clahe, STOP        two tool calls, in that order
    STOP                            no tool

Grammar (whitespace, newlines included, around names and commas is ignored)::

    plan := (tool ",")* "STOP"
    tool := one of the planner's tool names, exactly (case-sensitive)

with at most ``max_steps`` tools. Anything else (an unknown name, an empty item, no STOP at the
end, text after STOP, too many tools) is a parse failure, :class:`PlanParseError`: never repaired,
never replaced by a default plan. Training gives it its own penalty; inference raises it.

No torch here: the parser and the prompt are plain text functions.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from restore_r1.errors import RestoreR1Error

#: Name of the last action in plans, logs and listings (the MLP policy's STOP action too).
STOP = "STOP"
#: What separates the items of a plan.
PLAN_SEPARATOR = ","
#: A parse failure quotes at most this many characters of the answer.
QUOTE_CHARS = 120

#: The instruction of the prompt; {tools} is the tool list, one line per tool, {max_steps} the cap.
PROMPT_TEMPLATE = (
    "You restore a degraded photo by applying image-restoration tools, one after another.\n"
    "Tools (name: what it does; the degradation it targets):\n"
    "{tools}\n"
    "Answer with the names of the tools to apply, in order, separated by commas, and end with {stop}. "
    "Use at most {max_steps} tools; answer {stop} alone if the photo needs none. Write nothing else.\n"
    "Example answer: {example}"
)


class PlanParseError(RestoreR1Error, ValueError):
    """An answer that is not a plan.

    Attributes:
        text: the answer as given.
        reason: why it is not a plan (one line).
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"not a tool plan ({reason}): {quote(text)}")


def quote(text: str) -> str:
    """``text`` on one line, cut to :data:`QUOTE_CHARS`, as a repr."""
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= QUOTE_CHARS else flat[:QUOTE_CHARS] + "...")


def check_tool_names(tool_names: Sequence[str]) -> list[str]:
    """The tool list of a planner, checked: non-empty, unique, no STOP and no separator in a name."""
    names = [str(n) for n in tool_names]
    if not names:
        raise ValueError("a planner needs at least one tool")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"the tool list has duplicates: {dupes}")
    for name in names:
        if name == STOP:
            raise ValueError(f"{STOP!r} is reserved for the end of a plan and cannot be a tool name")
        if not name or name != name.strip() or PLAN_SEPARATOR in name or len(name.split()) != 1:
            raise ValueError(f"tool name {name!r} cannot be written in a plan (empty, with spaces or with {PLAN_SEPARATOR!r})")
    return names


def parse_plan(text: str, tool_names: Sequence[str], max_steps: int) -> tuple[str, ...]:
    """The tools of a plan written as text (see the module docstring), in order.

    Args:
        text: the answer, e.g. ``"nlm_denoise, clahe, STOP"``.
        tool_names: the names a plan may use.
        max_steps: the most tools a plan may call (>= 0).

    Returns:
        the tool names, in the order to apply them (empty for ``"STOP"``).

    Raises:
        PlanParseError: ``text`` is not a plan; ``reason`` says why.
    """
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    known = set(tool_names)
    items = [item.strip() for item in str(text).split(PLAN_SEPARATOR)]
    if items == [""]:
        raise PlanParseError(text, "empty answer")
    last = items[-1]
    if last != STOP:
        if last.startswith(STOP):
            raise PlanParseError(text, f"text after {STOP}")
        if STOP in items:
            raise PlanParseError(text, f"items after {STOP}")
        raise PlanParseError(text, f"does not end with {STOP}")
    tools = items[:-1]
    for position, item in enumerate(tools, 1):
        if item == STOP:
            raise PlanParseError(text, f"{STOP} before the end (item {position})")
        if not item:
            raise PlanParseError(text, f"empty item {position}")
        if item not in known:
            close = difflib.get_close_matches(item, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise PlanParseError(text, f"unknown tool {item[:40]!r} at item {position}{hint}")
    if len(tools) > max_steps:
        raise PlanParseError(text, f"{len(tools)} tools, more than max_steps={max_steps}")
    return tuple(tools)


def format_plan(tools: Sequence[str]) -> str:
    """A plan as the text :func:`parse_plan` reads: ``"a, b, STOP"``."""
    return f"{PLAN_SEPARATOR} ".join([*tools, STOP])


def tool_lines(tool_names: Sequence[str]) -> list[str]:
    """One ``"name: description; degradation"`` line per tool, from the tool catalogue.

    Raises:
        KeyError: a name is not in the catalogue (close matches suggested).
    """
    from restore_r1.tools import get_tool

    lines = []
    for name in check_tool_names(tool_names):
        tool = get_tool(name)
        lines.append(f"- {tool.name}: {tool.description}; {tool.degradation.replace('_', ' ')}")
    return lines


def build_prompt(tool_names: Sequence[str], max_steps: int) -> str:
    """The planner's instruction for ``tool_names`` (catalogue descriptions) and ``max_steps``.

    The example answer uses the first (up to two) tools of the list, capped at ``max_steps``.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    names = check_tool_names(tool_names)
    example = format_plan(names[: min(2, max_steps)])
    return PROMPT_TEMPLATE.format(tools="\n".join(tool_lines(names)), stop=STOP, max_steps=max_steps, example=example)
