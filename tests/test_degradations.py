"""The seven degradations, their samplers, the 15 cases and the depth maps (docs/method.md §2, §3)."""

from __future__ import annotations

import dataclasses
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from restore_r1 import DEGRADATION_TYPES
from restore_r1 import degradations as D
from restore_r1.depth import depth_prior, find_depth, load_depth
from restore_r1.errors import ImageError

# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 72×96 crop of a natural photo (bundled with scikit-image)."""
    from restore_r1.cleanimages import load_clean

    return np.ascontiguousarray(load_clean("chelsea")[100:172, 150:246])


def gray(value: int, h: int = 64, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def value_channel(img: np.ndarray) -> np.ndarray:
    return img.max(axis=2).astype(np.float64)  # V of HSV


# --- catalogue ------------------------------------------------------------------------------------


def test_catalogue_lists_exactly_the_degradation_types():
    assert tuple(D.DEGRADATIONS.names()) == DEGRADATION_TYPES
    assert [n for n in D.DEGRADATIONS if D.DEGRADATIONS.get(n).uses_depth] == ["haze"]


def test_unknown_degradation_suggests_close_names(photo):
    with pytest.raises(KeyError, match="motion_blur"):
        D.apply_degradation("motion_blurr", photo, np.random.default_rng(0))


# --- parameter ranges, per docs/method.md §2, over many draws -----------------------------------------------

N_DRAWS = 150


def _draws(name: str, img: np.ndarray) -> list[dict]:
    rng = np.random.default_rng(1234)
    out = []
    for _ in range(N_DRAWS):
        _, params = D.apply_degradation(name, img, rng)
        json.dumps(params)  # JSON-serialisable
        for value in params.values():
            assert type(value) in (int, float, str), (name, params)
        out.append(params)
    return out


def test_dark_params_in_spec_ranges():
    draws = _draws("dark", gray(120, 16, 16))
    assert {p["method"] for p in draws} == {"shift", "gamma", "linear"}
    for p in draws:
        if p["method"] == "shift":
            assert type(p["s"]) is int and 30 <= p["s"] < 50
        elif p["method"] == "gamma":
            assert 0.5 <= p["g"] < 0.7
        else:
            assert type(p["m"]) is int and 100 <= p["m"] < 150
    shifts = {p["s"] for p in draws if p["method"] == "shift"}
    assert min(shifts) <= 32 and max(shifts) >= 47  # the whole range is used


def test_noise_params_in_spec_ranges():
    draws = _draws("noise", gray(120, 16, 16))
    kinds = [p["type"] for p in draws]
    assert set(kinds) == {"gaussian", "poisson"}
    assert 0.3 < kinds.count("gaussian") / len(kinds) < 0.7
    for p in draws:
        if p["type"] == "gaussian":
            assert 20 <= p["sigma"] < 50
        else:
            assert 1 <= p["scale"] < 3


def test_jpeg_params_in_spec_range():
    qualities = [p["quality"] for p in _draws("jpeg", gray(120, 16, 16))]
    assert all(type(q) is int and 10 <= q < 30 for q in qualities)
    assert min(qualities) == 10 and max(qualities) == 29


def test_haze_params_in_spec_ranges():
    draws = _draws("haze", gray(120, 16, 16))
    assert all(0.7 <= p["A"] < 1.0 and 0.6 <= p["beta"] < 1.8 and p["depth"] == "prior" for p in draws)


def test_motion_blur_params_in_spec_ranges():
    draws = _draws("motion_blur", gray(120, 16, 16))
    assert {(p["radius"], p["sigma"]) for p in draws} == {(10, 3.0), (15, 5.0), (15, 8.0)}
    angles = [p["angle"] for p in draws]
    assert all(-90 <= a < 90 for a in angles) and min(angles) < -60 and max(angles) > 60


def test_defocus_blur_params_in_spec_ranges():
    draws = _draws("defocus_blur", gray(120, 16, 16))
    assert {(p["radius"], p["alias_sigma"]) for p in draws} == {(3, 0.1), (4, 0.5), (6, 0.5)}


def test_rain_params_in_spec_ranges():
    draws = _draws("rain", gray(120, 16, 16))
    for p in draws:
        assert type(p["value"]) is int and 50 <= p["value"] < 100
        assert type(p["length"]) is int and 20 <= p["length"] < 40
        assert type(p["angle"]) is int and -30 <= p["angle"] < 30


# --- statistics per degradation -------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [20.0, 35.0])
def test_gaussian_noise_sigma_estimated_on_flat_gray(sigma):
    img = gray(128, 96, 96)
    out = D.gaussian_noise(img, sigma, np.random.default_rng(0))
    residual = out.astype(np.float64) - 128.0
    assert abs(residual.mean()) < 0.6
    assert residual.std() == pytest.approx(sigma, rel=0.03)
    # independent per colour channel
    flat = residual.reshape(-1, 3)
    corr = np.corrcoef(flat.T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.05


def test_poisson_noise_variance_follows_basicsr_formula():
    # 256 distinct levels -> vals = 256; noise variance (0..1 scale) = scale² · x / 256
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    img = np.repeat(ramp[:, :, None], 3, axis=2)
    scale = 2.0
    out = D.poisson_noise(img, scale, np.random.default_rng(0))
    residual = (out.astype(np.float64) - img) / 255.0
    cols = np.arange(64, 192)  # away from clipping at both ends
    measured = residual[:, cols, :].var(axis=(0, 2))
    predicted = scale**2 * (cols / 255.0) / 256.0
    assert np.mean(measured / predicted) == pytest.approx(1.0, abs=0.06)


def test_poisson_noise_scale_zero_is_identity(photo):
    assert np.array_equal(D.poisson_noise(photo, 0.0, np.random.default_rng(0)), photo)


def _ijg_luminance_table(quality: int) -> list[int]:
    base = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (b * scale + 50) // 100)) for b in base]


@pytest.mark.parametrize("quality", [10, 17, 29])
def test_jpeg_quantisation_table_matches_quality(photo, quality):
    data = D.jpeg_encode(photo, quality)
    tables = Image.open(io.BytesIO(data)).quantization
    # compare as multisets: PIL may report zig-zag or natural order
    assert sorted(tables[0]) == sorted(_ijg_luminance_table(quality))


def test_jpeg_error_consistent_with_quality(photo):
    mse = {q: float(np.mean((D.jpeg_compress(photo, q).astype(np.float64) - photo) ** 2)) for q in (10, 29, 95)}
    assert mse[10] > mse[29] > mse[95] > 0
    once = D.jpeg_compress(photo, 15)
    twice = D.jpeg_compress(once, 15)
    # re-encoding at the same quality changes much less than the first encoding did
    assert np.mean(np.abs(twice.astype(int) - once)) < 0.5 * np.mean(np.abs(once.astype(int) - photo))


@pytest.mark.parametrize("radius, sigma", D.MOTION_BLUR_LEVELS)
@pytest.mark.parametrize("angle", [-90.0, -37.5, 0.0, 45.0, 89.9])
def test_motion_kernel_sums_to_one_and_matches_shifted_sum(photo, radius, sigma, angle):
    kernel = D.motion_blur_kernel(radius, sigma, angle)
    assert kernel.shape == (4 * radius + 1, 4 * radius + 1)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    via_kernel = cv2.filter2D(photo.astype(np.float64), -1, kernel, borderType=cv2.BORDER_REPLICATE)
    via_shifts = D.motion_blur(photo, radius, sigma, angle)
    assert np.abs(np.clip(via_kernel, 0, 255).round() - via_shifts).max() <= 1


def test_motion_blur_follows_the_angle():
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[::4] = 255  # horizontal stripes: constant along x
    assert np.array_equal(D.motion_blur(stripes, 10, 3.0, 0.0), stripes)  # horizontal motion
    assert not np.array_equal(D.motion_blur(stripes, 10, 3.0, 90.0), stripes)  # vertical motion


@pytest.mark.parametrize("radius, alias_sigma", D.DEFOCUS_BLUR_LEVELS)
def test_defocus_kernel_sums_to_one_and_blurs(photo, radius, alias_sigma):
    kernel = D.defocus_kernel(radius, alias_sigma)
    assert kernel.shape == (17, 17)
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)
    # a disk: nothing outside radius + 1 (the 3×3 anti-aliasing spreads it by one pixel)
    y, x = np.mgrid[-8:9, -8:9]
    assert kernel[(x**2 + y**2) > (radius + 1.5) ** 2].max() == 0
    out = D.defocus_blur(photo, radius, alias_sigma)
    lap = lambda a: np.abs(cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_64F)).mean()  # noqa: E731
    assert lap(out) < 0.6 * lap(photo)
    assert abs(out.mean() - photo.mean()) < 2.0  # blur keeps brightness


