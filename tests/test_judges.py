"""Judges: the Q-Align/DeQA scoring rule with hand numbers, the mllm judge on a tiny random VLM
built here, the openai judge against a fake local server, and the offline metric judges."""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from restore_r1.errors import ImageError, UnavailableError, WeightsNotFoundError
from restore_r1.judges import (
    DEFAULT_JUDGE,
    JUDGES,
    LEVEL_RANGE,
    MLLM_PATH_ENV,
    NIQE_TO_LEVEL,
    PIQE_TO_LEVEL,
    QUALITY_LEVELS,
    JudgeError,
    OpenAIJudge,
    create_judge,
    judge_availability,
    level_probabilities_to_score,
    level_token_ids,
    levels_from_top_logprobs,
    map_to_levels,
)

NEG = -math.inf
from tests.scenes import textured_scene


def _scene(seed: int = 0, size: int = 96) -> np.ndarray:
    return textured_scene(seed, size, checks=5, grain_sigma=1.0)


# ------------------------------------------------------------------ the scoring rule


@pytest.mark.parametrize(
    ("logits", "expected"),
    [
        ([0, 0, 0, 0, 0], 3.0),
        ([7.5, 7.5, 7.5, 7.5, 7.5], 3.0),
        ([NEG, NEG, NEG, 0.3, NEG], 4.0),  # one level only
        ([NEG, NEG, NEG, NEG, -20.0], 5.0),
        ([0.0, math.log(3), NEG, NEG, NEG], 1.75),  # p = (1/4, 3/4): 1/4 + 2·3/4
        ([math.log(0.1), math.log(0.2), math.log(0.3), math.log(0.2), math.log(0.2)], 0.1 + 0.4 + 0.9 + 0.8 + 1.0),
        ([100.0, 0, 0, 0, 0], 1.0),
    ],
)
def test_level_probabilities_to_score(logits, expected):
    assert level_probabilities_to_score(logits) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("bad", [[0, 0, 0, 0], [0, 0, math.nan, 0, 0], [NEG] * 5, [0, math.inf, 0, 0, 0]])
def test_level_probabilities_reject(bad):
    with pytest.raises(ValueError):
        level_probabilities_to_score(bad)


def test_levels_from_top_logprobs_merges_variants():
    top = [
        {"token": " Good", "logprob": math.log(0.5)},
        {"token": "good", "logprob": math.log(0.2)},
        {"token": "Fair", "logprob": math.log(0.1)},
        {"token": "the", "logprob": math.log(0.2)},
    ]
    logp = levels_from_top_logprobs(top)
    assert np.isneginf(logp[[0, 1, 4]]).all()
    assert math.exp(logp[3]) == pytest.approx(0.7)
    # renormalised over the levels found: (3·0.1 + 4·0.7) / 0.8
    assert level_probabilities_to_score(logp) == pytest.approx(3.875)
    with pytest.raises(JudgeError, match="no quality level"):
        levels_from_top_logprobs([{"token": "yes", "logprob": -0.1}])


class _SpaceTokenizer:
    """BPE-like: ' good' -> [<space>, good]; bare 'good' -> [go, od]."""

    def __init__(self):
        self.vocab = {" ": 0, "go": 1, "od": 2}
        for w in QUALITY_LEVELS:
            self.vocab.setdefault(w, len(self.vocab))

    def encode(self, text, add_special_tokens=False):
        if text.startswith(" "):
            return [0, self.vocab[text[1:]]]
        return [1, 2] if text == "good" else [self.vocab[text]]

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv[i] for i in ids)


def test_level_token_ids_skip_leading_space_tokens():
    tok = _SpaceTokenizer()
    assert level_token_ids(tok) == [tok.vocab[w] for w in QUALITY_LEVELS]


def test_level_token_ids_rejects_shared_first_tokens():
    class Clash(_SpaceTokenizer):
        def encode(self, text, add_special_tokens=False):
            return [1, 2]

    with pytest.raises(ValueError, match="share first tokens"):
        level_token_ids(Clash())


# ------------------------------------------------------------------ mllm


