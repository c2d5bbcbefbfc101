"""The training corpus: fetch from (locally built) Debian packages, manifest, idempotence, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from restore_r1 import corpus
from restore_r1.corpus import CorpusError, CorpusPhoto
from restore_r1.images import write_image

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")


def _photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def _build_deb(tmp: Path, package: str, files: dict[str, np.ndarray]) -> Path:
    root = tmp / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 1.2-3\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n")
    for rel, img in files.items():
        write_image(root / rel, img)
    deb = tmp / f"{package}_1.2-3_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    return deb


class FakeApt:
    """``download(package, folder)`` copying prebuilt .debs; counts the calls."""

    def __init__(self, debs: dict[str, Path]) -> None:
        self.debs = debs
        self.calls: list[str] = []

    def __call__(self, package: str, folder: Path) -> Path:
        self.calls.append(package)
        if package not in self.debs:
            raise CorpusError(f"cannot fetch Debian package {package!r}: E: Unable to locate package {package}")
        return Path(shutil.copy(self.debs[package], folder))


PHOTOS = (
    CorpusPhoto("astronaut", "train", corpus.SKIMAGE, "astronaut", "public domain", "NASA"),
    CorpusPhoto("Leaf", "train", "pkg-a", "usr/share/a/Leaf.png", "GPL-2.0-or-later", "someone"),
    CorpusPhoto("Lake", "val", "pkg-a", "usr/share/a/Lake.png", "GPL-2.0-or-later", "someone"),
)


@needs_dpkg
def test_fetch_writes_split_folders_and_manifest_then_is_idempotent(tmp_path):
    deb = _build_deb(tmp_path, "pkg-a", {"usr/share/a/Leaf.png": _photo(1), "usr/share/a/Lake.png": _photo(2)})
    apt = FakeApt({"pkg-a": deb})
    out = tmp_path / "corpus"
    manifest = corpus.fetch_corpus(out, PHOTOS, download=apt)
    data = json.loads(manifest.read_text())
    assert data["splits"] == {"train": ["astronaut", "Leaf"], "val": ["Lake"]}
    leaf = next(e for e in data["photos"] if e["scene"] == "Leaf")
    assert leaf["version"] == "1.2-3" and leaf["package"] == "pkg-a" and leaf["file"] == "train/Leaf.png"
    assert leaf["size"] == (out / "train" / "Leaf.png").stat().st_size and len(leaf["sha256"]) == 64
    assert (out / "train" / "astronaut.png").is_file() and (out / "val" / "Lake.png").is_file()
    assert apt.calls == ["pkg-a"]
    corpus.fetch_corpus(out, PHOTOS, download=apt)
    assert apt.calls == ["pkg-a"], "a second fetch with intact files downloads nothing"
    (out / "val" / "Lake.png").write_bytes(b"truncated")
    with pytest.raises(CorpusError, match="missing or changed"):
        corpus.corpus_split_dir("val", out)
    corpus.fetch_corpus(out, PHOTOS, download=apt)
    assert apt.calls == ["pkg-a", "pkg-a"] and corpus.corpus_split_dir("val", out) == out / "val"


@needs_dpkg
def test_missing_file_in_package_names_it(tmp_path):
    deb = _build_deb(tmp_path, "pkg-a", {"usr/share/a/Leaf.png": _photo(1)})
    with pytest.raises(CorpusError, match="has no file usr/share/a/Lake.png"):
        corpus.fetch_corpus(tmp_path / "c", PHOTOS[1:], download=FakeApt({"pkg-a": deb}))


def test_unavailable_package_is_one_line_error(tmp_path):
    with pytest.raises(CorpusError, match="Unable to locate package pkg-a") as err:
        corpus.fetch_corpus(tmp_path / "c", PHOTOS[1:], download=FakeApt({}))
    assert "\n" not in str(err.value)


def test_missing_corpus_says_how_to_fetch(tmp_path):
    with pytest.raises(CorpusError, match="make data"):
        corpus.read_manifest(tmp_path / "nothing")


def test_table_refuses_duplicates_and_heldout_photos(tmp_path):
    dup = (PHOTOS[1], PHOTOS[1])
    with pytest.raises(CorpusError, match="listed twice"):
        corpus.fetch_corpus(tmp_path, dup, download=FakeApt({}))
    held = (CorpusPhoto("coffee", "train", corpus.SKIMAGE, "coffee", "x", "y"),)
    with pytest.raises(CorpusError, match="held-out"):
        corpus.fetch_corpus(tmp_path, held, download=FakeApt({}))


def test_shipped_table_has_twenty_training_scenes_and_disjoint_splits():
    train = {p.scene for p in corpus.split_photos("train")}
    val = {p.scene for p in corpus.split_photos("val")}
    assert len(train) >= 20 and len(val) >= 5 and not train & val
    assert all(p.licence and p.package for p in corpus.CORPUS_PHOTOS)
    with pytest.raises(ValueError, match="unknown corpus split"):
        corpus.split_photos("test")
