"""Every kind has one shape (docs/development.md, "Adding things"): a catalogue of
``restore_r1.catalog.Entry`` entries with one availability API, and every degradation type has
the steps the checklist asks for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import restore_r1
from restore_r1 import DEGRADATION_TYPES
from restore_r1.agent.baselines import FIXED_ORDER, FIXED_PREFERRED
from restore_r1.catalog import Entry
from restore_r1.degradations import DEGRADATIONS
from restore_r1.encoders import ENCODERS, STATS_FEATURES, STATS_GROUPS, encoder_availability
from restore_r1.judges import JUDGES, judge_availability
from restore_r1.metrics import METRICS, metric_availability
from restore_r1.tools import TOOLS, get_tool, list_tools

PACKAGE = Path(restore_r1.__file__).resolve().parent

#: Each kind's catalogue, and the compatibility wrapper its callers use (None: none).
KINDS = {
    "tool": (TOOLS, None),
    "degradation": (DEGRADATIONS, None),
    "metric": (METRICS, metric_availability),
    "judge": (JUDGES, judge_availability),
    "encoder": (ENCODERS, encoder_availability),
}
#: Modules of a kind's package that build on its catalogue rather than implement entries.
ABOVE_THE_CATALOGUE = {"degradations": {"cases.py"}, "tools": {"onnx_export.py"}}
ENTRIES = [(kind, name) for kind, (catalogue, _) in KINDS.items() for name in catalogue.names()]


@pytest.mark.parametrize("kind, name", ENTRIES)
def test_every_entry_is_a_catalog_entry_with_one_availability(kind, name):
    catalogue, wrapper = KINDS[kind]
    entry = catalogue.get(name)
    assert isinstance(entry, Entry) and entry.kind == kind and entry.name == name
    assert type(entry).availability is Entry.availability, "availability has one implementation: catalog.Entry"
    assert type(entry).create is not Entry.create, f"{kind} entries need a factory"
    ok, reason = entry.availability()
    assert isinstance(ok, bool) and ok == (reason == "")
    if wrapper is not None:
        w_ok, w_reason = wrapper(name)
        assert w_ok == ok and (reason in w_reason)


def missing_steps(t: str) -> list[str]:
    """The steps of the degradation checklist (docs/development.md) that type ``t`` lacks."""
    measured = {d for _, types, _ in STATS_GROUPS for d in types}
    preferred = FIXED_PREFERRED.get(t)
    steps = {
        "register a Degradation in restore_r1/degradations/catalogue.py": t in DEGRADATIONS,
        "give it two tools that run here": len([x for x in list_tools(available_only=True) if x.degradation == t]) >= 2,
        "add it to FIXED_ORDER in restore_r1/agent/baselines.py": t in FIXED_ORDER,
        "name its tool in FIXED_PREFERRED": preferred is not None and preferred in TOOLS and get_tool(preferred).degradation == t,
        "add a STATS_GROUPS group that measures it (restore_r1/encoders/stats.py)": t in measured,
    }
    return [step for step, done in steps.items() if not done]


@pytest.mark.parametrize("t", DEGRADATION_TYPES)
def test_every_degradation_type_has_its_steps(t):
    assert not missing_steps(t), f"{t}: " + "; ".join(missing_steps(t))


def test_a_new_type_without_its_steps_is_caught():
    assert len(missing_steps("snow")) == 5


def test_no_stale_degradation_in_the_baseline_or_the_stats():
    assert sorted(FIXED_ORDER) == sorted(DEGRADATION_TYPES), "FIXED_ORDER lists each type once"
    assert set(FIXED_PREFERRED) <= set(DEGRADATION_TYPES)
    assert {d for _, types, _ in STATS_GROUPS for d in types} <= set(DEGRADATION_TYPES)
    assert len(STATS_FEATURES) == len(set(STATS_FEATURES))


@pytest.mark.parametrize("kind", ["degradations", "tools", "encoders", "metrics", "judges"])
def test_implementation_modules_do_not_import_their_catalogue(kind):
    """Inside a kind's package, data flows one way: the catalogue imports the implementations,
    never the reverse (and nothing imports the package's own ``__init__``)."""
    folder = PACKAGE / kind
    assert (folder / "catalogue.py").is_file()
    back = []
    for path in sorted(folder.glob("*.py")):
        if path.name in {"__init__.py", "catalogue.py", *ABOVE_THE_CATALOGUE.get(kind, ())}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in (f"restore_r1.{kind}", f"restore_r1.{kind}.catalogue"):
                # ``from restore_r1.tools import neural`` names a sibling module, not the catalogue
                names = [a.name for a in node.names if node.module.endswith("catalogue") or not (folder / f"{a.name}.py").is_file()]
                if names:
                    back.append(f"{path.name}:{node.lineno} imports {names} from {node.module}")
    assert not back, back
