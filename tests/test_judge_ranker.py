"""The ranker judge: features, model file round trip and checks, the fit's pieces on known data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from restore_r1.errors import ChecksumError, WeightsNotFoundError
from restore_r1.judges import fit as F
from restore_r1.judges.features import JUDGE_FEATURE_DIM, JUDGE_FEATURES, aggd_fit, ggd_fit, judge_features, tiles
from restore_r1.judges.ranker import RankerError, RankerJudge, RankerModel, level_from_db, load_ranker, save_ranker
from tests.scenes import textured_scene as make_scene


@pytest.fixture
def textured_scene() -> np.ndarray:
    return make_scene(0, 128)


def _model(seed: int = 0, hidden: int = 8) -> RankerModel:
    rng = np.random.default_rng(seed)
    d = JUDGE_FEATURE_DIM
    layers = [(rng.normal(size=(hidden, d)) * 0.1, rng.normal(size=hidden) * 0.1), (rng.normal(size=(1, hidden)), np.zeros(1))]
    return RankerModel(JUDGE_FEATURES, rng.normal(size=d), np.abs(rng.normal(size=d)) + 0.5, layers, 20.0, 6.0, {"note": "test"})


def test_feature_vector_matches_its_names(textured_scene):
    (x,) = judge_features([textured_scene])
    assert x.shape == (1, JUDGE_FEATURE_DIM) and len(set(JUDGE_FEATURES)) == JUDGE_FEATURE_DIM and np.isfinite(x).all()


def test_ggd_fit_recovers_gaussian_and_laplacian_shapes():
    rng = np.random.default_rng(0)
    assert ggd_fit(rng.normal(size=200_000))[0] == pytest.approx(2.0, abs=0.05)
    assert ggd_fit(rng.laplace(size=200_000))[0] == pytest.approx(1.0, abs=0.05)
    shape, mean, lvar, rvar = aggd_fit(rng.normal(size=200_000))
    assert shape == pytest.approx(2.0, abs=0.1) and abs(mean) < 0.02 and lvar == pytest.approx(rvar, rel=0.02)


def test_tiles_cover_large_images_deterministically():
    img = np.zeros((600, 900, 3), np.uint8)
    ts = tiles(img)
    assert len(ts) == 4 and all(t.shape == (256, 256, 3) for t in ts)
    assert len(tiles(img[:200, :200])) == 1


def test_level_map_is_monotonic_and_bounded():
    db = np.array([-50.0, 10.0, 22.0, 30.0, 200.0])
    lv = level_from_db(db)
    assert np.all(np.diff(lv) > 0) and lv[2] == pytest.approx(3.0) and 1.0 <= lv.min() and lv.max() <= 5.0


def test_save_load_round_trip_and_checks(tmp_path, textured_scene):
    model = _model()
    path = save_ranker(model, tmp_path / "r.json")
    loaded = load_ranker(path)
    x = np.random.default_rng(1).normal(size=(5, JUDGE_FEATURE_DIM))
    np.testing.assert_allclose(loaded.predict_db(x), model.predict_db(x), rtol=1e-5, atol=1e-4)
    judge = RankerJudge(path=str(path))
    assert len(judge.score([textured_scene, textured_scene[:64, :64]])) == 2
    meta = json.loads(path.read_text())
    (tmp_path / "r.safetensors").write_bytes((tmp_path / "r.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(ChecksumError, match="sha256"):
        load_ranker(path)
    path.write_text(json.dumps({**meta, "features": ["a"]}))
    with pytest.raises(RankerError, match="other features"):
        load_ranker(path)
    with pytest.raises(WeightsNotFoundError, match="make judge"):
        load_ranker(tmp_path / "absent.json")


def test_ranking_pairs_by_hand():
    g = F.Group("s", ["noise"], np.zeros((3, 2)), np.array([30.0, 20.0, 20.2]), ["clean", "degraded", "tool"])
    x, y, better, worse, weight = F.ranking_pairs([g, g], min_gap_db=0.3)
    # pairs with |ΔPSNR| >= 0.3: (0,1), (0,2) in each group; (1,2) differs by 0.2 only
    assert better.tolist() == [0, 0, 3, 3] and worse.tolist() == [1, 2, 4, 5]
    np.testing.assert_allclose(weight[:2], [0.2 + 1.0, 0.2 + 1.0])  # |Δ| of 10 and 9.8 dB, capped at 6
    assert x.shape == (6, 2) and y.tolist() == [30.0, 20.0, 20.2] * 2


def _toy_groups(n_groups: int, seed: int) -> list[F.Group]:
    """Groups whose PSNR is a known non-linear function of two feature columns."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_groups):
        x = np.zeros((12, JUDGE_FEATURE_DIM))
        x[:, :2] = rng.normal(size=(12, 2))
        psnr = 20 + 4 * x[:, 0] - 2 * np.abs(x[:, 1])
        kinds = ["clean", "degraded"] + ["tool"] * 10
        groups.append(F.Group("toy", ["noise"], x, psnr, kinds))
    return groups


