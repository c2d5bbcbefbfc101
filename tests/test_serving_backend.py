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
    tools = {name: build(repo / name) for name, kind, *_ in model_specs() if kind == "tool"}
    stub.BLS_MODELS.clear()
    stub.BLS_MODELS[b.POLICY_MODEL] = route(policy)
    stub.BLS_MODELS.update({name: route(model) for name, model in tools.items()})
    yield policy, tools
    stub.BLS_MODELS.clear()


@pytest.mark.parametrize("name,kind", [(n, k) for n, k, *_ in model_specs()])
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


def test_agent_metrics_export_known_label_values_at_zero():
    """Every outcome and error reason exists at 0 before any request, so Prometheus' rate() sees
    the first increments (a series born at N shows no increase)."""
    metrics = b.AgentMetrics(pb)
    for name, (label, values) in m.INITIAL_SERIES.items():
        at_zero = {dict(labels)[label] for (n, labels), x in metrics._metrics.items() if n == name and x.value == 0}
        assert at_zero == set(values), name
    assert set(m.INITIAL_SERIES[m.ERRORS_TOTAL][1]) == set(m.ERROR_REASONS)
    metrics.close()


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


def build_agent(repo: Path, **params: str):
    """The agent model with some ``parameters`` of its cpu config replaced."""
    args = stub.model_args(repo / b.AGENT_MODEL)
    config = json.loads(args["model_config"])
    for key, value in params.items():
        config["parameters"][key]["string_value"] = value
    args["model_config"] = json.dumps(config)
    agent = load_model_py(repo / b.AGENT_MODEL)()
    agent.initialize(args)
    return agent


#: The plan of :func:`scripted_policy` in the fault tests: three fast tools, then STOP.
PLAN = ("gamma_correction", "clahe", "unsharp_defocus")


def scripted_policy(plan=PLAN, fail_at: int | None = None):
    """A BLS route for the policy model: ``plan[t]`` at step t + 1, then STOP; an error at step ``fail_at``."""

    def fn(tensors):
        history = b.decode_history(next(t for t in tensors if t.name() == b.HISTORY).as_numpy()[0])
        step = len(history) + 1
        if step == fail_at:
            return pb.InferenceResponse(error=pb.TritonError("policy broke", pb.TritonError.INTERNAL))
        name = plan[step - 1] if step <= len(plan) else b.STOP
        action = step - 1 if step <= len(plan) else len(plan)
        return pb.InferenceResponse(
            output_tensors=[pb.Tensor(b.ACTION, np.array([[action]], np.int32)), pb.Tensor(b.ACTION_NAME, np.array([[name.encode()]], dtype=np.object_))]
        )

    return fn


def _error_route(tensors):
    return pb.InferenceResponse(error=pb.TritonError("boom", pb.TritonError.INTERNAL))


def _raising_route(tensors):
    raise RuntimeError("boom")


def _bad_shape_route(tensors):
    return pb.InferenceResponse(output_tensors=[pb.Tensor(b.OUTPUT_IMAGE, np.zeros((1, 20, 20, 3), np.uint8))])


def trajectory(resp) -> dict:
    return json.loads(pb.get_output_tensor_by_name(resp, b.TRAJECTORY).as_numpy()[0, 0])


def output_image(resp) -> np.ndarray:
    return pb.get_output_tensor_by_name(resp, b.OUTPUT_IMAGE).as_numpy()[0]


def counter(name: str, **labels: str) -> float:
    return sum(x.value for x in pb.MetricFamily.CREATED[name].metrics if x.labels == labels)


def test_a_fault_free_answer_says_partial_false(repo, served, monkeypatch):
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy())
    agent = build_agent(repo)
    traj = trajectory(agent_restore(agent, image(0)))
    assert traj["tools"] == list(PLAN) and traj["partial"] is False and traj["failed"] is None
    assert counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_OK) == 1 and counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_PARTIAL) == 0
    agent.finalize()


