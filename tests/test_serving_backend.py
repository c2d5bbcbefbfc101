"""The python models of triton_models/ under a stub of triton_python_backend_utils.

Each model.py is imported as Triton would (with the stub in sys.modules), initialised with the
args Triton passes (its configs/cpu.pbtxt as JSON) and executed on stub requests. The agent's BLS
calls are routed to the policy and tool models built the same way, so the whole loop is checked
against the in-process Agent without a server.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import serving_pb_stub as stub

from restore_r1.serving import backend as b
from restore_r1.serving import metrics as m
from restore_r1.serving.repository import DEFAULT_REPOSITORY, MODEL_VERSION, model_specs, write_repository
from restore_r1.serving.testing import make_random_policy

pb = stub.install()


def load_model_py(model_dir: Path):
    path = model_dir / MODEL_VERSION / "model.py"
    spec = importlib.util.spec_from_file_location(f"model_{model_dir.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel


def build(model_dir: Path):
    model = load_model_py(model_dir)()
    model.initialize(stub.model_args(model_dir))
    return model


def image(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    from restore_r1.cleanimages import load_clean

    img = load_clean("astronaut")
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, img.shape[0] - h), rng.integers(0, img.shape[1] - w)
    return np.ascontiguousarray(img[top : top + h, left : left + w])


def route(model) -> callable:
    """A BLS target: calls ``model.execute`` on one request made of the given tensors."""

    def fn(tensors):
        return model.execute([stub.Request(**{t.name(): t.as_numpy() for t in tensors})])[0]

    return fn


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = write_repository(tmp_path_factory.mktemp("repo"))
    make_random_policy(root / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR)
    return root


@pytest.fixture(scope="module")
def served(repo):
    """policy + every tool model (stub), routed for BLS; cleared afterwards."""
    policy = build(repo / b.POLICY_MODEL)
    tools = {name: build(repo / name) for name, kind, _, _ in model_specs() if kind == "tool"}
    stub.BLS_MODELS.clear()
    stub.BLS_MODELS[b.POLICY_MODEL] = route(policy)
    stub.BLS_MODELS.update({name: route(model) for name, model in tools.items()})
    yield policy, tools
    stub.BLS_MODELS.clear()


@pytest.mark.parametrize("name,kind", [(n, k) for n, k, _, _ in model_specs()])
def test_every_model_py_is_a_shell_over_its_kind(name, kind):
    cls = load_model_py(DEFAULT_REPOSITORY / name)
    assert issubclass(cls, b.MODEL_CLASSES[kind]) and cls.pb is pb
    assert len((DEFAULT_REPOSITORY / name / MODEL_VERSION / "model.py").read_text().splitlines()) <= 4


def test_tool_model_equals_the_library_tool(repo):
    from restore_r1.tools import get_tool

    model = build(repo / b.tool_model_name("clahe"))
    batch = np.stack([image(0), image(1)])
    (resp,) = model.execute([stub.Request(IMAGE=batch)])
    assert not resp.has_error()
    out = pb.get_output_tensor_by_name(resp, b.OUTPUT_IMAGE).as_numpy()
    tool = get_tool("clahe")
    np.testing.assert_array_equal(out, np.stack([tool(image(0)), tool(image(1))]))


def test_tool_model_bad_input_is_invalid_arg_and_the_next_request_works(repo):
    model = build(repo / b.tool_model_name("gamma_correction"))
    bad, good = model.execute([stub.Request(IMAGE=np.zeros((1, 8, 8, 3), np.uint8)), stub.Request(IMAGE=image()[None])])
    assert bad.has_error() and bad.error().code() == pb.TritonError.INVALID_ARG and "8×8" in bad.error().message()
    assert not good.has_error()


def test_tool_model_refuses_an_unknown_tool(repo, tmp_path):
    args = stub.model_args(repo / b.tool_model_name("clahe"))
    config = json.loads(args["model_config"])
    config["parameters"]["tool"]["string_value"] = "clahee"
    args["model_config"] = json.dumps(config)
    with pytest.raises(KeyError, match="clahe"):
        load_model_py(repo / b.tool_model_name("clahe"))().initialize(args)


def test_policy_model_batches_requests_like_the_policy(repo):
    from restore_r1.agent.policy import load_policy
    from restore_r1.encoders import create_encoder

    model = build(repo / b.POLICY_MODEL)
    assert model.folder == repo / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR
    imgs = [image(i) for i in range(3)]
    hists = [[], [1], [0, 2]]
    requests = [stub.Request(IMAGE=img[None], HISTORY=b.encode_history(h)[None]) for img, h in zip(imgs, hists)]
    responses = model.execute(requests)
    policy = load_policy(model.folder)
    expected, _ = policy.act(create_encoder("stats").encode(imgs), hists, greedy=True)
    got = [int(pb.get_output_tensor_by_name(r, b.ACTION).as_numpy()[0, 0]) for r in responses]
    names = [pb.get_output_tensor_by_name(r, b.ACTION_NAME).as_numpy()[0, 0].decode() for r in responses]
    assert got == expected.tolist()
    assert names == [policy.config.action_name(a) for a in got]


def test_policy_model_rejects_a_history_beyond_its_tools(repo):
    model = build(repo / b.POLICY_MODEL)
    (resp,) = model.execute([stub.Request(IMAGE=image()[None], HISTORY=b.encode_history([99])[None])])
    assert resp.has_error() and resp.error().code() == pb.TritonError.INVALID_ARG


def test_history_round_trip_and_limits():
    assert b.decode_history(b.encode_history([3, 0, 5])) == [3, 0, 5]
    assert b.decode_history(b.encode_history([])) == []
    with pytest.raises(ValueError, match="exceeds"):
        b.encode_history(list(range(b.HISTORY_LEN + 1)))
    with pytest.raises(ValueError, match="-7"):
        b.decode_history(np.array([1, -7, -1]))


def agent_restore(agent, img, **inputs):
    (resp,) = agent.execute([stub.Request(IMAGE=img[None], **inputs)])
    return resp


def test_agent_matches_the_in_process_agent(repo, served):
    from restore_r1.agent.inference import Agent

    agent = build(repo / b.AGENT_MODEL)
    local = Agent.load(repo / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR)
    for seed in range(3):
        img = image(seed)
        resp = agent_restore(agent, img)
        assert not resp.has_error(), resp.error().message()
        traj = json.loads(pb.get_output_tensor_by_name(resp, b.TRAJECTORY).as_numpy()[0, 0])
        expected = local.restore(img)
        np.testing.assert_array_equal(pb.get_output_tensor_by_name(resp, b.OUTPUT_IMAGE).as_numpy()[0], expected.image)
        assert traj["tools"] == expected.tools
        assert traj["scores"] == pytest.approx(expected.scores, abs=1e-6)
        assert len(traj["step_seconds"]) >= len(traj["tools"])
    assert sum(len(json.loads(pb.get_output_tensor_by_name(agent_restore(agent, image(s)), b.TRAJECTORY).as_numpy()[0, 0])["tools"]) for s in range(3)) > 0
    agent.finalize()


def test_agent_max_steps_and_metrics(repo, served):
    agent = build(repo / b.AGENT_MODEL)
    resp = agent_restore(agent, image(0), MAX_STEPS=np.array([[1]], np.int32))
    traj = json.loads(pb.get_output_tensor_by_name(resp, b.TRAJECTORY).as_numpy()[0, 0])
    assert len(traj["tools"]) <= 1
    fam = pb.MetricFamily.CREATED
    assert {s.name for s in m.AGENT_METRICS} <= set(fam)
    ok = [x for x in fam[m.REQUESTS_TOTAL].metrics if x.labels == {"outcome": m.OUTCOME_OK}]
    assert ok and ok[-1].value >= 1
    assert fam[m.STEPS].metrics[-1].observations[-1] == len(traj["tools"])
    agent.finalize()


@pytest.mark.parametrize(
    "bad,reason",
    [
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((8, 8, 3), np.uint8), "smaller"),
        (np.zeros((200, 200, 3), np.uint8), "more than"),
    ],
)
def test_agent_invalid_images_get_invalid_arg(repo, served, bad, reason):
    args = stub.model_args(repo / b.AGENT_MODEL)
    config = json.loads(args["model_config"])
    config["parameters"][b.PARAM_MAX_PIXELS]["string_value"] = str(150 * 150)
    args["model_config"] = json.dumps(config)
    agent = load_model_py(repo / b.AGENT_MODEL)()
    agent.initialize(args)
    resp = agent_restore(agent, bad)
    assert resp.has_error() and resp.error().code() == pb.TritonError.INVALID_ARG
    assert reason in resp.error().message() and f"[{m.ERROR_INVALID_INPUT}]" in resp.error().message()
    assert not agent_restore(agent, image()).has_error()  # still serving
    agent.finalize()


def first_tool(policy_model, img: np.ndarray) -> str:
    """The first action the served policy takes on ``img``."""
    return policy_model.act([img], [[]])[1][0]


def test_agent_reports_a_failing_tool_and_keeps_serving(repo, served):
    img = image(0)
    name = first_tool(served[0], img)
    assert name != b.STOP, "the random test policy should call a tool first"
    model_name = b.tool_model_name(name)
    saved = stub.BLS_MODELS[model_name]
    agent = build(repo / b.AGENT_MODEL)
    try:
        stub.BLS_MODELS[model_name] = lambda tensors: pb.InferenceResponse(error=pb.TritonError("boom", pb.TritonError.INTERNAL))
        resp = agent_restore(agent, img)
        assert resp.has_error() and resp.error().code() == pb.TritonError.INTERNAL
        assert f"[{m.ERROR_TOOL_FAILED}]" in resp.error().message() and model_name in resp.error().message() and "boom" in resp.error().message()
    finally:
        stub.BLS_MODELS[model_name] = saved
    assert not agent_restore(agent, img).has_error()
    errors = [x for x in pb.MetricFamily.CREATED[m.ERRORS_TOTAL].metrics if x.labels == {"reason": m.ERROR_TOOL_FAILED}]
    assert errors[-1].value == 1
    agent.finalize()


def test_agent_times_out_a_hanging_tool(repo, served):
    img = image(0)
    model_name = b.tool_model_name(first_tool(served[0], img))
    args = stub.model_args(repo / b.AGENT_MODEL)
    config = json.loads(args["model_config"])
    config["parameters"][b.PARAM_TOOL_TIMEOUT]["string_value"] = "0.3"
    args["model_config"] = json.dumps(config)
    agent = load_model_py(repo / b.AGENT_MODEL)()
    agent.initialize(args)
    saved = stub.BLS_MODELS[model_name]

    def hang(tensors):
        time.sleep(3)
        return saved(tensors)

    stub.BLS_MODELS[model_name] = hang
    try:
        start = time.perf_counter()
        resp = agent_restore(agent, img)
        took = time.perf_counter() - start
    finally:
        stub.BLS_MODELS[model_name] = saved
    assert resp.has_error() and f"[{m.ERROR_TOOL_TIMEOUT}]" in resp.error().message() and "0.3 s" in resp.error().message()
    assert took < 2.5
    agent.finalize()


def test_run_episode_stops_at_stop_and_at_the_cap():
    img = image()
    plan = iter([(0, "a"), (1, "b"), (2, "STOP")])
    ep = b.run_episode(img, lambda im, h: next(plan), lambda name, im: 255 - im, lambda im: float(im.mean()), max_steps=5)
    assert ep.tools == ["a", "b"] and len(ep.scores) == 3 and len(ep.step_seconds) == 3
    np.testing.assert_array_equal(ep.image, img)
    capped = b.run_episode(img, lambda im, h: (0, "a"), lambda name, im: 255 - im, lambda im: 0.0, max_steps=2)
    assert capped.tools == ["a", "a"]
    with pytest.raises(b.ServingError, match="shape") as info:
        b.run_episode(img, lambda im, h: (0, "a"), lambda name, im: im[:20], lambda im: 0.0, max_steps=2)
    assert info.value.reason == m.ERROR_TOOL_FAILED


def test_make_model_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="tool"):
        b.make_model("judge", pb)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cli_fails_fast_in_one_line_when_triton_is_unreachable(protocol, tmp_path, capsys):
    from restore_r1.cli import main
    from restore_r1.images import write_image

    write_image(tmp_path / "a.png", image())
    from restore_r1.serving.server import free_port

    code = main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--triton-url", f"127.0.0.1:{free_port()}", "--protocol", protocol])
    err = capsys.readouterr().err
    assert code == 2 and "not reachable" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