def test_darkening_methods_lower_mean_value(photo):
    v0 = value_channel(photo).mean()
    for out in (D.darken_shift(photo, 30), D.darken_gamma(photo, 0.7), D.darken_linear(photo, 149)):
        assert value_channel(out).mean() < v0 - 10


def test_darkening_formulas_on_gray():
    # gray pixels have S = 0, so RGB = V and the formulas read off directly
    assert np.all(D.darken_shift(gray(100), 37) == 63)
    assert np.all(D.darken_shift(gray(20), 37) == 0)  # clipped
    assert np.all(D.darken_gamma(gray(128), 0.5) == round(255 * (128 / 255) ** 2))
    ramp = np.repeat(np.tile(np.arange(50, 250, 2, dtype=np.uint8), (16, 1))[:, :, None], 3, axis=2)
    out = D.darken_linear(ramp, 120)
    assert out.min() == 0 and out.max() == 120
    assert np.all(D.darken_linear(gray(90), 120) == 0)  # flat V: v − vmin = 0


def test_sample_dark_lowers_value_every_time(photo):
    rng = np.random.default_rng(5)
    v0 = value_channel(photo).mean()
    for _ in range(12):
        out, _ = D.sample_dark(photo, rng)
        assert value_channel(out).mean() < v0


def test_haze_raises_brightness_and_lowers_contrast(photo):
    depth = depth_prior(photo)
    out = D.haze(photo, depth, 0.9, 1.2)
    assert out.mean() > photo.mean() + 10
    assert out.std() < photo.std()
    assert np.array_equal(D.haze(photo, depth, 0.9, 0.0), photo)  # β = 0: no haze
    far = D.haze(photo, np.ones(photo.shape[:2]), 0.8, 50.0)
    assert np.all(far == round(255 * 0.8))  # t -> 0: only the atmospheric light