def test_fit_learns_a_known_ranking_and_evaluation_reports_it():
    cfg = F.FitConfig(epochs=150, hidden=32, pair_batch=4000, seed=0)
    model = F.fit_ranker(_toy_groups(40, 0), cfg)
    report = F.evaluate_ranker(model, _toy_groups(20, 1))
    assert report["pairwise_accuracy"] > 0.9 and report["rho_psnr"]["noise"] > 0.9
    assert 0.8 < report["one_step_recovery"] <= 1.0 + 1e-9


def test_build_group_is_deterministic_and_holds_every_kind(tmp_path, textured_scene):
    from restore_r1.images import write_image

    photo = write_image(tmp_path / "scene.png", np.ascontiguousarray(np.tile(textured_scene, (2, 2, 1))[:96, :96]))
    cfg = F.FitConfig(size=48, clean_tools=1, second_random_tools=1)
    a = F.build_group(str(photo), 3, cfg, "mixed")
    b = F.build_group(str(photo), 3, cfg, "mixed")
    np.testing.assert_array_equal(a.x, b.x)
    assert {"clean", "degraded", "tool", "tool2", "clean_tool"} <= set(a.kind) and a.psnr[a.kind.index("clean")] == F.PSNR_CAP
    single = F.build_group(str(photo), 2, cfg, "single")
    assert single.degradations == ["jpeg"] and "tool2" not in single.kind


def test_exposure_jitter_re_exposes_the_clean_training_crop_only_when_asked(tmp_path, textured_scene):
    from restore_r1.images import write_image

    ramp = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2)
    np.testing.assert_array_equal(F.re_expose(ramp, 1.0), ramp)
    darker = F.re_expose(ramp, 1.5)
    assert darker[0, 0, 0] == 0 and darker[0, -1, 0] == 255, "no clipping: black and white stay"
    assert np.all(np.diff(darker[0, :, 0].astype(int)) >= 0) and darker.mean() < ramp.mean()
    assert F.FitConfig().exposure_jitter == 0.0, "make judge is unchanged"
    photo = write_image(tmp_path / "scene.png", np.ascontiguousarray(np.tile(textured_scene, (2, 2, 1))[:96, :96]))
    plain = F._group_start(str(photo), 3, F.FitConfig(size=48), "mixed")[3][0][0]
    jittered = F._group_start(str(photo), 3, F.FitConfig(size=48, exposure_jitter=0.5), "mixed")[3][0][0]
    assert plain.shape == jittered.shape and not np.array_equal(plain, jittered)
    np.testing.assert_array_equal(F._group_start(str(photo), 3, F.FitConfig(size=48, exposure_jitter=0.0), "mixed")[3][0][0], plain)


def test_group_cache_reuses_only_the_same_data_settings(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return _toy_groups(2, len(calls))

    a = F._cached_groups(tmp_path, "train", {"k": 1}, build)
    b = F._cached_groups(tmp_path, "train", {"k": 1}, build)
    assert len(calls) == 1 and np.array_equal(a[0].x, b[0].x)
    F._cached_groups(tmp_path, "train", {"k": 2}, build)
    assert len(calls) == 2
    (tmp_path / "train.pkl").write_bytes(b"not a pickle")
    F._cached_groups(tmp_path, "train", {"k": 2}, build)
    assert len(calls) == 3
