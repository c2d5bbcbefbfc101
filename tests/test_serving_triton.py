"""A real Triton server (the tritonserver of .venv-triton) on 127.0.0.1 with the model repository.

One server for the module (about 20 s to load 17 python models): restores over HTTP and gRPC
through the CLI compared with the in-process agent, bad inputs, metrics, a failing and a hanging
tool model (swapped in and reloaded with the explicit model-control API), and a stop by process id.
Skipped when the Triton venv is missing (``make test`` builds it).
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
from restore_r1.serving.testing import make_random_policy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
VENV = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
if not (VENV / "bin" / "python").exists():
    pytest.skip(f"no Triton venv at {VENV}; run `make triton-venv`", allow_module_level=True)

#: In-process (.venv: numpy 2, OpenCV 5) vs Triton (.venv-triton: numpy<2, OpenCV 4.11): tool
#: choices must match and pixels may differ by at most this (uint8 levels); measured 0.
PIXEL_TOLERANCE = 0
#: Judge scores may differ by this much (1-5 scale) between the two environments.
SCORE_TOLERANCE = 1e-4
#: Agent timeout per tool call in this test's repository, and how long the hanging tool sleeps.
TOOL_TIMEOUT_S = 3
HANG_S = 8
#: Pixel limit of the agent in this test's repository (the crops are 128×96).
MAX_PIXELS = 200 * 200

FAILING_MODEL = """import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("injected failure")) for _ in requests]
"""
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


def test_bad_inputs_are_invalid_arguments_and_the_server_stays_healthy(server):
    from restore_r1.serving.client import RemoteError, TritonAgentClient

    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        client = TritonAgentClient(url, protocol)
        cases = {
            "dtype": np.zeros((1, 32, 32, 3), np.float32),
            "shape": np.zeros((1, 32, 32), np.uint8),
            "channels": np.zeros((1, 32, 32, 4), np.uint8),
            "empty": np.zeros((1, 0, 0, 3), np.uint8),
            "tiny": np.zeros((1, 4, 4, 3), np.uint8),
            "oversized": np.zeros((1, 256, 256, 3), np.uint8),
        }
        for what, array in cases.items():
            with pytest.raises(RemoteError) as info:
                client.infer_raw(array)
            status = str(info.value.status)
            assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (what, status, str(info.value))
        assert client.ready()
        assert client.restore(crops()[0]).image.shape == (96, 128, 3)
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


def test_a_failing_then_hanging_tool_gets_a_clear_error_never_a_hang(server):
    import tritonclient.http as httpclient

    from restore_r1.serving.client import RemoteError, TritonAgentClient

    img = crops()[0]
    client = TritonAgentClient(server.http_url)
    tool = client.restore(img).tools[0]
    model_py = server.repository / b.tool_model_name(tool) / MODEL_VERSION / "model.py"
    original = model_py.read_text()
    admin = httpclient.InferenceServerClient(server.http_url)
    try:
        for body, reason, bound in ((FAILING_MODEL, m.ERROR_TOOL_FAILED, 30), (HANGING_MODEL, m.ERROR_TOOL_TIMEOUT, TOOL_TIMEOUT_S + 10)):
            model_py.write_text(body)
            admin.load_model(b.tool_model_name(tool))
            start = time.monotonic()
            with pytest.raises(RemoteError) as info:
                client.restore(img)
            assert time.monotonic() - start < bound
            assert info.value.reason == reason and b.tool_model_name(tool) in str(info.value)
            assert client.ready()
        time.sleep(HANG_S)  # let the hanging call finish before the model is swapped back
    finally:
        model_py.write_text(original)
        admin.load_model(b.tool_model_name(tool))
        admin.close()
    assert client.restore(img).tools[0] == tool
    text = metrics_text(server)
    assert metric_value(text, m.ERRORS_TOTAL, reason=m.ERROR_TOOL_FAILED) >= 1
    assert metric_value(text, m.ERRORS_TOTAL, reason=m.ERROR_TOOL_TIMEOUT) >= 1
    client.close()


def test_zz_stop_by_process_id(server):
    pid = server.pid
    assert server.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not server.ready()
