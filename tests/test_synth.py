"""Data-set synthesis: manifest, determinism, restartability, bad inputs; the bundled photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from restore_r1 import synth
from restore_r1.cleanimages import ALL_NAMES, HELDOUT_NAMES, TRAIN_NAMES, export_clean, load_clean, split_names
from restore_r1.images import read_image, write_image

MANIFEST_FIELDS = {
    "id", "case", "case_name", "setting", "degradations", "params", "seed", "index", "source", "crop", "crop_size",
    "depth", "lq", "gt",
}  # fmt: skip


@pytest.fixture(scope="module")
def sources() -> dict[str, np.ndarray]:
    return {
        "cat.png": np.ascontiguousarray(load_clean("chelsea")[60:140, 120:220]),  # 80×100
        "rocket.jpg": np.ascontiguousarray(load_clean("rocket")[200:290, 300:380]),  # 90×80
    }


@pytest.fixture
def images_dir(tmp_path, sources) -> Path:
    folder = tmp_path / "clean"
    for name, img in sources.items():
        write_image(folder / name, img)
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- bundled photos -------------------------------------------------------------------------------


def test_bundled_split_is_fixed_disjoint_and_two_thirds_train():
    assert set(TRAIN_NAMES).isdisjoint(HELDOUT_NAMES)
    assert set(TRAIN_NAMES) | set(HELDOUT_NAMES) == set(ALL_NAMES)
    assert len(TRAIN_NAMES) / len(ALL_NAMES) == pytest.approx(2 / 3)
    assert split_names("heldout") == HELDOUT_NAMES
    with pytest.raises(ValueError, match="split"):
        split_names("test")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_bundled_photos_load_offline_as_colour(name):
    img = load_clean(name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 300
    # real colour: the channels differ
    assert np.abs(img[:, :, 0].astype(int) - img[:, :, 2]).mean() > 5


def test_unknown_bundled_photo():
    with pytest.raises(KeyError, match="astronaut"):
        load_clean("astronot")


def test_export_clean_heldout(tmp_path):
    paths = export_clean(tmp_path / "x", split="heldout")
    assert [p.name for p in paths] == [f"{n}.png" for n in HELDOUT_NAMES]
    assert np.array_equal(read_image(paths[0]), load_clean(HELDOUT_NAMES[0]))


# --- building -------------------------------------------------------------------------------------


def test_manifest_and_files(tmp_path, images_dir, sources):
    out = tmp_path / "out"
    summary = synth.build_dataset(out, images_dir, cases=[1, 5], per_case=2, seed=3, crop=64, progress=False)
    assert (summary.sources, summary.pairs, summary.written, summary.skipped, summary.failures) == (2, 8, 8, 0, [])
    records = synth.read_manifest(out)
    assert len(records) == 8 and len({r["id"] for r in records}) == 8
    for r in records:
        assert set(r) == MANIFEST_FIELDS
        assert r["seed"] == 3 and r["crop_size"] == 64
        assert r["case_name"] == "+".join(r["degradations"])
        assert len(r["params"]) == len(r["degradations"])
        gt, lq = read_image(out / r["gt"]), read_image(out / r["lq"])
        assert gt.shape == lq.shape == (64, 64, 3) and not np.array_equal(gt, lq)
        box = r["crop"]
        src = sources[r["source"]]
        expected = src[box["top"] : box["top"] + box["height"], box["left"] : box["left"] + box["width"]]
        if r["source"].endswith(".png"):  # lossless source: gt is exactly the crop
            assert np.array_equal(gt, expected)
    first = next(r for r in records if r["id"] == "cat_c01_000")
    assert first["setting"] == "I" and first["degradations"] == ["dark", "noise"]
    assert first["params"][0]["method"] in ("shift", "gamma", "linear")
    haze = next(r for r in records if r["case"] == 5)
    assert haze["params"][1]["depth"] == "prior" and haze["depth"] is None
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["id"] == records[0]["id"]


def test_pairs_do_not_depend_on_other_cases_or_on_cropping(tmp_path, images_dir):
    a = tmp_path / "a"
    b = tmp_path / "b"
    synth.build_dataset(a, images_dir, cases=[7], per_case=1, seed=0, crop=64, progress=False)
    synth.build_dataset(b, images_dir, cases=[2, 7, 11], per_case=2, seed=0, crop=64, progress=False)
    for name in ("lq/cat_c07_000.png", "gt/cat_c07_000.png", "lq/rocket_c07_000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    whole = tmp_path / "whole"
    synth.build_dataset(whole, images_dir, cases=[7], per_case=1, seed=0, crop=None, progress=False)
    params = lambda d: {r["id"]: r["params"] for r in synth.read_manifest(d)}  # noqa: E731
    assert params(whole) == params(a)  # crop and degradations use independent generators
    other = tmp_path / "other"
    synth.build_dataset(other, images_dir, cases=[7], per_case=1, seed=1, crop=64, progress=False)
    assert (other / "lq/cat_c07_000.png").read_bytes() != (a / "lq/cat_c07_000.png").read_bytes()


def test_chains_are_applied_in_order_and_recorded(tmp_path, images_dir):
    out = tmp_path / "out"
    summary = synth.build_dataset(out, images_dir, chains=["noise,jpeg", ("jpeg", "noise")], seed=0, crop=64, progress=False)
    assert (summary.pairs, summary.written) == (4, 4)
    records = {r["id"]: r for r in synth.read_manifest(out)}
    assert sorted(records) == ["cat_jpeg+noise_000", "cat_noise+jpeg_000", "rocket_jpeg+noise_000", "rocket_noise+jpeg_000"]
    for r in records.values():
        assert set(r) == MANIFEST_FIELDS and r["case"] is None and r["setting"] is None
        assert r["case_name"] == "+".join(r["degradations"]) and len(r["params"]) == len(r["degradations"])
    assert records["cat_noise+jpeg_000"]["degradations"] == ["noise", "jpeg"]
    assert records["cat_jpeg+noise_000"]["degradations"] == ["jpeg", "noise"]
    assert "quality" in records["cat_noise+jpeg_000"]["params"][1]


def test_chains_keep_the_cases_and_each_other_unchanged(tmp_path, images_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    synth.build_dataset(a, images_dir, cases=[4], chains=["noise,jpeg"], seed=0, crop=64, progress=False)
    synth.build_dataset(b, images_dir, cases=[2, 4], chains=["dark", "noise,jpeg"], seed=0, crop=64, progress=False)
    for name in ("lq/cat_c04_000.png", "lq/cat_noise+jpeg_000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    # The chain noise+jpeg is case 4's, but it draws from its own seed: no two ids share a pair.
    assert (a / "lq/cat_c04_000.png").read_bytes() != (a / "lq/cat_noise+jpeg_000.png").read_bytes()
    with pytest.raises(KeyError, match="did you mean haze"):
        synth.build_dataset(tmp_path / "c", images_dir, chains=["haz"], progress=False)
    assert synth.pair_id("cat", 3, 1) == "cat_c03_001" and synth.pair_id("cat", ("rain", "dark"), 1) == "cat_rain+dark_001"


def test_rerun_skips_finished_pairs_and_redoes_missing_ones(tmp_path, images_dir):
    out = tmp_path / "out"
    synth.build_dataset(out, images_dir, cases=[2, 4], per_case=1, seed=0, crop=64, progress=False)
    before = _tree(out)
    again = synth.build_dataset(out, images_dir, cases=[2, 4], per_case=1, seed=0, crop=64, progress=False)
    assert (again.written, again.skipped) == (0, 4)
    assert _tree(out) == before
    (out / "lq" / "cat_c04_000.png").unlink()
    third = synth.build_dataset(out, images_dir, cases=[2, 4], per_case=1, seed=0, crop=64, progress=False)
    assert (third.written, third.skipped) == (1, 3)
    assert _tree(out) == before  # same bytes, no duplicate manifest line
    more = synth.build_dataset(out, images_dir, cases=[2, 4], per_case=2, seed=0, crop=64, progress=False)
    assert (more.written, more.skipped) == (4, 4)
    assert len(synth.read_manifest(out)) == 8


def test_rerun_with_other_settings_is_refused(tmp_path, images_dir):
    out = tmp_path / "out"
    synth.build_dataset(out, images_dir, cases=[4], seed=0, crop=64, progress=False)
    with pytest.raises(ValueError, match="seed 0"):
        synth.build_dataset(out, images_dir, cases=[4], seed=1, crop=64, progress=False)
    with pytest.raises(ValueError, match="crop 64"):
        synth.build_dataset(out, images_dir, cases=[4], seed=0, crop=None, progress=False)


def test_interrupted_run_resumes_to_the_same_files(tmp_path, images_dir, monkeypatch):
    kwargs = dict(cases=[1, 3, 6], per_case=1, seed=5, crop=64, progress=False)
    reference = tmp_path / "reference"
    synth.build_dataset(reference, images_dir, **kwargs)

    out = tmp_path / "out"
    real_write = synth.write_image
    calls = {"n": 0}

    def failing_write(path, img):
        calls["n"] += 1
        if calls["n"] == 6:  # the lq of the third pair: its gt is written, its line is not
            raise KeyboardInterrupt("simulated kill")
        return real_write(path, img)

    monkeypatch.setattr(synth, "write_image", failing_write)
    with pytest.raises(KeyboardInterrupt):
        synth.build_dataset(out, images_dir, **kwargs)
    monkeypatch.setattr(synth, "write_image", real_write)
    assert len(synth.read_manifest(out)) == 2
    # leftovers of a hard kill: a partial manifest line and a temporary file
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write('{"id": "cat_c06_0')
    (out / "lq" / ".cat_c06_000.png.abc123.tmp").write_bytes(b"\x89PNG partial")
    assert len(synth.read_manifest(out)) == 2  # the partial line is ignored

    resumed = synth.build_dataset(out, images_dir, **kwargs)
    assert (resumed.written, resumed.skipped) == (4, 2)
    assert _tree(out) == _tree(reference)
    assert not list(out.rglob("*.tmp"))


def test_bad_images_are_reported_and_skipped(tmp_path, images_dir):
    good = (images_dir / "cat.png").read_bytes()
    (images_dir / "truncated.png").write_bytes(good[: len(good) // 3])
    (images_dir / "notes.png").write_text("not an image")
    (images_dir / "readme.txt").write_text("ignored: no image suffix")
    out = tmp_path / "out"
    summary = synth.build_dataset(out, images_dir, cases=[2], per_case=1, crop=64, progress=False)
    failed = sorted(name for name, _ in summary.failures)
    assert failed == ["notes.png", "truncated.png"]
    assert all(name in message for name, message in summary.failures)
    assert summary.ignored == ["readme.txt"]
    assert (summary.sources, summary.written) == (4, 2)
    assert sorted(r["source"] for r in synth.read_manifest(out)) == ["cat.png", "rocket.jpg"]


def test_small_images_are_used_whole(tmp_path, sources):
    folder = tmp_path / "small"
    write_image(folder / "tiny.png", sources["cat.png"][:40, :70])
    out = tmp_path / "out"
    synth.build_dataset(out, folder, cases=[4], crop=64, progress=False)
    (record,) = synth.read_manifest(out)
    assert record["crop"] == {"top": 0, "left": record["crop"]["left"], "height": 40, "width": 64}
    assert read_image(out / record["lq"]).shape == (40, 64, 3)


def test_depth_maps_are_used_when_present(tmp_path, images_dir):
    depth_dir = tmp_path / "depth"
    depth_dir.mkdir()
    ramp = np.tile(np.linspace(1.0, 0.0, 80)[:, None], (1, 100))  # cat.png is 80×100
    np.save(depth_dir / "cat.npy", ramp)
    out = tmp_path / "out"
    synth.build_dataset(out, images_dir, cases=[6], crop=64, depth_dir=depth_dir, progress=False)
    records = {r["source"]: r for r in synth.read_manifest(out)}
    assert records["cat.png"]["depth"] == "cat.npy" and records["cat.png"]["params"][0]["depth"] == "given"
    assert records["rocket.jpg"]["depth"] is None and records["rocket.jpg"]["params"][0]["depth"] == "prior"


def test_bundled_heldout_photos_by_default(tmp_path):
    out = tmp_path / "out"
    summary = synth.build_dataset(out, cases="4", crop=32, split="heldout", progress=False)
    assert summary.written == 2
    assert sorted(r["source"] for r in synth.read_manifest(out)) == sorted(HELDOUT_NAMES)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(per_case=0), "per_case"),
        (dict(seed=-1), "seed"),
        (dict(crop=8), "crop"),
        (dict(cases="0"), "out of range"),
        (dict(cases=[99]), "unknown case"),
    ],
)
def test_bad_arguments(tmp_path, images_dir, kwargs, message):
    with pytest.raises((ValueError, KeyError), match=message):
        synth.build_dataset(tmp_path / "out", images_dir, progress=False, **kwargs)


def test_split_only_for_bundled(tmp_path, images_dir):
    with pytest.raises(ValueError, match="bundled"):
        synth.build_dataset(tmp_path / "out", images_dir, split="train", progress=False)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        synth.build_dataset(tmp_path / "out", tmp_path / "empty", progress=False)


def test_pair_seed_sequence_is_stable():
    a = synth.pair_seed_sequence(0, "cat.png", 1, 0).generate_state(2)
    assert np.array_equal(a, synth.pair_seed_sequence(0, "cat.png", 1, 0).generate_state(2))
    assert not np.array_equal(a, synth.pair_seed_sequence(0, "cat.png", 1, 1).generate_state(2))
    assert not np.array_equal(a, synth.pair_seed_sequence(0, "cat.jpg", 1, 0).generate_state(2))


def test_the_none_chain_makes_clean_pairs(tmp_path, images_dir):
    out = tmp_path / "out"
    synth.build_dataset(out, images_dir, chains=["none"], seed=0, crop=64, progress=False)
    records = {r["id"]: r for r in synth.read_manifest(out)}
    assert sorted(records) == ["cat_none_000", "rocket_none_000"]
    for ident, r in records.items():
        assert r["degradations"] == [] and r["params"] == [] and r["case_name"] == "none"
        assert (out / r["lq"]).read_bytes() == (out / r["gt"]).read_bytes()
    with pytest.raises(ValueError, match="stands alone"):
        synth.build_dataset(tmp_path / "bad", images_dir, chains=["none,noise"], progress=False)