def _build_tiny_llava(path) -> None:
    transformers = pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    words = [
        "[PAD]",
        "[UNK]",
        "<s>",
        "</s>",
        "<image>",
        *QUALITY_LEVELS,
        "USER:",
        "ASSISTANT:",
        "How",
        "would",
        "you",
        "rate",
        "the",
        "quality",
        "of",
        "this",
        "image?",
        "The",
        "image",
        "is",
    ]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.add_special_tokens(["<image>", "[PAD]", "<s>", "</s>"])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    text = transformers.LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    cfg = transformers.LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=4, vision_feature_select_strategy="default", vision_feature_layer=-1
    )
    transformers.LlavaForConditionalGeneration(cfg).save_pretrained(path)
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformers.LlavaProcessor(
        image_processor=images, tokenizer=fast, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1, image_token="<image>"
    ).save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llava")
    _build_tiny_llava(path)
    return path


def test_mllm_judge_on_tiny_vlm(tiny_vlm, monkeypatch):
    judge = create_judge("mllm", model_path=str(tiny_vlm))
    assert judge.level_ids == [5, 6, 7, 8, 9]  # the level words' ids in the vocabulary built above
    assert judge.prompt.endswith("The quality of the image is")
    imgs = [_scene(0, 48), _scene(1, 40)]
    scores = judge.score(imgs)
    assert len(scores) == 2 and all(1.0 <= s <= 5.0 and math.isfinite(s) for s in scores)
    assert scores == judge.score(imgs)
    assert scores[0] == pytest.approx(level_probabilities_to_score(judge.level_logits(imgs[0])), abs=1e-12)
    assert create_judge(**judge.config()).score(imgs) == pytest.approx(scores, abs=1e-9)
    assert judge.trust_remote_code is False
    monkeypatch.setenv(MLLM_PATH_ENV, str(tiny_vlm))
    assert judge_availability("mllm") == (True, "")


def test_mllm_missing_model_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv(MLLM_PATH_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError, match=MLLM_PATH_ENV):
        create_judge("mllm")
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "absent")):
        create_judge("mllm", model_path=str(tmp_path / "absent"))
    with pytest.raises(UnavailableError, match="registry"):
        create_judge("mllm", model_path="registry://judges/deqa/1")
    ok, reason = judge_availability("mllm", model_path=str(tmp_path / "absent"))
    assert not ok and "huggingface-cli download" in reason


# ------------------------------------------------------------------ openai


class _FakeOpenAI:
    """An OpenAI-compatible /chat/completions on 127.0.0.1 with a scripted behaviour."""

    def __init__(self):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.mode = "ok"
        self.top = [
            {"token": " good", "logprob": math.log(0.6)},
            {"token": " fair", "logprob": math.log(0.3)},
            {"token": " excellent", "logprob": math.log(0.1)},
        ]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                if fake.mode == "error":
                    return self._send(500, {"error": {"message": "model crashed"}})
                if fake.mode == "bad_request":
                    return self._send(400, {"error": {"message": "logprobs not supported"}})
                if fake.mode == "slow":
                    time.sleep(2.0)
                content = [{"token": fake.top[0]["token"], "logprob": fake.top[0]["logprob"], "top_logprobs": fake.top}]
                self._send(
                    200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": fake.top[0]["token"]}, "logprobs": {"content": content}}]}
                )

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai():
    server = _FakeOpenAI()
    yield server
    server.close()