def test_haze_is_thicker_where_farther(photo):
    depth = np.zeros(photo.shape[:2])
    depth[: photo.shape[0] // 2] = 1.0  # top half far
    out = D.haze(photo, depth, 1.0, 1.5).astype(np.float64)
    diff = out - photo
    assert diff[: photo.shape[0] // 2].mean() > 20 and np.abs(diff[photo.shape[0] // 2 :]).max() == 0


def test_haze_rejects_mismatched_depth(photo):
    with pytest.raises(ValueError, match="does not match"):
        D.haze(photo, np.ones((10, 10)), 0.9, 1.0)


def test_rain_adds_bright_streaks_along_the_angle(photo):
    out = D.rain(photo, np.random.default_rng(3), 90, 30, 0)
    added = out.astype(np.int16) - photo
    assert added.min() >= 0  # added, never subtracted
    assert out.mean() > photo.mean() + 3
    assert (added > 40).mean() > 0.01  # visible streaks
    layer = D.rain_layer((96, 96), np.random.default_rng(3), 90, 30, 0).astype(np.float64)
    layer -= layer.mean()
    vertical = (layer[1:, :] * layer[:-1, :]).mean()
    horizontal = (layer[:, 1:] * layer[:, :-1]).mean()
    assert vertical > 1.2 * horizontal  # angle 0: vertical streaks


def test_rain_layer_is_normalised_to_full_range():
    layer = D.rain_layer((80, 80), np.random.default_rng(0), 99, 25, -20)
    assert layer.dtype == np.uint8 and layer.max() == 255 and layer.min() == 0


# --- determinism, shape and dtype -----------------------------------------------------------------


@pytest.mark.parametrize("name", DEGRADATION_TYPES)
def test_each_degradation_is_deterministic_and_keeps_shape(name):
    img = np.random.default_rng(9).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    a, pa = D.apply_degradation(name, img, np.random.default_rng(42))
    b, pb = D.apply_degradation(name, img, np.random.default_rng(42))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes() and pa == pb
    assert not np.array_equal(a, img)


@pytest.mark.parametrize("number", sorted(D.CASES))
def test_every_case_is_deterministic_and_keeps_shape(photo, number):
    a, sa = D.apply_case(number, photo, np.random.default_rng(7))
    b, sb = D.apply_case(number, photo, np.random.default_rng(7))
    assert a.shape == photo.shape and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes() and sa == sb
    assert [s["degradation"] for s in sa] == list(D.CASES[number].degradations)
    json.dumps(sa)


@pytest.mark.parametrize("number", sorted(D.CASES))
def test_a_case_is_the_chain_of_its_degradations(photo, number):
    a, sa = D.apply_case(number, photo, np.random.default_rng(5))
    b, sb = D.apply_chain(D.CASES[number].degradations, photo, np.random.default_rng(5))
    assert a.tobytes() == b.tobytes() and sa == sb


@pytest.mark.parametrize("name", DEGRADATION_TYPES)
def test_every_degradation_parses_alone_and_in_a_chain(photo, name):
    other = DEGRADATION_TYPES[(DEGRADATION_TYPES.index(name) + 1) % len(DEGRADATION_TYPES)]
    assert D.parse_degradations(name) == (name,)
    chain = D.parse_degradations(f" {other} , {name},{other}")  # order and repeats kept
    assert chain == (other, name, other)
    out, steps = D.apply_chain(chain, photo, np.random.default_rng(3))
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert [s["degradation"] for s in steps] == list(chain)
    json.dumps(steps)


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("nosie,jpeg", KeyError, "did you mean noise"),
        ("noise,jepg", KeyError, "did you mean jpeg"),
        ("noise,,jpeg", ValueError, "empty item"),
        ("  ", ValueError, "empty degradation list"),
    ],
)
def test_bad_degradation_lists(text, error, message):
    with pytest.raises(error, match=message):
        D.parse_degradations(text)
    with pytest.raises(ValueError, match="empty degradation chain"):
        D.apply_chain((), gray(100), np.random.default_rng(0))


