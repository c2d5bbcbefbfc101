"""Reading a ``kfp.local`` run folder: which task wrote which artifact where, and their outputs.

``kfp.local`` writes ``PIPELINE_ROOT/<pipeline>-<timestamp>/<task>/`` with one entry per output
artifact and ``executor_output.json`` (parameter outputs and artifact metadata).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXECUTOR_OUTPUT = "executor_output.json"


@dataclass
class TaskOutputs:
    """One task of a local run."""

    task: str
    artifacts: dict[str, Path] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


def latest_run_dir(pipeline_root: str | os.PathLike, pipeline_name: str) -> Path:
    """The newest run folder of ``pipeline_name`` under ``pipeline_root``.

    Raises:
        FileNotFoundError: no run of that pipeline there.
    """
    runs = sorted((p for p in Path(pipeline_root).glob(f"{pipeline_name}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"{pipeline_root}: no run folder of pipeline {pipeline_name!r}")
    return runs[-1]


def read_run(run_dir: str | os.PathLike) -> list[TaskOutputs]:
    """The tasks of a local run folder, in the order they finished."""
    tasks = []
    for task_dir in sorted((p for p in Path(run_dir).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime):
        out = TaskOutputs(task_dir.name)
        executor = task_dir / EXECUTOR_OUTPUT
        if executor.is_file():
            data = json.loads(executor.read_text())
            out.parameters = dict(data.get("parameterValues", {}))
        for entry in sorted(task_dir.iterdir()):
            if entry.name != EXECUTOR_OUTPUT and not entry.name.startswith("."):
                out.artifacts[entry.name] = entry
        tasks.append(out)
    return tasks
