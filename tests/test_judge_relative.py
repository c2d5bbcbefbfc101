"""The relative judge: change features, model file, the fit's pieces, and its use in episodes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from restore_r1.agent.baselines import run_exploration
from restore_r1.judges import JudgeError, create_judge, judge_availability, judge_is_relative
from restore_r1.judges import fit as F
from restore_r1.judges.features import JUDGE_FEATURE_DIM, JUDGE_FEATURES, judge_features_one
from restore_r1.judges.ranker import RankerError, RankerModel, load_ranker, save_ranker
from restore_r1.judges.relative import (
    CHANGE_FEATURES,
    CONTEXT_FEATURES,
    CONTEXT_SOURCE,
    RELATIVE_FEATURE_DIM,
    RELATIVE_FEATURES,
    RELATIVE_KIND,
    RelativeJudge,
    change_features_one,
    context_features_one,
    context_of,
    is_relative,
    relative_features,
    relative_features_one,
)
from tests.scenes import textured_scene


@pytest.fixture
def scene() -> np.ndarray:
    return textured_scene(0, 128)


def _feature(ref: np.ndarray, img: np.ndarray, name: str) -> float:
    return float(relative_features_one(ref, img)[RELATIVE_FEATURES.index(name)])


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_features_match_their_names_and_are_finite(scene):
    assert len(set(RELATIVE_FEATURES)) == RELATIVE_FEATURE_DIM
    flat = np.full((40, 56, 3), 77, np.uint8)
    for ref, img in ((scene, _noisy(scene, 10)), (scene, scene), (flat, flat), (flat, _noisy(flat, 3))):
        x = relative_features_one(ref, img)
        assert x.shape == (RELATIVE_FEATURE_DIM,) and np.isfinite(x).all()


#: A context set for the tests (the shipped judge reads none: relative.CONTEXT_SOURCE).
CONTEXT = ("v_mean", "v_p05", "dark_channel_mean", "saturation_mean", "luma_hist00", "g_std")


def test_context_is_the_references_judge_features(scene):
    # The fit reads the context from the groups' stored judge features (fit.relative_rows); a
    # runtime judge computes it from the reference: both must agree bit for bit.
    assert RELATIVE_FEATURES == (*CHANGE_FEATURES, *CONTEXT_FEATURES) and len(CONTEXT_FEATURES) == len(CONTEXT_SOURCE)
    assert all(n in JUDGE_FEATURES for n in CONTEXT_SOURCE)
    dark = (scene * 0.25).astype(np.uint8)
    for ref in (scene, dark, _noisy(scene, 20)):
        ctx = context_features_one(ref, CONTEXT)
        assert ctx.shape == (len(CONTEXT),) and np.array_equal(ctx, context_of(judge_features_one(ref), CONTEXT))
        assert np.array_equal(relative_features_one(ref, dark, ctx)[len(CHANGE_FEATURES) :], ctx)
    assert context_features_one(dark, CONTEXT)[0] < context_features_one(scene, CONTEXT)[0]  # v_mean
    assert np.array_equal(relative_features_one(scene, dark), np.concatenate([change_features_one(scene, dark), context_features_one(scene)]))
    with pytest.raises(ValueError, match="no context feature 'nss0_ggd_shape'"):
        context_features_one(scene, ("v_mean", "nss0_ggd_shape"))


def test_fit_reads_the_context_it_was_configured_with():
    groups = _toy_groups(6, 0)
    model = F.fit_relative(groups, F.FitConfig(relative_epochs=5, relative_hidden=8, context=CONTEXT))
    assert model.features == (*CHANGE_FEATURES, *(f"ref_{n}" for n in CONTEXT)) and F.model_context(model) == CONTEXT
    rows = F.relative_rows(groups[0], CONTEXT)
    assert rows.shape == (len(groups[0].pairs), len(CHANGE_FEATURES) + len(CONTEXT))
    assert np.array_equal(rows[:, len(CHANGE_FEATURES) :], groups[0].x[groups[0].pairs[:, 0]][:, [JUDGE_FEATURES.index(n) for n in CONTEXT]])
    assert F.evaluate_relative(model, groups)["groups"] == 6


def test_features_describe_what_changed(scene):
    brighter = np.clip(scene.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    assert _feature(scene, brighter, "d_luma_mean") > 0.08
    blurred = cv2.GaussianBlur(scene, (0, 0), 2.0)
    assert _feature(scene, blurred, "band0_log_energy_ratio") < -1.0 and _feature(scene, blurred, "band0_residual_corr") < -0.5
    # removing white noise leaves a residual uncorrelated in space; blurring a clean image removes edges
    noisy = _noisy(scene, 20)
    denoised_residual = _feature(noisy, scene, "residual_autocorr_h")
    assert abs(denoised_residual) < abs(_feature(scene, blurred, "residual_autocorr_h"))
    assert _feature(scene, blurred, "residual_edge_corr") > _feature(noisy, scene, "residual_edge_corr")
    assert _feature(scene, scene, "ssim") == pytest.approx(1.0) and _feature(scene, noisy, "ssim") < 0.9


def test_tiled_features_and_bad_pairs(scene):
    big = cv2.resize(scene, (600, 400))
    (x,) = relative_features([big], [_noisy(big, 5)])
    assert x.shape == (4, RELATIVE_FEATURE_DIM)
    with pytest.raises(ValueError, match="reference is"):
        relative_features([scene], [scene[:64]])
    with pytest.raises(ValueError, match="1 references for 2 images"):
        relative_features([scene], [scene, scene])


def _model(seed: int = 0, hidden: int = 8) -> RankerModel:
    rng = np.random.default_rng(seed)
    d = RELATIVE_FEATURE_DIM
    layers = [(rng.normal(size=(hidden, d)) * 0.3, rng.normal(size=hidden) * 0.1), (rng.normal(size=(1, hidden)), np.zeros(1))]
    return RankerModel(RELATIVE_FEATURES, rng.normal(size=d), np.abs(rng.normal(size=d)) + 0.5, layers, 0.0, 5.0, {"note": "test"})


def test_model_file_round_trip_and_judge_calls(tmp_path, scene):
    path = save_ranker(_model(), tmp_path / "rel.json", kind=RELATIVE_KIND)
    judge = RelativeJudge(path=str(path))
    assert is_relative(judge) and not is_relative(object())
    noisy = _noisy(scene, 15)
    gains = judge.score_relative([noisy, noisy, noisy], [noisy, noisy.copy(), scene])
    assert gains[0] == 0.0 and gains[1] == 0.0 and np.isfinite(gains[2]) and gains[2] != 0.0
    with pytest.raises(JudgeError, match="--ref INPUT"):
        judge.score([scene])
    with pytest.raises(RankerError, match="kind 'relative'"):
        load_ranker(path)  # a relative model is not a ranker model
    with pytest.raises(RankerError, match="other features"):
        load_ranker(path, kind=RELATIVE_KIND, features=RELATIVE_FEATURES[:-1])


def test_shipped_relative_judge_loads_and_sees_a_denoised_image_as_a_gain(scene):
    ok, reason = judge_availability("relative")
    assert ok, reason
    assert judge_is_relative("relative") and not judge_is_relative("calibrated")
    judge = create_judge("relative")
    noisy = _noisy(scene, 25)
    denoised = cv2.fastNlMeansDenoisingColored(noisy, None, 15, 15, 7, 21)
    gain_denoise, gain_noise = judge.score_relative([noisy, scene], [denoised, noisy])
    assert gain_denoise > 0 > gain_noise


def test_relative_pairs_by_hand():
    kind = ["clean", "partial", "degraded", "tool", "tool", "tool2", "clean_tool"]
    what = ["", "noise", "noise+jpeg", "a", "b", "a>b", "c"]
    pairs = F.relative_pairs(kind, what)
    assert pairs == [(2, 2), (0, 1), (1, 2), (2, 3), (2, 4), (2, 5), (3, 5), (0, 6)]


def _toy_groups(n_groups: int, seed: int) -> list[F.Group]:
    """Groups whose PSNR gains over the degraded input are a known function of two feature columns."""
    rng = np.random.default_rng(seed)
    groups = []
    kinds = ["clean", "degraded"] + ["tool"] * 10
    for _ in range(n_groups):
        psnr = np.zeros(len(kinds))
        psnr[0], psnr[1] = 40.0, 20.0
        rx = np.zeros((len(kinds), len(CHANGE_FEATURES)))
        rx[1:, :2] = rng.normal(size=(len(kinds) - 1, 2))
        rx[0, :2] = 0.0  # the identity pair
        gains = 3 * rx[1:, 0] - 2 * np.abs(rx[1:, 1])
        psnr[2:] = 20 + gains[1:]
        pairs = np.array([(1, 1)] + [(1, i) for i in range(2, len(kinds))] + [(0, 1)])
        feats = np.concatenate([rx[[0]], rx[2:], rng.normal(size=(1, len(CHANGE_FEATURES)))])
        x = rng.normal(size=(len(kinds), JUDGE_FEATURE_DIM)).astype(np.float32)
        groups.append(F.Group("toy", ["noise"], x, psnr, kinds, [""] * len(kinds), None, pairs, feats))
    return groups


def test_fit_relative_learns_a_known_ranking_and_evaluation_reports_it():
    cfg = F.FitConfig(relative_epochs=200, relative_hidden=32, seed=0)
    model = F.fit_relative(_toy_groups(40, 0), cfg)
    report = F.evaluate_relative(model, _toy_groups(20, 1))
    assert report["pairwise_accuracy"] > 0.9 and report["rho_psnr"]["noise"] > 0.9
    assert 0.8 < report["one_step_recovery"] <= 1.0 + 1e-9 and 0.8 < report["two_step_recovery"] <= 1.0 + 1e-9


class _GainJudge:
    """A relative judge whose score is the mean brightness gain over the reference, recording its calls."""

    relative = True

    def __init__(self) -> None:
        self.references: list[np.ndarray] = []

    def score_relative(self, references, images):
        self.references.extend(references)
        return [float(img.mean()) - float(ref.mean()) for ref, img in zip(references, images)]

    def score(self, images):  # pragma: no cover - must not be called
        raise AssertionError("a relative judge is scored with score_relative")


def _brighten(img: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(np.int16) + 20, 0, 255).astype(np.uint8)


def _darken(img: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(np.int16) - 20, 0, 255).astype(np.uint8)


def test_exploration_scores_candidates_against_the_input(scene):
    judge = _GainJudge()
    nudge = lambda img: np.clip(img.astype(np.int16) + 5, 0, 255).astype(np.uint8)  # noqa: E731
    res = run_exploration(scene[:32, :32] // 2, tools={"brighten": _brighten, "darken": _darken, "nudge": nudge}, judge=judge, max_steps=3)
    assert res.tools == ["brighten", "nudge", "brighten"] and res.scores[0] == 0.0
    assert res.scores == sorted(res.scores) and all(np.array_equal(r, scene[:32, :32] // 2) for r in judge.references)


def test_rollout_rewards_with_a_relative_judge_are_gains_over_the_start(scene):
    import torch

    from restore_r1.agent.env import rollout
    from restore_r1.agent.policy import Policy, PolicyConfig

    class _Encoder:
        name = "mean"

        def encode(self, images):
            return np.array([[float(im.mean())] for im in images], np.float32)

    policy = Policy(PolicyConfig(encoder_name="mean", encoder_config={}, feature_dim=1, tool_names=["brighten", "darken"], max_steps=2))
    judge = _GainJudge()
    start = scene[:32, :32] // 2
    traj = rollout(policy, _Encoder(), start, {"brighten": _brighten, "darken": _darken}, judge, greedy=False, generator=torch.Generator().manual_seed(0))
    assert traj.scores[0] == 0.0
    assert all(np.array_equal(r, start) for r in judge.references)
    np.testing.assert_allclose(traj.rewards, np.diff(traj.scores), atol=1e-9)  # tool_cost 0: r_t = Q(I_t+1 | I_0) - Q(I_t | I_0)
    assert traj.scores[-1] == pytest.approx(float(traj.final_image.mean()) - float(start.mean()))


def _at_offset(x: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``x`` whose data starts ``offset`` bytes into a fresh buffer."""
    buf = np.empty(x.nbytes + 64, np.uint8)
    view = np.frombuffer(buf.data, dtype=np.uint8, count=x.nbytes, offset=offset).view(x.dtype).reshape(x.shape)
    view[...] = x
    return view


def test_change_features_do_not_depend_on_memory_alignment(scene):
    # cv2.magnitude rounded some elements differently at 4-byte vs 8-byte alignment, which made
    # two identical GRPO runs drift apart; the gradient and the features must be bit-identical.
    from restore_r1.judges.relative import _gradient

    y = np.random.default_rng(0).random((96, 96), dtype=np.float32)
    ref = _gradient(y)
    for offset in (4, 8, 12, 20):
        assert np.array_equal(_gradient(_at_offset(y, offset)), ref), offset
    out = cv2.GaussianBlur(scene, (5, 5), 1.2)
    first = relative_features_one(scene, out)
    for offset in (1, 3, 4, 8):
        assert np.array_equal(relative_features_one(_at_offset(scene, offset), _at_offset(out, offset)), first), offset