def test_different_seeds_give_different_outputs(photo):
    a, _ = D.apply_case(15, photo, np.random.default_rng(1))
    b, _ = D.apply_case(15, photo, np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_rejects_non_uint8_images():
    with pytest.raises(ImageError, match="uint8"):
        D.darken_shift(np.zeros((32, 32, 3), dtype=np.float32), 30)


@pytest.mark.parametrize(
    "call",
    [
        lambda img: D.darken_gamma(img, 0.0),
        lambda img: D.gaussian_noise(img, -1.0, np.random.default_rng(0)),
        lambda img: D.jpeg_compress(img, 0),
        lambda img: D.motion_blur(img, 0, 3.0, 0.0),
        lambda img: D.defocus_blur(img, 3, 0.0),
        lambda img: D.haze(img, np.ones(img.shape[:2]), 1.5, 1.0),
    ],
)
def test_bad_parameters_raise_value_error(call):
    with pytest.raises(ValueError):
        call(gray(100, 32, 32))


# --- cases ----------------------------------------------------------------------------------------


def test_case_table_matches_spec():
    assert sorted(D.CASES) == list(range(1, 16))
    assert D.CASES[1].name == "dark+noise" and D.CASES[1].setting == "I"
    assert D.CASES[13].degradations == ("haze", "dark", "motion_blur", "jpeg")
    assert D.CASES[15].name == "rain+motion_blur+defocus_blur+noise+jpeg"
    per_setting = {s: [c.number for c in D.CASES.values() if c.setting == s] for s in D.SETTINGS}
    assert per_setting == {"I": [1, 2, 3, 4, 5], "II": [6, 7, 8], "III": [9, 10, 11, 12], "IV": [13, 14, 15]}
    assert all(n in DEGRADATION_TYPES for c in D.CASES.values() for n in c.degradations)
    assert dataclasses.asdict(D.CASES[2]) == {
        "number": 2, "setting": "I", "degradations": ("defocus_blur", "jpeg"), "name": "defocus_blur+jpeg"
    }  # fmt: skip


def test_case_rejects_unknown_parts():
    with pytest.raises(KeyError, match="haze"):
        D.Case(99, "I", ("hazy",))
    with pytest.raises(ValueError, match="setting"):
        D.Case(99, "V", ("haze",))


def test_apply_case_records_prior_or_given_depth(photo):
    _, steps = D.apply_case(5, photo, np.random.default_rng(0))
    assert steps[1]["degradation"] == "haze" and steps[1]["params"]["depth"] == "prior"
    _, steps = D.apply_case(5, photo, np.random.default_rng(0), depth=np.ones(photo.shape[:2]))
    assert steps[1]["params"]["depth"] == "given"


def test_apply_case_unknown_number(photo):
    with pytest.raises(KeyError, match="1..15"):
        D.apply_case(16, photo, np.random.default_rng(0))


@pytest.mark.parametrize(
    "text, expected",
    [("1,3,9-12", [1, 3, 9, 10, 11, 12]), ("1-15", list(range(1, 16))), ("all", list(range(1, 16))), (" 5 , 2,5 ", [2, 5]), ("7-7", [7])],
)
def test_parse_cases(text, expected):
    assert D.parse_cases(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("0", "out of range"),
        ("16", "out of range"),
        ("3-1", "3 > 1"),
        ("a", "bad case item"),
        ("1,,2", "bad case item"),
        ("1-20", "out of range"),
    ],
)
def test_parse_cases_rejects_bad_text(text, message):
    with pytest.raises(ValueError, match=message):
        D.parse_cases(text)


