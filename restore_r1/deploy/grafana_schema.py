"""The dashboard type-checked against Grafana's own types (``@grafana/schema`` with ``tsc``).

No Grafana server runs here, but Grafana publishes its dashboard model as TypeScript types in the
npm package ``@grafana/schema``, versioned with Grafana itself. The dashboard JSON is written into
a TypeScript module as ``export const dashboard = <JSON> satisfies Dashboard;`` and compiled with
``tsc --noEmit --strict``: a field Grafana does not know, a missing required field or a wrong
type is a compile error. ``Dashboard`` types every panel's ``options`` as a plain record, so the
options of each panel are checked a second time against its panel plugin's own ``Options`` type.
Those use TypeScript string enums (``LegendDisplayMode.List = "list"``), to which a JSON string is
never assignable; :data:`JSON_OF` maps each enum to the union of its values, which is what Grafana
reads from JSON.

``make grafana-schema`` installs the pinned packages (``tools/grafana-schema/package-lock.json``)
into ``.cache/grafana-schema`` with ``npm ci``; ``$RESTORE_R1_GRAFANA_SCHEMA`` names another
folder holding such a ``node_modules``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from restore_r1.deploy.chart import REPO_ROOT

#: The npm project that pins ``@grafana/schema`` and ``typescript``.
PACKAGE_DIR = REPO_ROOT / "tools" / "grafana-schema"
SCHEMA_PACKAGE = "@grafana/schema"
#: Where ``make grafana-schema`` installs it; $RESTORE_R1_GRAFANA_SCHEMA overrides.
CACHE_DIR = REPO_ROOT / ".cache" / "grafana-schema"
CACHE_ENV = "RESTORE_R1_GRAFANA_SCHEMA"
#: tsc on ~1000 lines of JSON against the schema's types: ~5 s idle, more on a loaded machine.
TSC_TIMEOUT_S = 300
#: Panel type -> (its ``Options`` type's module in @grafana/schema, local name).
PANEL_OPTIONS_TYPES: Mapping[str, tuple[str, str]] = {
    "timeseries": ("@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", "TimeSeriesOptions"),
}
#: ``JsonOf<T>``: ``T`` as JSON spells it (string enums become the union of their string values).
JSON_OF = "type JsonOf<T> = T extends string ? `${T}` : T extends object ? { [K in keyof T]: JsonOf<T[K]> } : T;"
MODULE_NAME = "dashboard.mts"
#: ``dashboard.mts(12,5): error TS2739: ...`` (tsc's default, non-pretty format).
_TSC_ERROR = re.compile(r"^(?P<file>[^(]+)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<message>.*)$")


class SchemaCheckError(RuntimeError):
    """The check could not run (packages missing, tsc crashed); not a dashboard problem."""


def pinned_version() -> str:
    """The ``@grafana/schema`` version ``tools/grafana-schema/package.json`` pins (= the Grafana release)."""
    return json.loads((PACKAGE_DIR / "package.json").read_text())["devDependencies"][SCHEMA_PACKAGE]


def find_node_modules() -> Path:
    """The ``node_modules`` with the pinned packages: $RESTORE_R1_GRAFANA_SCHEMA, then the cache.

    Raises:
        SchemaCheckError: if absent, or holding another ``@grafana/schema`` version.
    """
    root = Path(os.environ.get(CACHE_ENV) or CACHE_DIR)
    modules = root / "node_modules"
    manifest = modules / SCHEMA_PACKAGE / "package.json"
    if not manifest.is_file() or not (modules / "typescript" / "bin" / "tsc").is_file():
        raise SchemaCheckError(f"{SCHEMA_PACKAGE} and typescript are not installed in {modules}; run `make grafana-schema`")
    installed = json.loads(manifest.read_text())["version"]
    if installed != pinned_version():
        raise SchemaCheckError(f"{modules} holds {SCHEMA_PACKAGE} {installed}, the pin is {pinned_version()}; run `make grafana-schema`")
    return modules


def default_schema_version() -> int:
    """``defaultDashboard.schemaVersion`` of the installed ``@grafana/schema`` (run with Node.js).

    Raises:
        SchemaCheckError: packages missing or node failed.
    """
    modules = find_node_modules()
    code = f"import {{ defaultDashboard }} from {json.dumps(str(modules / SCHEMA_PACKAGE / 'dist' / 'esm' / 'index.mjs'))}; console.log(defaultDashboard.schemaVersion);"
    proc = subprocess.run([_node(), "--input-type=module", "-e", code], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise SchemaCheckError(f"node could not read defaultDashboard.schemaVersion: {(proc.stdout + proc.stderr).strip()[-300:]}")
    return int(proc.stdout)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SchemaCheckError("node not found on PATH; the Grafana schema check runs tsc with Node.js")
    return node


def typescript_module(board: Mapping) -> str:
    """The TypeScript module that compiles exactly when ``board`` satisfies Grafana's types."""
    lines = ["import type { Dashboard } from '@grafana/schema';"]
    lines += [f"import type {{ Options as {name} }} from '{module}';" for module, name in PANEL_OPTIONS_TYPES.values()]
    lines.append(JSON_OF)
    lines.append(f"export const dashboard = {json.dumps(board, indent=2)} satisfies Dashboard;")
    for panel in _panels(board.get("panels", [])):
        if panel.get("type") == "row":
            continue
        kind = panel.get("type")
        if kind not in PANEL_OPTIONS_TYPES:
            raise ValueError(f"panel {panel.get('title')!r} has type {kind!r}: no options type known, expected one of {sorted(PANEL_OPTIONS_TYPES)}")
        lines.append(f"// panel {panel.get('id')}: {panel.get('title')}")
        lines.append(
            f"export const panel{panel.get('id')}Options = {json.dumps(panel.get('options', {}), indent=2)} satisfies JsonOf<{PANEL_OPTIONS_TYPES[kind][1]}>;"
        )
    return "\n".join(lines) + "\n"


