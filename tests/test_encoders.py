"""Encoders: contract (shape, dtype, determinism, config round trip), stats responses to each
degradation, EfficientNet-Lite0 weights check, CLIP from a tiny local checkpoint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from restore_r1.encoders import (
    CLIP_PATH_ENV,
    ENCODERS,
    STATS_DIM,
    STATS_FEATURES,
    create_encoder,
    degradation_stats,
    encoder_availability,
)
from restore_r1.errors import ImageError, UnavailableError, WeightsNotFoundError
from tests.scenes import textured_scene


def _scene(seed: int = 0, size: int = 96) -> np.ndarray:
    return textured_scene(seed, size, checks=6, grain_sigma=1.5)


def _stat(img: np.ndarray, name: str) -> float:
    return float(degradation_stats(img)[STATS_FEATURES.index(name)])


def _available_names() -> list[str]:
    return [n for n in ENCODERS.names() if encoder_availability(n)[0]]


@pytest.mark.parametrize("name", _available_names())
def test_encoder_contract(name):
    enc = create_encoder(name)
    imgs = [_scene(0), _scene(1, size=80)]
    feats = enc.encode(imgs)
    assert feats.dtype == np.float32 and feats.shape == (2, enc.dim)
    assert np.isfinite(feats).all()
    assert np.array_equal(feats, enc.encode(imgs))  # deterministic
    assert not np.allclose(feats[0], feats[1])  # different images, different features
    rebuilt = create_encoder(**enc.config())
    assert np.array_equal(rebuilt.encode(imgs), feats)
    assert ENCODERS.get(name).dim in (None, enc.dim)
    assert enc.encode([]).shape == (0, enc.dim)


def test_every_entry_has_metadata():
    for name, entry in ENCODERS.items():
        assert entry.name == name and entry.description and entry.licence
        assert isinstance(entry.needs_weights, bool) and isinstance(entry.offline, bool)
        if entry.offline:
            assert encoder_availability(name) == (True, ""), name


def test_unknown_encoder_suggests():
    with pytest.raises(KeyError, match="stats"):
        create_encoder("stat")


def test_bad_input_rejected():
    enc = create_encoder("stats")
    with pytest.raises(ImageError):
        enc.encode([np.zeros((32, 32), np.uint8)])
    with pytest.raises(ImageError):
        enc.encode([np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(TypeError):
        enc.encode(_scene())


def test_stats_dimension_and_names():
    assert STATS_DIM == len(STATS_FEATURES) == len(set(STATS_FEATURES))
    assert degradation_stats(_scene()).shape == (STATS_DIM,)


def test_stats_respond_to_each_degradation():
    clean = _scene(3, size=128)
    rng = np.random.default_rng(1)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    # Independent per-channel sigma 25 shows on luma as 25 * |(0.299, 0.587, 0.114)| = 16.7.
    luma_sigma = 25 * float(np.linalg.norm([0.299, 0.587, 0.114])) / 255
    assert _stat(noisy, "noise_sigma_immerkaer") == pytest.approx(luma_sigma, rel=0.2)
    assert _stat(noisy, "noise_sigma_haar_mad") == pytest.approx(luma_sigma, rel=0.2)
    assert _stat(clean, "noise_sigma_haar_mad") < 0.3 * _stat(noisy, "noise_sigma_haar_mad")

    ok, buf = cv2.imencode(".jpg", clean, [cv2.IMWRITE_JPEG_QUALITY, 15])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    assert _stat(jpeg, "log_blockiness") > 0.3 > abs(_stat(clean, "log_blockiness"))

    blurred = cv2.GaussianBlur(clean, (0, 0), 3)
    assert _stat(blurred, "log_laplacian_var") < _stat(clean, "log_laplacian_var") - 2
    assert _stat(blurred, "sharpness_ratio") > 2 * _stat(clean, "sharpness_ratio")

    kernel = np.zeros((15, 15), np.float32)
    kernel[7, :] = 1 / 15  # horizontal motion blur: gradients become mostly vertical
    motion = cv2.filter2D(clean, -1, kernel)
    assert _stat(motion, "gradient_coherence") > _stat(clean, "gradient_coherence") + 0.2

    dark = (clean * 0.3).astype(np.uint8)
    assert _stat(dark, "v_mean") == pytest.approx(0.3 * _stat(clean, "v_mean"), rel=0.05)

    haze = (clean * 0.4 + 255 * 0.6 * 0.9).astype(np.uint8)
    assert _stat(haze, "dark_channel_mean") > _stat(clean, "dark_channel_mean") + 0.3
    assert _stat(haze, "saturation_mean") < 0.6 * _stat(clean, "saturation_mean")

    rain = clean.astype(np.float32)
    for k in range(0, 128, 6):  # thin bright vertical streaks
        rain[10:110, k : k + 1] += 120
    rain = np.clip(rain, 0, 255).astype(np.uint8)
    assert _stat(rain, "tophat_mean") > 1.5 * _stat(clean, "tophat_mean")
    assert _stat(rain, "tophat_vertical_fraction") > _stat(clean, "tophat_vertical_fraction") + 0.1


def test_efficientnet_lite0_weights_classify_imagenet():
    skdata = pytest.importorskip("skimage.data")
    enc = create_encoder("efficientnet_lite0")
    logits = enc.classify([skdata.chelsea(), skdata.coffee()])
    # ImageNet classes: 281-285 are domestic cats (chelsea: 285 Egyptian cat); 967 espresso.
    assert 281 <= int(logits[0].argmax()) <= 285
    assert int(logits[1].argmax()) == 967


def test_stats_plus_lite0_is_concatenation():
    both = create_encoder("stats+efficientnet_lite0")
    imgs = [_scene(2)]
    expected = np.concatenate([create_encoder("stats").encode(imgs), create_encoder("efficientnet_lite0").encode(imgs)], axis=1)
    np.testing.assert_allclose(both.encode(imgs), expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def tiny_clip(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, projection_dim=16
    )
    transformers.CLIPVisionModelWithProjection(cfg).save_pretrained(tmp_path)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    return tmp_path


def test_clip_from_local_folder(tiny_clip, monkeypatch):
    enc = create_encoder("clip", model_path=str(tiny_clip))
    feats = enc.encode([_scene(0), _scene(1)])
    assert feats.shape == (2, 16) and enc.dim == 16 and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(create_encoder(**enc.config()).encode([_scene(0), _scene(1)]), feats)
    monkeypatch.setenv(CLIP_PATH_ENV, str(tiny_clip))
    assert encoder_availability("clip") == (True, "")
    assert create_encoder("clip").dim == 16


def test_clip_from_full_clipmodel_folder(tmp_path):
    """A full CLIPModel folder (as openai/clip-vit-large-patch14 ships): same as get_image_features."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = transformers.CLIPModel(transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=12)).eval()
    model.save_pretrained(tmp_path)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    enc = create_encoder("clip", model_path=str(tmp_path))
    img = _scene(0, 40)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=enc.processor(images=[img], return_tensors="pt")["pixel_values"])
    ref = getattr(ref, "pooler_output", ref)
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    assert enc.dim == 12
    np.testing.assert_allclose(enc.encode([img]), ref, atol=1e-5)


def test_clip_missing_path_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv(CLIP_PATH_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError, match=CLIP_PATH_ENV):
        create_encoder("clip")
    missing = tmp_path / "nope"
    with pytest.raises(WeightsNotFoundError, match="huggingface-cli download"):
        create_encoder("clip", model_path=str(missing))
    ok, reason = encoder_availability("clip", model_path=str(missing))
    assert not ok and str(missing) in reason
    for uri in ("registry://models/clip/1", "s3://bucket/clip"):
        with pytest.raises(UnavailableError, match="restore_r1.registry"):
            create_encoder("clip", model_path=uri)
