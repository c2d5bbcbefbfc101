"""Test-wide settings: no hub downloads, a temporary weights folder, small thread pools."""

from __future__ import annotations

import os

# Absent weights must fail in milliseconds, never try the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_weights_dir(tmp_path_factory, monkeypatch):
    """Each test sees an empty weights folder unless it sets one itself."""
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path_factory.mktemp("weights")))
