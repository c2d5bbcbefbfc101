"""The same pixels served as evaluated: the shipped policy and its real tools, all 15 cases on
three photos, restored in-process and through a real Triton server (the tritonserver of
.venv-triton, which runs the pixel lock of constraints.txt like the main venv), must give the same
tool sequences and the same bytes. Skipped when the Triton venv is missing (``make test`` builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from restore_r1.degradations import CASES
from restore_r1.serving.repository import write_repository
from restore_r1.serving.server import DEFAULT_VENV, VENV_ENV, TritonServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
VENV = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
if not (VENV / "bin" / "python").exists():
    pytest.skip(f"no Triton venv at {VENV}; run `make triton-venv`", allow_module_level=True)

#: Photos (bundled with the package) and the crop each case is drawn on: 3 × 15 = 45 restores.
PHOTOS = ("astronaut", "coffee", "chelsea")
CROP = (96, 128)


def degraded_inputs(folder: Path) -> list[Path]:
    from restore_r1.cleanimages import load_clean
    from restore_r1.degradations import apply_case
    from restore_r1.images import write_image

    paths = []
    for i, name in enumerate(PHOTOS):
        clean = np.ascontiguousarray(load_clean(name)[: CROP[0], : CROP[1]])
        for case in sorted(CASES):
            lq, _ = apply_case(case, clean, np.random.default_rng(1000 * i + case))
            paths.append(write_image(folder / f"{name}_case{case:02d}.png", lq))
    return paths


def test_all_cases_served_by_triton_equal_the_in_process_agent_byte_for_byte(tmp_path):
    from restore_r1.agent.inference import Agent
    from restore_r1.images import read_image

    inputs = degraded_inputs(tmp_path / "in")
    agent = Agent.load(None)  # the shipped default policy, as the served repository resolves it
    expected = {p.stem: agent.restore(read_image(p)) for p in inputs}
    assert sum(len(r.tools) for r in expected.values()) >= len(inputs), "the shipped policy should act on most degraded inputs"

    repo = write_repository(tmp_path / "repo")  # no exported policy: the policy model loads the shipped one
    srv = TritonServer(repo, VENV, 0, 0, 0, log_path=tmp_path / "tritonserver.log")
    srv.start()
    try:
        out = tmp_path / "served"
        cmd = [str(Path(sys.executable).parent / "restore-r1"), "restore", str(tmp_path / "in"), "-o", str(out), "--triton-url", srv.http_url, "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(inputs)
    differing = []
    for line in lines:
        stem = Path(line["input"]).stem
        exp, got = expected[stem], read_image(line["output"])
        if line["tools"] != exp.tools or got.shape != exp.image.shape or not np.array_equal(got, exp.image):
            levels = int(np.abs(got.astype(int) - exp.image.astype(int)).max()) if got.shape == exp.image.shape else -1
            differing.append(f"{stem}: served {line['tools']} vs in-process {exp.tools}, max difference {levels} levels")
    assert not differing, "\n".join(differing)