def test_openai_judge_scores_from_logprobs(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    judge = create_judge("openai", base_url=fake_openai.url, model="tiny-vlm", timeout=5, retries=0)
    img = _scene(0, 32)
    assert judge.score([img]) == pytest.approx([0.3 * 3 + 0.6 * 4 + 0.1 * 5])
    body = fake_openai.requests[0]
    assert body["model"] == "tiny-vlm" and body["max_tokens"] == 1 and body["logprobs"] is True
    assert body["top_logprobs"] == 20 and body["temperature"] == 0
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(sent, img)
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-test"
    assert "sk-test" not in json.dumps(judge.config())


def test_openai_judge_no_level_token(fake_openai):
    fake_openai.top = [{"token": "Yes", "logprob": -0.1}]
    judge = OpenAIJudge(base_url=fake_openai.url, model="m", timeout=5, retries=0)
    with pytest.raises(JudgeError, match="no quality level"):
        judge.score([_scene(0, 32)])


def test_openai_server_error_is_clear_and_retried(fake_openai):
    fake_openai.mode = "error"
    judge = OpenAIJudge(base_url=fake_openai.url, model="m", timeout=5, retries=1)
    with pytest.raises(JudgeError, match="HTTP 500.*model crashed"):
        judge.score([_scene(0, 32)])
    assert len(fake_openai.requests) == 2  # one retry
    fake_openai.mode = "bad_request"
    with pytest.raises(JudgeError, match="HTTP 400"):
        judge.score([_scene(0, 32)])
    assert len(fake_openai.requests) == 3  # a client error is not retried


def test_openai_timeout_is_clear_and_quick(fake_openai):
    fake_openai.mode = "slow"
    judge = OpenAIJudge(base_url=fake_openai.url, model="m", timeout=0.3, retries=0)
    start = time.monotonic()
    with pytest.raises(JudgeError, match="within 0.3 s"):
        judge.score([_scene(0, 32)])
    assert time.monotonic() - start < 1.5


def test_openai_unreachable_and_settings(monkeypatch):
    with pytest.raises(JudgeError, match="cannot reach"):
        OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m", timeout=1, retries=0).score([_scene(0, 32)])
    with pytest.raises(ValueError, match="http"):
        OpenAIJudge(base_url="localhost:8000", model="m")
    monkeypatch.delenv("RESTORE_R1_OPENAI_BASE_URL", raising=False)
    ok, reason = judge_availability("openai")
    assert not ok and "base_url" in reason


# ------------------------------------------------------------------ offline judges and catalogue


def test_map_to_levels_hand_numbers():
    assert map_to_levels(0.0, PIQE_TO_LEVEL) == 5.0
    assert map_to_levels(28.0, PIQE_TO_LEVEL) == 4.0
    assert map_to_levels(35.5, PIQE_TO_LEVEL) == pytest.approx(3.5)
    assert map_to_levels(14.0, PIQE_TO_LEVEL) == pytest.approx(4.5)
    assert map_to_levels(200.0, PIQE_TO_LEVEL) == 1.0
    assert map_to_levels(1e6, NIQE_TO_LEVEL) == 1.0
    with pytest.raises(ValueError):
        map_to_levels(math.nan, PIQE_TO_LEVEL)
    with pytest.raises(ValueError):
        map_to_levels(1.0, ((0.0, 5.0), (0.0, 1.0)))


def test_catalogue_metadata_and_default():
    for name, entry in JUDGES.items():
        assert entry.name == name and entry.description and entry.licence
        assert entry.range == (LEVEL_RANGE if not entry.relative else (-np.inf, np.inf))
        if entry.offline:
            assert judge_availability(name) == (True, ""), name
    assert DEFAULT_JUDGE in JUDGES and JUDGES.get(DEFAULT_JUDGE).offline
    assert create_judge("default").name == DEFAULT_JUDGE
    with pytest.raises(KeyError, match="niqe"):
        create_judge("niq")


@pytest.mark.parametrize("name", [n for n, e in JUDGES.items() if e.offline and not e.relative])
def test_offline_judges_prefer_clean_to_noisy(name):
    from restore_r1.cleanimages import load_clean

    clean = load_clean("chelsea")  # 451×300: NIQE is unreliable on small crops
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 40, clean.shape), 0, 255).astype(np.uint8)
    judge = create_judge(name)
    scores = judge.score([clean, noisy, clean])
    assert all(LEVEL_RANGE[0] <= s <= LEVEL_RANGE[1] for s in scores)
    assert scores[0] == scores[2]  # deterministic
    assert scores[0] > scores[1]
    with pytest.raises(ImageError):
        judge.score([clean[:, :, 0]])


def test_nr_offline_is_weighted_mean_of_parts():
    from restore_r1.cleanimages import load_clean
    from restore_r1.judges import NR_OFFLINE_WEIGHTS

    imgs = [np.ascontiguousarray(load_clean("coffee")[:200, :200])]
    parts = {m: create_judge(m).score(imgs)[0] for m, _ in NR_OFFLINE_WEIGHTS}
    total = sum(w for _, w in NR_OFFLINE_WEIGHTS)
    expected = sum(w * parts[m] for m, w in NR_OFFLINE_WEIGHTS) / total
    assert create_judge("nr_offline").score(imgs)[0] == pytest.approx(expected, abs=1e-9)


# ------------------------------------------------------------------ the calibrated judge


def _heldout_crop(size: int = 256) -> np.ndarray:
    from restore_r1.cleanimages import load_clean

    img = load_clean("coffee")  # a HELD-OUT photo: never used to calibrate the judge
    return np.ascontiguousarray(img[:size, 100 : 100 + size])


