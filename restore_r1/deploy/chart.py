"""The Helm chart, rendered and checked offline (no helm binary, no cluster).

Helm itself runs as a library (PyPI ``helm-python-sdk``: Helm v4's Go SDK behind a C ABI); the
built-in Kubernetes kinds are checked against the JSON schemas bundled in ``kubernetes-validate``;
the alert rules are unit-tested with ``promtool test rules`` (Debian's prometheus package, unpacked
by ``make promtool``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

#: Repository root (the chart is not part of the Python package).
REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "restore-r1"
EXAMPLES = {"gpu": CHART_DIR / "examples" / "values-gpu.yaml", "cpu": CHART_DIR / "examples" / "values-cpu.yaml"}
RULE_TESTS = CHART_DIR / "tests" / "alerts-test.yaml"
#: The rendered rules file the promtool test file names in its rule_files.
RULES_FILE_NAME = "alerts.yaml"
#: Release name and namespace the promtool cases were written for.
TEST_RELEASE = "restore-r1"
TEST_NAMESPACE = "serving"
#: Kubernetes version the manifests are validated against (kubernetes-validate bundles schemas).
KUBE_VERSION = "1.30.0"
#: Kinds whose schemas are not built in (Prometheus Operator CRDs): checked by tests instead.
CRD_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
#: What a cluster with the Prometheus Operator's CRDs serves (``.Capabilities.APIVersions``; on
#: the command line ``helm template --api-versions ...``). :func:`render` assumes them unless told.
MONITORING_API_VERSIONS = (
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
#: Where ``make promtool`` unpacks Debian's prometheus package; $RESTORE_R1_PROMTOOL overrides.
PROMTOOL_ENV = "RESTORE_R1_PROMTOOL"
PROMTOOL_CACHE = REPO_ROOT / ".cache" / "promtool" / "usr" / "bin" / "promtool"
PROMTOOL_TIMEOUT_S = 120


class ChartError(RuntimeError):
    """The chart does not lint, render or validate; the message lists every problem."""


def load_values(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A values file as a dict (empty file -> ``{}``)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ChartError(f"values file {path} holds a {type(data).__name__}, not a mapping")
    return data


def lint(values: Mapping[str, Any] | None = None, chart_dir: Path = CHART_DIR) -> list[str]:
    """``helm lint --strict``: the list of warnings and errors (empty when clean).

    Info-level findings (e.g. "icon is recommended") are not returned.
    """
    import helm_python as helm

    report = helm.lint(chart_dir, dict(values) if values is not None else None, strict=True)
    warning = 2
    problems = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m["severity"] >= warning]
    return problems + [e for e in report.get("errors", []) if not any(e in p for p in problems)]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = TEST_RELEASE,
    namespace: str = TEST_NAMESPACE,
    chart_dir: Path = CHART_DIR,
    api_versions: Sequence[str] = MONITORING_API_VERSIONS,
) -> list[dict[str, Any]]:
    """Render the chart (``helm template``) and parse every manifest.

    Values are validated against ``values.schema.json`` first (as ``helm install`` does).
    ``api_versions`` are the API versions the simulated cluster serves beyond the built-in ones
    (``helm template --api-versions``): by default the Prometheus Operator's; ``()`` is a cluster
    without them.

    Returns:
        The Kubernetes objects, in template order (NOTES.txt and empty documents left out).

    Raises:
        ChartError: if the values fail the schema or a template fails.
    """
    import helm_python as helm

    with helm.Chart.load(chart_dir) as chart:
        try:
            chart.validate_schema(dict(values) if values is not None else None)
            # Chart.render does not expose the C API's api_versions option (helm's --api-versions).
            opts = {"name": release, "namespace": namespace, "is_install": True, "api_versions": list(api_versions)}
            manifests = json.loads(
                helm._native.call_string("helm_render", chart._raw(), helm.chart._dumps(dict(values) if values is not None else None), json.dumps(opts))
            )
        except helm.HelmError as exc:
            raise ChartError(str(exc)) from exc
    objects: list[dict[str, Any]] = []
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(manifests[template]) if doc)
    return objects


def by_kind(objects: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    """The objects of one kind."""
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    """The only object of a kind.

    Raises:
        ChartError: if there is not exactly one.
    """
    found = by_kind(objects, kind)
    if len(found) != 1:
        raise ChartError(f"expected one {kind}, rendered {len(found)}")
    return found[0]


def validate_builtin(objects: Iterable[Mapping[str, Any]], kube_version: str = KUBE_VERSION) -> list[str]:
    """Check every built-in kind against Kubernetes' JSON schema (strict: unknown fields fail).

    Returns:
        One line per invalid object (empty when all pass).

    Raises:
        ChartError: if a kind outside :data:`CRD_KINDS` has no bundled schema.
    """
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    problems: list[str] = []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(dict(obj), kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{name}: {path}: {exc.message}")
        except SchemaNotFoundError as exc:
            raise ChartError(f"{name}: {exc.message}") from exc
    return problems


def find_promtool() -> Path:
    """The promtool binary: $RESTORE_R1_PROMTOOL, then ``make promtool``'s copy, then $PATH.

    Raises:
        ChartError: if none exists (the message says how to get one).
    """
    candidates = [os.environ.get(PROMTOOL_ENV), str(PROMTOOL_CACHE), shutil.which("promtool")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ChartError(f"promtool not found at ${PROMTOOL_ENV}, {PROMTOOL_CACHE} or on PATH; run `make promtool`")


def run_rule_tests(rule: Mapping[str, Any], workdir: Path, tests: Path = RULE_TESTS) -> subprocess.CompletedProcess:
    """``promtool test rules`` on a rendered PrometheusRule.

    Writes the rule's ``spec.groups`` as :data:`RULES_FILE_NAME` next to a copy of ``tests`` in
    ``workdir`` and runs promtool there. ``promtool check rules`` runs first.

    Returns:
        The finished promtool process (returncode 0 when every case passes); output in stdout.
    """
    promtool = find_promtool()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / RULES_FILE_NAME).write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    shutil.copyfile(tests, workdir / tests.name)
    check = subprocess.run(
        [str(promtool), "check", "rules", RULES_FILE_NAME], cwd=workdir, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, check=False
    )
    if check.returncode != 0:
        return check
    return subprocess.run([str(promtool), "test", "rules", tests.name], cwd=workdir, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, check=False)
