"""The whole pipeline under kfp.local (SubprocessRunner), twice, with tiny settings.

The first run registers version 1 as production and exports it for Triton. The second run, with
the same seed, trains the same policy and gets the same evaluation: it does not beat production,
so the gate stops it and the registry still holds one version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kfp", reason="kfp is installed by `make venv` (the kubeflow extra)")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--cases",
    "1",
    "--eval-cases",
    "1",
    "--per-case",
    "1",
    "--crop",
    "96",
    "--steps",
    "2",
    "--group-size",
    "2",
    "--batch-images",
    "1",
    "--max-steps",
    "2",
    "--eval-methods",
    "input,policy",
]


def run_pipeline(out: Path, registry: Path, cache: Path) -> str:
    env = {**os.environ, "RESTORE_R1_REGISTRY_CACHE": str(cache)}
    env.pop("RESTORE_R1_REGISTRY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run_local", "--out", str(out), "--registry", str(registry), *TINY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_pipeline_runs_locally_registers_then_gates(tmp_path):
    from restore_r1.registry import open_registry

    registry_dir = tmp_path / "registry"
    first = run_pipeline(tmp_path / "out1", registry_dir, tmp_path / "cache")
    assert "PASSED: the policy will be registered" in first and "No production version yet" in first
    for task in ("synthesize", "train-grpo", "evaluate", "gate", "register", "export-serving"):
        assert f"- {task}\n" in first, task
    assert "# Evaluation summary" in first and "| policy |" in first
    registry = open_registry(registry_dir, cache_dir=tmp_path / "cache")
    version = registry.get("restore-r1-policy", "production")
    assert version.version == 1 and "policy_psnr" in version.metrics and version.run["id"]
    assert version.dataset["pairs"] == 4 and len(version.dataset["manifest_sha256"]) == 64
    assert version.parameters["updates"] == 2 and version.parameters["evaluation"]["cases"] == [1]
    # exact types survive KFP's artifact metadata (which stores every number as a float)
    assert type(version.parameters["updates"]) is int and type(version.dataset["pairs"]) is int
    entry = tmp_path / "out1" / "triton_repository" / "restore_r1_policy" / "1" / "policy"
    assert (entry / "policy.safetensors").read_bytes() == (registry.pull("restore-r1-policy", 1) / "policy.safetensors").read_bytes()

    second = run_pipeline(tmp_path / "out2", registry_dir, tmp_path / "cache")
    assert "NOT PASSED" in second and "does not beat production v1" in second
    assert "- register\n" not in second and "- export-serving\n" not in second
    assert registry.version_numbers("restore-r1-policy") == [1]
