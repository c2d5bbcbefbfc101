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


@pytest.fixture(scope="session")
def tiny_train_data(tmp_path_factory):
    """Six 64-pixel degraded crops (cases 1 and 4 of three scikit-image photos): a data set folder
    small enough for real training runs in tests (distributed, live metrics)."""
    from restore_r1.cleanimages import load_clean
    from restore_r1.cli import main
    from restore_r1.images import write_image

    root = tmp_path_factory.mktemp("tiny-train-data")
    for name in ("astronaut", "chelsea", "motorcycle_left"):
        write_image(root / "photos" / f"{name}.png", load_clean(name))
    assert main(["synth", "--images", str(root / "photos"), "--crop", "64", "--cases", "1,4", "--out", str(root / "data"), "--no-progress"]) == 0
    return root / "data"