@pytest.mark.parametrize("route,what", [(_error_route, "boom"), (_raising_route, "RuntimeError: boom"), (_bad_shape_route, "shape")])
def test_a_tool_failing_at_step_2_gives_the_best_image_so_far_flagged_partial(repo, served, monkeypatch, route, what):
    from restore_r1.tools import get_tool

    img = image(0)
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy())
    monkeypatch.setitem(stub.BLS_MODELS, b.tool_model_name(PLAN[1]), route)
    agent = build_agent(repo)
    resp = agent_restore(agent, img)
    assert not resp.has_error(), resp.error().message()
    traj = trajectory(resp)
    assert traj["partial"] is True and traj["tools"] == [PLAN[0]] and len(traj["scores"]) == 2
    failed = traj["failed"]
    assert {k: failed[k] for k in ("step", "tool", "model", "reason")} == {
        "step": 2,
        "tool": PLAN[1],
        "model": b.tool_model_name(PLAN[1]),
        "reason": m.ERROR_TOOL_FAILED,
    }
    assert failed["message"].startswith(f"step 2, tool {PLAN[1]!r}: ") and what in failed["message"]
    # The best of the input and the step-1 output, by the judge scores of the trajectory.
    expected = get_tool(PLAN[0])(img) if traj["scores"][1] > traj["scores"][0] else img
    np.testing.assert_array_equal(output_image(resp), expected)
    assert counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_PARTIAL) == 1 and counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_OK) == 0
    assert counter(m.ERRORS_TOTAL, reason=m.ERROR_TOOL_FAILED) == 1
    assert pb.MetricFamily.CREATED[m.STEPS].metrics[-1].observations == [1]
    agent.finalize()


def test_a_tool_failing_at_step_1_is_an_error_naming_the_step(repo, served, monkeypatch):
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy())
    monkeypatch.setitem(stub.BLS_MODELS, b.tool_model_name(PLAN[0]), _raising_route)
    agent = build_agent(repo)
    resp = agent_restore(agent, image(0))
    assert resp.has_error() and resp.error().code() == pb.TritonError.INTERNAL
    message = resp.error().message()
    assert message.startswith(f"[{m.ERROR_TOOL_FAILED}] step 1, tool {PLAN[0]!r}: model {b.tool_model_name(PLAN[0])} raised RuntimeError: boom")
    assert counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_ERROR) == 1 and counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_PARTIAL) == 0
    agent.finalize()


def test_a_tool_hanging_at_step_3_times_out_into_a_partial_answer(repo, served, monkeypatch):
    saved = stub.BLS_MODELS[b.tool_model_name(PLAN[2])]

    def hang(tensors):
        time.sleep(3)
        return saved(tensors)

    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy())
    monkeypatch.setitem(stub.BLS_MODELS, b.tool_model_name(PLAN[2]), hang)
    agent = build_agent(repo, **{b.PARAM_TOOL_TIMEOUT: "0.3"})
    start = time.perf_counter()
    resp = agent_restore(agent, image(1))
    took = time.perf_counter() - start
    assert took < 2.5 and not resp.has_error(), resp.error().message() if resp.has_error() else took
    traj = trajectory(resp)
    assert traj["partial"] is True and traj["tools"] == list(PLAN[:2])
    assert traj["failed"]["step"] == 3 and traj["failed"]["reason"] == m.ERROR_TOOL_TIMEOUT and "0.3 s" in traj["failed"]["message"]
    assert len(traj["step_seconds"]) == 3 and traj["step_seconds"][-1] >= 0.3
    assert counter(m.ERRORS_TOTAL, reason=m.ERROR_TOOL_TIMEOUT) == 1
    agent.finalize()


def test_a_tool_not_loaded_at_step_2_gives_a_partial_answer(repo, served, monkeypatch):
    """An unloaded model: BLS answers "not found" (what the stub and Triton do for a model that is not loaded)."""
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy())
    monkeypatch.delitem(stub.BLS_MODELS, b.tool_model_name(PLAN[1]))
    agent = build_agent(repo)
    traj = trajectory(agent_restore(agent, image(0)))
    assert traj["partial"] is True and traj["failed"]["reason"] == m.ERROR_TOOL_FAILED and "not found" in traj["failed"]["message"]
    agent.finalize()


