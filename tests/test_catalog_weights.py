"""The generic catalogue and the weights lookup."""

from __future__ import annotations

import hashlib

import pytest

from restore_r1.catalog import Catalogue
from restore_r1.errors import ChecksumError, WeightsNotFoundError
from restore_r1.weights import WeightSpec, candidate_paths, resolve_weights, weights_dir


def test_catalogue_lookup_and_suggestions():
    cat: Catalogue[int] = Catalogue("thing")
    cat.register("denoise_nlm", 1)
    cat.register("dehaze_dcp", 2)
    assert cat.get("dehaze_dcp") == 2
    assert cat.names() == ["denoise_nlm", "dehaze_dcp"]
    assert "denoise_nlm" in cat and len(cat) == 2
    with pytest.raises(KeyError, match="did you mean denoise_nlm"):
        cat.get("denoise_nl")
    with pytest.raises(KeyError, match="unknown thing 'zzz'"):
        cat.get("zzz")


def test_catalogue_refuses_duplicates_and_bad_names():
    cat: Catalogue[int] = Catalogue("thing")
    cat.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        cat.register("a", 2)
    with pytest.raises(ValueError, match="invalid"):
        cat.register(" a", 3)


def test_weights_lookup_order_and_checksum(tmp_path, monkeypatch):
    spec = WeightSpec("net/model.pt", source="https://example.org/model")
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "cache"))
    assert weights_dir() == tmp_path / "cache"
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights(spec)
    message = str(err.value)
    assert str(tmp_path / "cache" / "net" / "model.pt") in message
    assert "RESTORE_R1_WEIGHTS" in message and "example.org" in message

    cached = tmp_path / "cache" / "net" / "model.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert resolve_weights(spec) == cached

    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"mine")
    assert resolve_weights(spec, explicit) == explicit
    assert candidate_paths(spec, explicit)[0] == explicit

    good = WeightSpec("net/model.pt", source="x", sha256=hashlib.sha256(b"weights").hexdigest())
    assert resolve_weights(good) == cached
    bad = WeightSpec("net/model.pt", source="x", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="differs"):
        resolve_weights(bad)


def test_packaged_copy_is_looked_at_last(tmp_path, monkeypatch):
    shipped = tmp_path / "package" / "model.safetensors"
    shipped.parent.mkdir()
    shipped.write_bytes(b"shipped")
    spec = WeightSpec("net/model.safetensors", source="x", sha256=hashlib.sha256(b"shipped").hexdigest(), packaged=shipped)
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "cache"))
    assert candidate_paths(spec) == [tmp_path / "cache" / "net" / "model.safetensors", shipped]
    assert resolve_weights(spec) == shipped
    shipped.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError, match=str(shipped)):
        resolve_weights(spec)
    shipped.unlink()
    with pytest.raises(WeightsNotFoundError, match=str(shipped)):
        resolve_weights(spec)
