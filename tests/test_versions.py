"""The pixel lock (constraints.txt): one set of pixel-library versions in every place a tool runs,
recorded by the evaluation and the Triton repository, and checked when a model loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from restore_r1.serving import backend as b
from restore_r1.serving.repository import write_repository
from restore_r1.versions import ALLOW_MISMATCH_ENV, PIXEL_PACKAGES, check_versions, format_versions, parse_versions, pixel_versions, version_differences
from tests import serving_pb_stub as stub

ROOT = Path(__file__).resolve().parents[1]
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"


def lock() -> dict[str, str]:
    """``{distribution: version}`` pinned by constraints.txt."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
            assert m, f"constraints.txt: {line!r} is not an exact pin"
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_the_lock_pins_every_pixel_package_and_this_environment_follows_it():
    pins = lock()
    assert set(PIXEL_PACKAGES) <= set(pins), set(PIXEL_PACKAGES) - set(pins)
    assert version_differences({k: pins[k] for k in PIXEL_PACKAGES}) == []


@pytest.mark.skipif(not TRITON_PYTHON.exists(), reason="no .venv-triton; `make triton-venv` builds it")
def test_the_triton_environment_runs_the_same_versions():
    code = "import json; from restore_r1.versions import pixel_versions; print(json.dumps(pixel_versions()))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([str(TRITON_PYTHON), "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == pixel_versions()


def test_versions_round_trip_and_differences_name_each_package():
    here = pixel_versions()
    assert parse_versions(format_versions(here)) == here
    other = {**here, "numpy": "2.4.6", "opencv-python-headless": "5.0.0"}
    diffs = version_differences(other)
    assert len(diffs) == 2 and any("numpy: expected 2.4.6" in d for d in diffs)
    with pytest.raises(ValueError, match="not name==version"):
        parse_versions("numpy=1.26")


def test_a_model_exported_under_other_versions_refuses_to_load_unless_allowed(tmp_path, monkeypatch):
    repo = write_repository(tmp_path / "repo")
    args = stub.model_args(repo / b.tool_model_name("clahe"))
    config = json.loads(args["model_config"])
    assert parse_versions(config["parameters"][b.PARAM_PIXEL_VERSIONS]["string_value"]) == pixel_versions()
    model = b.make_model("tool", stub)()
    model.initialize(args)  # the exporting environment itself: loads

    config["parameters"][b.PARAM_PIXEL_VERSIONS]["string_value"] = format_versions({**pixel_versions(), "opencv-python-headless": "5.0.0"})
    args["model_config"] = json.dumps(config)
    monkeypatch.delenv(ALLOW_MISMATCH_ENV, raising=False)
    with pytest.raises(RuntimeError, match="opencv-python-headless: expected 5.0.0"):
        b.make_model("tool", stub)().initialize(args)
    monkeypatch.setenv(ALLOW_MISMATCH_ENV, "1")
    b.make_model("tool", stub)().initialize(args)  # served, with the difference logged
    assert check_versions({"numpy": "0.0"}, "x") == [f"numpy: expected 0.0, running {pixel_versions()['numpy']}"]