def test_a_policy_failing_after_a_step_gives_a_partial_answer_and_at_step_1_an_error(repo, served, monkeypatch):
    agent = build_agent(repo)
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy(fail_at=2))
    traj = trajectory(agent_restore(agent, image(0)))
    assert traj["partial"] is True and traj["tools"] == [PLAN[0]]
    assert traj["failed"]["step"] == 2 and traj["failed"]["tool"] is None and traj["failed"]["model"] == b.POLICY_MODEL
    assert (
        traj["failed"]["reason"] == m.ERROR_POLICY_FAILED
        and traj["failed"]["message"].startswith("step 2, policy: ")
        and "policy broke" in traj["failed"]["message"]
    )
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy(fail_at=1))
    resp = agent_restore(agent, image(0))
    assert resp.has_error() and resp.error().message().startswith(f"[{m.ERROR_POLICY_FAILED}] step 1, policy: ")
    assert counter(m.ERRORS_TOTAL, reason=m.ERROR_POLICY_FAILED) == 2
    assert counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_PARTIAL) == 1 and counter(m.REQUESTS_TOTAL, outcome=m.OUTCOME_ERROR) == 1
    agent.finalize()


@pytest.mark.parametrize(
    "inputs,reason",
    [
        ({"IMAGE": np.array([[b"\x89PNG\r\n\x1a\n not pixels"]], dtype=np.object_)}, "expected uint8 pixels, got object"),
        ({"MAX_STEPS": np.array([[1]], np.int32)}, "input IMAGE is missing"),
        ({"IMAGE": image()[None], "MAX_STEPS": np.array([[-1]], np.int32)}, "MAX_STEPS -1 is out of range: expected 0..16"),
        ({"IMAGE": image()[None], "MAX_STEPS": np.array([[10**6]], np.int32)}, "MAX_STEPS 1000000 is out of range"),
        ({"IMAGE": image()[None], "MAX_STEPS": np.array([[1], [2]], np.int32)}, "2 values for 1 image(s)"),
    ],
    ids=["bytes", "no-image", "max-steps-negative", "max-steps-huge", "max-steps-count"],
)
def test_agent_bad_requests_are_invalid_arg_and_the_next_one_is_served(repo, served, inputs, reason):
    agent = build_agent(repo)
    (resp,) = agent.execute([stub.Request(**inputs)])
    assert resp.has_error() and resp.error().code() == pb.TritonError.INVALID_ARG
    assert resp.error().message().startswith(f"[{m.ERROR_INVALID_INPUT}] ") and reason in resp.error().message()
    assert not agent_restore(agent, image()).has_error()
    agent.finalize()


def test_run_episode_answers_the_best_scoring_image_when_a_later_step_fails():
    img = image()
    outputs = {"a": np.full_like(img, 10), "b": np.full_like(img, 20)}
    scores = {10: 3.0, 20: 2.5}  # by the outputs' pixel value; the input scores 2.0

    def tool(name, im):
        if name == "c":
            raise b.ServingError(m.ERROR_TOOL_FAILED, "model restore_r1_tool_c failed: boom")
        return outputs[name]

    plan = iter([(0, "a"), (1, "b"), (2, "c")])
    ep = b.run_episode(img, lambda im, h: next(plan), tool, lambda im: 2.0 if im is img else scores[int(im.flat[0])], max_steps=5)
    assert ep.partial and ep.tools == ["a", "b"] and ep.scores == [2.0, 3.0, 2.5]
    np.testing.assert_array_equal(ep.image, outputs["a"])  # step 1 scored best, not the last good step
    assert ep.failed == b.StepFailure(3, "c", "restore_r1_tool_c", m.ERROR_TOOL_FAILED, "step 3, tool 'c': model restore_r1_tool_c failed: boom")
    # Every step worse than the input: the answer is the input itself.
    plan = iter([(0, "b"), (2, "c")])
    ep = b.run_episode(img, lambda im, h: next(plan), tool, lambda im: 2.0 if im is img else 1.0, max_steps=5)
    assert ep.partial and ep.image is img and ep.trajectory()["failed"]["step"] == 2
    # Failing at step 1 leaves nothing to answer with.
    with pytest.raises(b.ServingError, match="^step 1, tool 'c': ") as info:
        b.run_episode(img, lambda im, h: (2, "c"), tool, lambda im: 2.0, max_steps=5)
    assert info.value.reason == m.ERROR_TOOL_FAILED


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