# --- depth ----------------------------------------------------------------------------------------


def test_depth_prior_is_far_at_top_and_normalised(photo):
    d = depth_prior(photo)
    assert d.shape == photo.shape[:2] and d.dtype == np.float32
    assert d.max() == pytest.approx(1.0) and d.min() >= 0
    assert d[: d.shape[0] // 4].mean() > d[-d.shape[0] // 4 :].mean() + 0.3
    assert np.array_equal(d, depth_prior(photo))


def test_depth_prior_pushes_bright_unsaturated_regions_farther():
    img = np.full((64, 64, 3), (40, 90, 30), dtype=np.uint8)  # dark saturated ground
    img[:, 32:] = 230  # bright unsaturated "sky" on the right half
    d = depth_prior(img)
    assert d[:, 48:].mean() > d[:, :16].mean() + 0.15


def test_load_depth_npy_and_png16_and_resize(tmp_path):
    raw = np.linspace(0, 50, 20 * 30).reshape(20, 30)
    np.save(tmp_path / "a.npy", raw)
    d = load_depth(tmp_path / "a.npy")
    assert d.shape == (20, 30) and d.dtype == np.float32 and d.max() == pytest.approx(1.0)
    assert np.allclose(d, raw / 50.0, atol=1e-6)
    Image.fromarray((raw * 1000).astype(np.uint16)).save(tmp_path / "b.png")
    d16 = load_depth(tmp_path / "b.png", shape=(40, 60))
    assert d16.shape == (40, 60) and d16.max() == pytest.approx(1.0) and d16.min() >= 0
    assert d16[:, -1].mean() > d16[:, 0].mean()


def test_load_depth_mat_prefers_data_obj(tmp_path):
    from scipy.io import savemat

    depth = np.arange(1, 13, dtype=np.float64).reshape(3, 4)
    savemat(tmp_path / "m.mat", {"other": np.zeros((3, 4)), "data_obj": depth})
    assert np.allclose(load_depth(tmp_path / "m.mat"), depth / 12.0)
    savemat(tmp_path / "one.mat", {"z": depth})
    assert np.allclose(load_depth(tmp_path / "one.mat"), depth / 12.0)
    savemat(tmp_path / "two.mat", {"x": depth, "y": depth})
    with pytest.raises(ImageError, match="exactly one"):
        load_depth(tmp_path / "two.mat")


def test_load_depth_rejects_bad_files(tmp_path):
    np.save(tmp_path / "zero.npy", np.zeros((8, 8)))
    with pytest.raises(ImageError, match="no positive"):
        load_depth(tmp_path / "zero.npy")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        load_depth(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="no such"):
        load_depth(tmp_path / "missing.npy")
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0], [2.0, 4.0]]))
    assert load_depth(tmp_path / "nan.npy")[0, 0] == 1.0  # non-finite -> far


def test_find_depth(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 4)))
    assert find_depth(tmp_path, "x") == tmp_path / "x.npy"
    assert find_depth(tmp_path, "y") is None
