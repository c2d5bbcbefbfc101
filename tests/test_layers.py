"""The package's layering (restore_r1.LAYERS): no import goes up a layer or closes a cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import restore_r1

PACKAGE = Path(restore_r1.__file__).resolve().parent


def part_of(module: str) -> str:
    """``restore_r1.agent.env`` -> ``agent``; ``restore_r1`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_by_part(root: Path = PACKAGE) -> dict[str, dict[str, set[str]]]:
    """``{part: {imported part: {"file:line", ...}}}`` over every ``import`` in the package,
    including those inside functions (a lazy import is still a dependency)."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "restore_r1" or name.startswith("restore_r1."):
                    target = part_of(name)
                    if (root / target).is_dir() or (root / f"{target}.py").is_file() or target == "":
                        if target != part_of(module):
                            found[part_of(module)][target].add(f"{rel}:{node.lineno}")
    return found


def layer_of() -> dict[str, int]:
    return {part: i for i, layer in enumerate(restore_r1.LAYERS) for part in layer}


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(parts - set(layer_of()))
    assert not missing, f"add {missing} to restore_r1.LAYERS"
    stale = sorted(set(layer_of()) - parts - {""})
    assert not stale, f"restore_r1.LAYERS names parts that do not exist: {stale}"


def test_no_import_goes_up_a_layer():
    layers = layer_of()
    up = [
        f"{part} (layer {layers[part]}) imports {target} (layer {layers[target]}) at {', '.join(sorted(where))}"
        for part, targets in imports_by_part().items()
        for target, where in targets.items()
        if layers[target] > layers[part]
    ]
    assert not up, "back-edges:\n" + "\n".join(up)


def test_no_cycle_between_parts_of_one_layer():
    layers = layer_of()
    graph = imports_by_part()
    cycles = [
        f"{a} <-> {b}: {', '.join(sorted(graph[a][b]))} / {', '.join(sorted(graph[b][a]))}"
        for a in graph
        for b in graph[a]
        if a < b and layers[a] == layers[b] and a in graph.get(b, {})
    ]
    assert not cycles, "cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    "source, message",
    [
        ("from restore_r1.registry import pull_policy\n", "imports registry"),  # agent -> registry goes up
        ("import restore_r1.serving.backend\n", "imports serving"),
    ],
)
def test_the_check_finds_a_planted_back_edge(tmp_path, source, message):
    fake = tmp_path / "restore_r1"
    (fake / "agent").mkdir(parents=True)
    (fake / "agent" / "__init__.py").write_text(source)
    for part in ("registry", "serving"):
        (fake / part).mkdir()
        (fake / part / "__init__.py").write_text("")
    layers = layer_of()
    found = imports_by_part(fake)
    ups = [t for t in found["agent"] if layers[t] > layers["agent"]]
    assert ups and message.split()[-1] in ups