def test_cli_writes_a_partial_result_warns_in_one_line_and_exits_0(tmp_path, capsys, monkeypatch):
    from restore_r1.agent.inference import RestoreResult
    from restore_r1.cli import main
    from restore_r1.images import read_image, write_image
    from restore_r1.serving import client

    failed = {"step": 2, "tool": "clahe", "model": b.tool_model_name("clahe"), "reason": m.ERROR_TOOL_TIMEOUT, "message": "step 2, tool 'clahe': no answer"}

    class PartialClient:
        def __init__(self, url, protocol="http"):
            pass

        def check_ready(self):
            pass

        def restore(self, img, max_steps=None):
            return RestoreResult(image=255 - img, tools=["gamma_correction"], scores=[2.0, 2.5], seconds=0.1, partial=True, failed=failed)

    monkeypatch.setattr(client, "TritonAgentClient", PartialClient)
    write_image(tmp_path / "a.png", image())
    code = main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--triton-url", "127.0.0.1:1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["partial"] is True and line["failed"] == failed and line["tools"] == ["gamma_correction"]
    np.testing.assert_array_equal(read_image(line["output"]), 255 - image())
    assert err == f"warning: {tmp_path / 'a.png'}: partial result [{m.ERROR_TOOL_TIMEOUT}]: step 2, tool 'clahe': no answer; wrote the best image so far\n"


# --- policy version in answers, process memory settings, bench/test images -------------------


def test_the_policy_model_returns_the_version_triton_loaded_it_as(repo):
    args = stub.model_args(repo / b.POLICY_MODEL)
    args["model_version"] = "7"  # no 7/policy folder: the model falls back to the packaged default
    model = load_model_py(repo / b.POLICY_MODEL)()
    model.initialize(args)
    (resp,) = model.execute([stub.Request(IMAGE=np.stack([image(0), image(1)]), HISTORY=np.full((2, b.HISTORY_LEN), -1, np.int32))])
    assert pb.get_output_tensor_by_name(resp, b.POLICY_VERSION).as_numpy().tolist() == [[b"7"], [b"7"]]


def policy_calls() -> list[int]:
    """The model_version of each BLS call to the policy model since the last clear."""
    return [version for model, version in stub.BLS_CALLS if model == b.POLICY_MODEL]


def test_answers_say_which_policy_version_served_them(repo, served):
    agent = build(repo / b.AGENT_MODEL)
    stub.BLS_CALLS.clear()
    traj = trajectory(agent_restore(agent, image(0)))
    assert traj["policy_version"] == MODEL_VERSION
    assert len(policy_calls()) == len(traj["tools"]) + (len(traj["tools"]) < b.HISTORY_LEN)  # every tool call, then STOP
    agent.finalize()


def test_an_episode_stays_on_the_policy_version_of_its_first_decision(repo, served, monkeypatch):
    scripted = scripted_policy()

    def versioned(tensors):  # the latest version is 2 (a new policy was loaded)
        resp = scripted(tensors)
        return pb.InferenceResponse(output_tensors=[*resp.output_tensors(), pb.Tensor(b.POLICY_VERSION, np.array([[b"2"]], dtype=np.object_))])

    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, versioned)
    agent = build_agent(repo)
    stub.BLS_CALLS.clear()
    traj = trajectory(agent_restore(agent, image(0)))
    # The first decision asks for the latest version; every later one for the version that answered
    # it, so that another policy never reads this episode's tool history.
    assert traj["tools"] == list(PLAN) and traj["policy_version"] == "2" and policy_calls() == [b.LATEST_VERSION, 2, 2, 2]
    agent.finalize()


def test_a_policy_model_without_a_version_output_still_serves_with_version_null(repo, served, monkeypatch):
    monkeypatch.setitem(stub.BLS_MODELS, b.POLICY_MODEL, scripted_policy())
    agent = build_agent(repo)
    stub.BLS_CALLS.clear()
    traj = trajectory(agent_restore(agent, image(0)))
    assert traj["tools"] == list(PLAN) and traj["policy_version"] is None and policy_calls() == [b.LATEST_VERSION] * (len(PLAN) + 1)
    agent.finalize()