def _panels(items):
    for item in items:
        yield item
        yield from _panels(item.get("panels", []))


def typecheck(board: Mapping, workdir: Path) -> list[str]:
    """Compiles :func:`typescript_module` of ``board`` with the pinned ``tsc``.

    Args:
        board: the dashboard JSON as a dict.
        workdir: scratch folder (the module and a ``node_modules`` link are written there).

    Returns:
        One line per type error, ``line N `<source line>`: TSxxxx message`` (empty when it passes).

    Raises:
        SchemaCheckError: packages missing, or tsc failed without reporting a type error.
        ValueError: a panel type without a known options type.
    """
    modules = find_node_modules()
    node = _node()
    workdir.mkdir(parents=True, exist_ok=True)
    source = typescript_module(board)
    (workdir / MODULE_NAME).write_text(source)
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(modules, target_is_directory=True)
    cmd = [node, str(modules / "typescript" / "bin" / "tsc"), "--noEmit", "--strict", "--pretty", "false"]
    cmd += ["--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", MODULE_NAME]
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=TSC_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SchemaCheckError(f"tsc did not finish within {TSC_TIMEOUT_S} s") from exc
    if proc.returncode == 0:
        return []
    source_lines = source.splitlines()
    problems = []
    for line in proc.stdout.splitlines():
        found = _TSC_ERROR.match(line)
        if found and Path(found["file"]).name == MODULE_NAME:
            number = int(found["line"])
            problems.append(f"line {number} `{source_lines[number - 1].strip()}`: {found['code']} {found['message']}")
        elif found:  # an error inside the schema package itself: the setup is broken, not the board
            raise SchemaCheckError(f"tsc failed in {found['file']}: {found['message']}")
        elif problems and line.startswith(" "):  # the rest of a chained message
            problems[-1] += " " + line.strip()
    if not problems:
        raise SchemaCheckError(f"tsc exited {proc.returncode} without a type error: {(proc.stdout + proc.stderr).strip()[-500:]}")
    return problems
