"""A real Triton server (the tritonserver of .venv-triton) on 127.0.0.1 with the model repository.

One server for the module (about 20 s to load 17 python models): restores over HTTP and gRPC
through the CLI compared with the in-process agent, bad inputs, metrics, a failing and a hanging
tool model (swapped in and reloaded with the explicit model-control API) at the first step (an
error) and at the second (a partial answer), a tool model unloaded mid-request, and a stop by
process id. Skipped when the Triton venv is missing (``make test`` builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from restore_r1.serving import backend as b
from restore_r1.serving import metrics as m
from restore_r1.serving.repository import MODEL_VERSION, write_repository
from restore_r1.serving.server import DEFAULT_VENV, VENV_ENV, TritonServer
from restore_r1.serving.testing import FAILING_MODEL, make_random_policy, swapped_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
VENV = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
if not (VENV / "bin" / "python").exists():
    pytest.skip(f"no Triton venv at {VENV}; run `make triton-venv`", allow_module_level=True)

#: In-process (.venv) vs Triton (.venv-triton), both on the pixel lock (constraints.txt): tool
#: choices must match and pixels may differ by at most this (uint8 levels): none.
PIXEL_TOLERANCE = 0
#: Judge scores may differ by this much between the two processes.
SCORE_TOLERANCE = 1e-4
#: Agent timeout per tool call in this test's repository, and how long the hanging tool sleeps.
TOOL_TIMEOUT_S = 3
HANG_S = 8
#: Pixel limit of the agent in this test's repository (the crops are 128×96).
MAX_PIXELS = 200 * 200

HANGING_MODEL = f"""import time
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        time.sleep({HANG_S})
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("too late")) for _ in requests]
"""


def crops() -> list[np.ndarray]:
    """Two degraded 128×96 crops (cases 1 and 4: dark + noise, noise + JPEG)."""
    from restore_r1.cleanimages import load_clean
    from restore_r1.degradations import apply_case

    return [
        apply_case(case, np.ascontiguousarray(load_clean(name)[:96, :128]), np.random.default_rng(case))[0] for case, name in ((1, "astronaut"), (4, "coffee"))
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    repo = write_repository(root / "repo")
    policy_dir = make_random_policy(repo / b.POLICY_MODEL / MODEL_VERSION / b.POLICY_SUBDIR)
    cpu = repo / b.AGENT_MODEL / "configs" / "cpu.pbtxt"
    text = cpu.read_text().replace(f'string_value: "{b.DEFAULT_TOOL_TIMEOUT_S:g}"', f'string_value: "{TOOL_TIMEOUT_S}"')
    cpu.write_text(text.replace(f'string_value: "{b.DEFAULT_MAX_PIXELS}"', f'string_value: "{MAX_PIXELS}"'))
    srv = TritonServer(repo, VENV, 0, 0, 0, extra_args=["--model-control-mode=explicit", "--load-model=*"], log_path=root / "tritonserver.log")
    srv.start()
    srv.policy_dir = policy_dir
    srv.root = root
    yield srv
    srv.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "restore-r1"), *args], capture_output=True, text=True, timeout=120)


def test_restore_over_http_and_grpc_equals_in_process(server, tmp_path):
    from restore_r1.agent.inference import Agent
    from restore_r1.images import read_image, write_image

    inputs = []
    for i, img in enumerate(crops()):
        inputs.append(write_image(tmp_path / "in" / f"img{i}.png", img))
    local = Agent.load(server.policy_dir)
    expected = {p.stem: local.restore(read_image(p)) for p in inputs}
    assert any(r.tools for r in expected.values())
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        out = tmp_path / protocol
        proc = cli("restore", str(tmp_path / "in"), "-o", str(out), "--triton-url", url, "--protocol", protocol, "--json")
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(lines) == len(inputs)
        for line in lines:
            stem = Path(line["input"]).stem
            exp = expected[stem]
            assert line["tools"] == exp.tools
            assert line["scores"] == pytest.approx(exp.scores, abs=SCORE_TOLERANCE)
            got = read_image(line["output"])
            assert int(np.abs(got.astype(int) - exp.image.astype(int)).max()) <= PIXEL_TOLERANCE


def test_served_tools_stand_in_for_in_process_ones_in_a_plan(server):
    """The VLM planner's reward can call the server's tools (restore-r1 train --planner vlm --tools-url)."""
    from restore_r1.agent.env import apply_plans
    from restore_r1.agent.inference import available_tool_map
    from restore_r1.judges import create_judge
    from restore_r1.serving.client import RemoteError, triton_tool_map

    names = ["gamma_correction", "clahe"]
    local, judge = available_tool_map(names), create_judge("default")
    images = crops()
    expected = apply_plans(images, [names, names[::-1]], local, judge, tool_cost=0.1)
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        served = triton_tool_map(url, names, protocol=protocol)
        for name in names:
            assert np.array_equal(served[name](images[0]), local[name](images[0])), (protocol, name)
        got = apply_plans(images, [names, names[::-1]], served, judge, tool_cost=0.1)
        for g, e in zip(got, expected):
            assert np.array_equal(g.final_image, e.final_image) and g.rewards == pytest.approx(e.rewards, abs=SCORE_TOLERANCE)
    with pytest.raises(RemoteError, match=r"does not serve the tools \['no_such_tool'\]"):
        triton_tool_map(server.http_url, ["clahe", "no_such_tool"])


def test_bad_inputs_are_invalid_arguments_and_the_server_stays_healthy(server, tmp_path):
    from restore_r1.images import write_image
    from restore_r1.serving.client import RemoteError, TritonAgentClient

    png = write_image(tmp_path / "crop.png", crops()[0]).read_bytes()
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        client = TritonAgentClient(url, protocol)
        # (IMAGE or None for none, MAX_STEPS, what the one-line message must say)
        cases = {
            "dtype": (np.zeros((1, 32, 32, 3), np.float32), None, "IMAGE"),
            "shape": (np.zeros((1, 32, 32), np.uint8), None, "IMAGE"),
            "channels": (np.zeros((1, 32, 32, 4), np.uint8), None, "IMAGE"),
            "empty": (np.zeros((1, 0, 0, 3), np.uint8), None, "empty"),
            "tiny": (np.zeros((1, 4, 4, 3), np.uint8), None, "smaller than"),
            "oversized": (np.zeros((1, 256, 256, 3), np.uint8), None, "more than"),
            "file bytes as BYTES": (np.array([[png]], dtype=np.object_), None, "IMAGE"),
            "file bytes as UINT8": (np.frombuffer(png, np.uint8)[None], None, "IMAGE"),
            "no IMAGE": (None, 1, "input IMAGE is missing"),
            "MAX_STEPS -1": (crops()[0][None], -1, "MAX_STEPS -1 is out of range: expected 0..16"),
            "MAX_STEPS 10**6": (crops()[0][None], 10**6, "MAX_STEPS 1000000 is out of range: expected 0..16"),
        }
        for what, (array, max_steps, says) in cases.items():
            with pytest.raises(RemoteError) as info:
                client.infer_raw(array, max_steps)
            status, message = str(info.value.status), str(info.value)
            assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (protocol, what, status, message)
            assert says in message and "\n" not in message, (protocol, what, message)
            if info.value.reason is not None:  # the agent refused it (not Triton's own checks)
                assert info.value.reason == m.ERROR_INVALID_INPUT, (protocol, what, message)
        assert client.ready()
        result = client.restore(crops()[0])
        assert result.image.shape == (96, 128, 3) and not result.partial
        client.close()


def test_cli_reports_a_refused_image_in_one_line(server, tmp_path):
    from restore_r1.images import write_image

    write_image(tmp_path / "in" / "big.png", np.zeros((256, 256, 3), np.uint8))
    proc = cli("restore", str(tmp_path / "in" / "big.png"), "-o", str(tmp_path / "out"), "--triton-url", server.http_url)
    assert proc.returncode == 1
    assert "big.png" in proc.stderr and f"more than {MAX_PIXELS} pixels" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "big.png").exists()


def metrics_text(server) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_tools_steps_and_errors(server):
    from restore_r1.serving.client import RemoteError, TritonAgentClient

    client = TritonAgentClient(server.http_url)
    before = metrics_text(server)
    result = client.restore(crops()[1])
    with pytest.raises(RemoteError):
        client.infer_raw(np.zeros((1, 0, 0, 3), np.uint8))
    client.close()
    after = metrics_text(server)
    assert metric_value(after, m.REQUESTS_TOTAL, outcome="ok") == metric_value(before, m.REQUESTS_TOTAL, outcome="ok") + 1
    assert metric_value(after, m.ERRORS_TOTAL, reason=m.ERROR_INVALID_INPUT) == metric_value(before, m.ERRORS_TOTAL, reason=m.ERROR_INVALID_INPUT) + 1
    assert metric_value(after, m.STEPS + "_count") == metric_value(before, m.STEPS + "_count") + 1
    assert metric_value(after, m.STEPS + "_sum") - metric_value(before, m.STEPS + "_sum") == len(result.tools)
    for tool in set(result.tools):
        gained = metric_value(after, m.TOOL_CALLS_TOTAL, tool=tool) - metric_value(before, m.TOOL_CALLS_TOTAL, tool=tool)
        assert gained == result.tools.count(tool)
    assert metric_value(after, m.JUDGE_GAIN + "_count") >= 1
    assert metric_value(after, m.STEP_LATENCY_SECONDS + "_count") >= len(result.tools)
    assert metric_value(after, "nv_inference_request_success", model=b.AGENT_MODEL) >= 1
    assert metric_value(after, "nv_inference_request_success", model=b.POLICY_MODEL) >= 1


def wait_out_hang(started: float) -> None:
    """Sleeps until a call to the hanging model made at ``started`` has returned.

    The agent abandons it after TOOL_TIMEOUT_S, but the call holds the agent instance's BLS lock
    until the model answers, so the next request to that instance would wait for it.
    """
    time.sleep(max(0.0, started + HANG_S + 1 - time.monotonic()))


def plan_of(client, img) -> tuple[str, str]:
    """The first two tools the served (random) policy applies to ``img``."""
    result = client.restore(img)
    assert len(result.tools) >= 2 and not result.partial, f"the test policy should call two tools on this crop, got {result.tools}"
    return result.tools[0], result.tools[1]  # different: the policy forbids a repeat


@pytest.mark.timeout(240)
def test_a_failing_then_hanging_tool_gets_a_partial_answer_or_a_clear_error_never_a_hang(server, tmp_path):
    import tritonclient.http as httpclient

    from restore_r1.images import read_image, write_image
    from restore_r1.serving.client import RemoteError, TritonAgentClient

    img = crops()[0]
    client = TritonAgentClient(server.http_url)
    grpc = TritonAgentClient(server.grpc_url, "grpc")
    first, second = plan_of(client, img)
    after_first = client.restore(img, max_steps=1).image
    admin = httpclient.InferenceServerClient(server.http_url)
    before = metrics_text(server)
    for body, reason in ((FAILING_MODEL, m.ERROR_TOOL_FAILED), (HANGING_MODEL, m.ERROR_TOOL_TIMEOUT)):
        bound = 30 if reason == m.ERROR_TOOL_FAILED else TOOL_TIMEOUT_S + 10
        with swapped_model(server.repository, admin, second, body):
            # Fails at step 2: the best of the input and the step-1 image, flagged partial.
            start = time.monotonic()
            result = client.restore(img)
            assert time.monotonic() - start < bound
            assert result.partial and result.tools == [first] and len(result.scores) == 2
            failed = result.failed
            assert (failed["step"], failed["tool"], failed["model"], failed["reason"]) == (2, second, b.tool_model_name(second), reason)
            assert failed["message"].startswith(f"step 2, tool {second!r}: ")
            np.testing.assert_array_equal(result.image, after_first if result.scores[1] > result.scores[0] else img)
            if reason == m.ERROR_TOOL_FAILED:
                assert grpc.restore(img).failed == failed
                # The CLI writes the partial result, warns in one line and exits 0.
                proc = cli("restore", str(write_image(tmp_path / "in.png", img)), "-o", str(tmp_path / "out.png"), "--triton-url", server.http_url, "--json")
                assert proc.returncode == 0, proc.stderr
                line = json.loads(proc.stdout)
                assert line["partial"] is True and line["failed"] == failed
                np.testing.assert_array_equal(read_image(tmp_path / "out.png"), result.image)
                assert proc.stderr.startswith("warning: ") and f"[{reason}]" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
            else:
                wait_out_hang(start)
            # Fails at step 1: nothing to answer with, an error naming the step and the model.
            with swapped_model(server.repository, admin, first, body):
                start = time.monotonic()
                with pytest.raises(RemoteError) as info:
                    client.restore(img)
                assert time.monotonic() - start < bound
                assert info.value.reason == reason and f"step 1, tool {first!r}: model {b.tool_model_name(first)}" in str(info.value)
                assert client.ready()
                if reason == m.ERROR_TOOL_TIMEOUT:
                    wait_out_hang(start)
    admin.close()
    result = client.restore(img)
    assert result.tools[:2] == [first, second] and not result.partial
    after = metrics_text(server)
    # Partial: HTTP, gRPC and CLI with the failing model, HTTP with the hanging one; errors: one each.
    for outcome, gained in ((m.OUTCOME_PARTIAL, 4), (m.OUTCOME_ERROR, 2)):
        assert metric_value(after, m.REQUESTS_TOTAL, outcome=outcome) - metric_value(before, m.REQUESTS_TOTAL, outcome=outcome) == gained
    for reason, gained in ((m.ERROR_TOOL_FAILED, 4), (m.ERROR_TOOL_TIMEOUT, 2)):
        assert metric_value(after, m.ERRORS_TOTAL, reason=reason) - metric_value(before, m.ERRORS_TOTAL, reason=reason) == gained
    client.close()
    grpc.close()


@pytest.mark.timeout(180)
def test_a_tool_unloaded_mid_request_gives_a_partial_answer_never_a_hang(server):
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.http as httpclient

    from restore_r1.serving.client import TritonAgentClient

    img = crops()[0]
    client = TritonAgentClient(server.http_url)
    first, second = plan_of(client, img)
    name = b.tool_model_name(second)
    admin = httpclient.InferenceServerClient(server.http_url)
    with swapped_model(server.repository, admin, second, HANGING_MODEL):
        with ThreadPoolExecutor(max_workers=1) as pool:
            start = time.monotonic()
            pending = pool.submit(lambda: TritonAgentClient(server.http_url).restore(img))
            time.sleep(1.0)  # step 1 done, step 2 waiting on the hanging model (or about to call it)
            admin.unload_model(name)
            result = pending.result(timeout=TOOL_TIMEOUT_S + 30)
            took = time.monotonic() - start
        assert took < TOOL_TIMEOUT_S + 10, took
        assert result.partial and result.tools == [first], result
        assert result.failed["step"] == 2 and result.failed["tool"] == second and result.failed["reason"] in (m.ERROR_TOOL_FAILED, m.ERROR_TOOL_TIMEOUT)
        wait_out_hang(start)
        # While it is unloaded, step 2 fails at once: a partial answer naming the model.
        start = time.monotonic()
        result = client.restore(img)
        assert time.monotonic() - start < 30
        assert result.partial and result.failed["reason"] == m.ERROR_TOOL_FAILED and name in result.failed["message"], result.failed
    admin.close()
    result = client.restore(img)  # reloaded by swapped_model: the whole plan again
    assert result.tools[:2] == [first, second] and not result.partial
    client.close()


def test_zz_stop_by_process_id(server):
    pid = server.pid
    assert server.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not server.ready()