def test_the_client_and_the_cli_report_the_policy_version(tmp_path, capsys, monkeypatch):
    from restore_r1.agent.inference import RestoreResult
    from restore_r1.cli import main
    from restore_r1.images import write_image
    from restore_r1.serving import client

    traj = {"tools": ["clahe"], "scores": [0.0, 1.0], "step_seconds": [0.1, 0.1], "seconds": 0.2, "partial": False, "failed": None}
    traj["policy_version"] = "2"

    class Result:
        def as_numpy(self, name):
            return np.zeros((1, 48, 64, 3), np.uint8) if name == b.OUTPUT_IMAGE else np.array([[json.dumps(traj).encode()]], dtype=np.object_)

    remote = client.TritonAgentClient("127.0.0.1:1")
    monkeypatch.setattr(remote, "infer_raw", lambda array, max_steps=None: Result())
    result = remote.restore(image())
    assert result.policy_version == "2" and result.tools == ["clahe"]

    class Client:
        def __init__(self, url, protocol="http"):
            pass

        def check_ready(self):
            pass

        def restore(self, img, max_steps=None):
            return RestoreResult(image=img, tools=[], scores=[0.0], seconds=0.1, policy_version="2")

    monkeypatch.setattr(client, "TritonAgentClient", Client)
    write_image(tmp_path / "a.png", image())
    assert main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--triton-url", "127.0.0.1:1", "--json"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["policy_version"] == "2"


def test_keep_freed_memory_applies_on_glibc_and_defers_to_the_environment(monkeypatch):
    import platform

    for name in b.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    if platform.libc_ver()[0] == "glibc":
        assert b.keep_freed_memory() is True
    monkeypatch.setenv(b.MALLOC_ENV[0], str(1 << 20))
    assert b.keep_freed_memory() is False


def test_degraded_photos_are_reproducible_crops_of_any_size():
    from restore_r1.cleanimages import HELDOUT_NAMES, load_clean
    from restore_r1.degradations import apply_case
    from restore_r1.serving.testing import degraded_photos

    small = degraded_photos(64, 48, 3)
    assert [im.shape for im in small] == [(48, 64, 3)] * 3 and all(im.dtype == np.uint8 for im in small)
    clean = load_clean(HELDOUT_NAMES[1])
    top, left = (clean.shape[0] - 48) // 2, (clean.shape[1] - 64) // 2
    expected = apply_case(2, np.ascontiguousarray(clean[top : top + 48, left : left + 64]), np.random.default_rng(1))[0]
    np.testing.assert_array_equal(small[1], expected)  # image 1: the second photo, case 2, seed 0 + 1
    assert all(np.array_equal(a, c) for a, c in zip(small, degraded_photos(64, 48, 3)))
    (big,) = degraded_photos(1152, 864, 1)  # larger than the photo: enlarged first
    assert big.shape == (864, 1152, 3)
    with pytest.raises(ValueError, match="positive"):
        degraded_photos(0, 10, 1)


# --- the server helper's process, memory and shared-memory bookkeeping; client transport errors


def fake_proc(root: Path, pid: int, pgrp: int, rss_kb: int, maps: str = "") -> None:
    folder = root / str(pid)
    folder.mkdir(parents=True)
    # The command may hold spaces and parentheses; the fields after it are state, ppid, pgrp.
    (folder / "stat").write_text(f"{pid} (triton python (stub)) S 1 {pgrp} {pgrp} 0 -1\n")
    (folder / "status").write_text(f"Name:\tstub\nVmRSS:\t  {rss_kb} kB\nThreads:\t3\n")
    (folder / "maps").write_text(maps)