def test_calibrated_judge_loads_scores_in_range_deterministic():
    judge = create_judge("calibrated")
    assert judge.name == "calibrated" and judge.range == LEVEL_RANGE
    clean = _heldout_crop()
    small = _scene(1, size=64)  # smaller than the calibration crops: still scores, in range
    scores = judge.score([clean, small, clean])
    assert all(LEVEL_RANGE[0] <= s <= LEVEL_RANGE[1] for s in scores)
    assert scores[0] == scores[2]
    assert judge.score([]) == []
    assert judge.config()["name"] == "calibrated" and judge.config()["features"]
    with pytest.raises(ImageError):
        judge.score([clean[:, :, 0]])


def test_calibrated_judge_is_no_reference_and_trained_on_training_photos_only():
    import inspect

    from restore_r1.cleanimages import HELDOUT_NAMES, TRAIN_NAMES
    from restore_r1.judges.calibrated import load_calibration

    judge = create_judge("calibrated")
    assert list(inspect.signature(judge.score).parameters) == ["imgs"]
    data = load_calibration().meta["data"]
    assert set(data["photos"]) <= set(TRAIN_NAMES)
    assert not set(data["photos"]) & set(HELDOUT_NAMES)
    assert "bench/calibrate_judge.py" in load_calibration().meta["command"]


#: Degradation types for which the calibrated judge must score a clean HELD-OUT crop above its
#: degraded versions (measured: all seven on coffee crops; see bench/results/judges.md).
CALIBRATED_DETECTS = ("dark", "noise", "jpeg", "haze", "motion_blur", "defocus_blur", "rain")


def test_calibrated_judge_prefers_clean_heldout_crop_to_degraded():
    from restore_r1.degradations import apply_degradation

    judge = create_judge("calibrated")
    clean = _heldout_crop()
    rng = np.random.default_rng(0)
    degraded = [apply_degradation(t, clean, rng)[0] for t in CALIBRATED_DETECTS]
    scores = judge.score([clean, *degraded])
    missed = [t for t, s in zip(CALIBRATED_DETECTS, scores[1:]) if s >= scores[0]]
    assert not missed, f"clean {scores[0]:.2f} not above {missed}: {dict(zip(CALIBRATED_DETECTS, scores[1:]))}"


def test_calibrated_judge_missing_or_corrupt_file_is_clear(tmp_path):
    from restore_r1.judges.calibrated import CALIBRATION_PATH, CalibrationError

    missing = tmp_path / "nope.json"
    with pytest.raises(CalibrationError, match="missing.*calibrate_judge.py"):
        create_judge("calibrated", path=str(missing))
    ok, reason = judge_availability("calibrated", path=str(missing))
    assert not ok and "missing" in reason
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        create_judge("calibrated", path=str(bad))
    data = json.loads(CALIBRATION_PATH.read_text())
    data["coef"] = data["coef"][:-1]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="coefficients"):
        create_judge("calibrated", path=str(short))
    data = json.loads(CALIBRATION_PATH.read_text())
    data["format"] = 99
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="format"):
        create_judge("calibrated", path=str(other))


def test_calibration_refuses_heldout_photos():
    from restore_r1.judges.calibrate import build_calibration_set

    with pytest.raises(ValueError, match="not a training photo"):
        build_calibration_set(photos=["astronaut", "coffee"])


def test_calibration_fit_small_set_roundtrip(tmp_path):
    """Model selection and fitting on a small synthetic feature table; the model round-trips."""
    from restore_r1.judges.calibrate import CalibrationSet, fit_calibration, quality_target
    from restore_r1.judges.calibrated import load_calibration, save_calibration

    rng = np.random.default_rng(0)
    n, d = 64, 33
    x = rng.normal(size=(n, d))
    y = np.clip(3 + x[:, 0] - 0.5 * x[:, 1] ** 2, 1, 5)
    groups = np.repeat(np.arange(n // 4), 4)
    kinds = ["degraded", "tool", "tool", "tool2"] * (n // 4)
    photos = ["astronaut"] * (n // 2) + ["chelsea"] * (n // 2)
    cset = CalibrationSet(x=x, y=y, photo=photos, group=groups, kind=kinds, size=np.full(n, 256))
    model, cv = fit_calibration(cset, grid={"alpha": (1.0,), "delta_weight": (0.0, 2.0), "expansion": ("quadratic",), "piqe": (False, True)})
    assert len(cv) == 4 and model.meta["selected"] in cv
    path = save_calibration(model, tmp_path / "c.json")
    again = load_calibration(path)
    assert np.allclose(again.predict(x), model.predict(x))
    assert np.all((model.predict(x) >= 1) & (model.predict(x) <= 5))
    clean = _heldout_crop(64)
    assert quality_target(clean, clean) == 5.0
    assert quality_target(255 - clean, clean) < 3.0