def test_group_pids_rss_and_shm_regions_read_proc(tmp_path):
    from restore_r1.serving.server import SHM_DIR, SHM_PREFIX, group_pids, rss_bytes, shm_regions

    region = f"{SHM_PREFIX}0f3c"
    line = f"7f00-7f10 rw-s 00000000 00:1a 123 {SHM_DIR}/{region}\n7f20-7f30 r-xp 00000000 08:01 9 /usr/lib/libc.so.6\n"
    fake_proc(tmp_path, 100, 100, 1000, line)
    fake_proc(tmp_path, 101, 100, 500, f"7f00-7f10 rw-s 00000000 00:1a 124 {SHM_DIR}/{SHM_PREFIX}dead (deleted)\n")
    fake_proc(tmp_path, 200, 200, 9999)
    (tmp_path / "self").mkdir()
    assert group_pids(100, proc=tmp_path) == [100, 101]
    assert rss_bytes([100, 101, 12345], proc=tmp_path) == 1500 * 1024  # a process that is gone counts 0
    assert shm_regions([100, 101, 200], proc=tmp_path) == {region, f"{SHM_PREFIX}dead"}


def test_compile_model_files_writes_the_bytecode_an_import_would(tmp_path):
    import sys

    from restore_r1.serving.server import compile_model_files

    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_text("X = 1\n")
    compile_model_files(tmp_path, Path(sys.executable))
    assert [p.name for p in (tmp_path / "m" / "1" / "__pycache__").iterdir()] == [f"model.{sys.implementation.cache_tag}.pyc"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_to_a_server_that_is_not_there_is_a_remote_error(protocol):
    from restore_r1.serving.client import STATUS_UNAVAILABLE, RemoteError, TritonAgentClient
    from restore_r1.serving.server import free_port

    client = TritonAgentClient(f"127.0.0.1:{free_port()}", protocol=protocol, timeout_s=10)
    start = time.perf_counter()
    with pytest.raises(RemoteError) as info:
        client.restore(image())
    assert time.perf_counter() - start < 10 and info.value.reason is None
    assert info.value.status == STATUS_UNAVAILABLE if protocol == "http" else "UNAVAILABLE" in info.value.status


def test_the_grpc_client_keeps_tritonclients_defaults_and_reconnects_quickly():
    import tritonclient.grpc as tc

    from restore_r1.serving.client import GRPC_MAX_RECONNECT_BACKOFF_MS, grpc_channel_args

    args = dict(grpc_channel_args(tc))
    assert args["grpc.max_send_message_length"] == args["grpc.max_receive_message_length"] == tc.MAX_GRPC_MESSAGE_SIZE
    assert args["grpc.max_reconnect_backoff_ms"] == GRPC_MAX_RECONNECT_BACKOFF_MS <= 5000


def test_model_counters_reads_per_model_samples_summed_over_versions(tmp_path):
    from restore_r1.serving.server import model_counters

    page = tmp_path / "metrics"
    page.write_text(
        "# HELP nv_inference_exec_count Number of model executions\n"
        'nv_inference_exec_count{model="restore_r1_policy",version="1"} 3\n'
        'nv_inference_exec_count{model="restore_r1_policy",version="2"} 4\n'
        'nv_inference_request_success{model="restore_r1_tool_clahe",version="1"} 9\n'
        'nv_gpu_utilization{gpu_uuid="x"} 0.5\n'
    )
    assert model_counters(page.as_uri()) == {
        ("nv_inference_exec_count", "restore_r1_policy"): 7.0,
        ("nv_inference_request_success", "restore_r1_tool_clahe"): 9.0,
    }


def test_neural_tools_on_gpu_instances_get_their_gpu():
    """Issue 10 §3: a KIND_GPU instance of a neural tool runs on its GPU; classical tools and
    CPU instances are left alone, and an explicit $RESTORE_R1_DEVICE wins."""
    from restore_r1.serving.backend import instance_device

    gpu = {"model_instance_kind": "GPU", "model_instance_device_id": "1"}
    env: dict[str, str] = {}
    assert instance_device(gpu, neural=True, env=env) == "cuda:1" and env == {"RESTORE_R1_DEVICE": "cuda:1"}
    assert instance_device({"model_instance_kind": "CPU"}, neural=True, env={}) is None
    assert instance_device(gpu, neural=False, env={}) is None
    assert instance_device(gpu, neural=True, env={"RESTORE_R1_DEVICE": "cpu"}) == "cpu"
