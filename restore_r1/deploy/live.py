"""A live ``/metrics`` scrape of the local Triton, for checking dashboard and alert metric names.

Starts the serving package's local server (:class:`restore_r1.serving.server.TritonServer`, CPU
model configs) over ``triton_models/`` with a random test policy, sends one valid agent request
and one the agent rejects (so that counters with labels, histograms and the error counter have
series), scrapes ``/metrics`` and stops the server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from restore_r1.deploy.chart import REPO_ROOT

MODEL_REPOSITORY = REPO_ROOT / "triton_models"
AGENT_MODEL = "restore_r1_agent"
#: Side of the square test image sent to the agent (pixels).
IMAGE_SIDE = 32
#: A MAX_STEPS value the agent rejects as invalid input (its limit is the history length, 16).
INVALID_MAX_STEPS = 99
REQUEST_TIMEOUT_S = 120.0
SCRAPE_TIMEOUT_S = 10.0


def _infer_body(max_steps: int | None) -> bytes:
    pixels = [(x * 7 + y * 3 + c) % 256 for y in range(IMAGE_SIDE) for x in range(IMAGE_SIDE) for c in range(3)]
    inputs = [{"name": "IMAGE", "shape": [1, IMAGE_SIDE, IMAGE_SIDE, 3], "datatype": "UINT8", "data": pixels}]
    if max_steps is not None:
        inputs.append({"name": "MAX_STEPS", "shape": [1, 1], "datatype": "INT32", "data": [max_steps]})
    return json.dumps({"inputs": inputs}).encode()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def scrape_after_requests(work_dir: Path, repository: Path = MODEL_REPOSITORY) -> tuple[str, bool]:
    """Runs the local Triton, sends a valid and an invalid agent request, returns the scrape.

    Args:
        work_dir: scratch folder (the random policy is written there).
        repository: the model repository.

    Returns:
        (the ``/metrics`` text, whether the server exported GPU metrics).

    Raises:
        restore_r1.serving.server.ServerError: the server did not start (e.g. no Triton venv).
        RuntimeError: the valid request failed or the invalid one was accepted.
    """
    from restore_r1.serving.server import TritonServer
    from restore_r1.serving.testing import make_random_policy

    policy = make_random_policy(Path(work_dir) / "policy")
    server = TritonServer(Path(repository), http_port=0, grpc_port=0, metrics_port=0, env={"RESTORE_R1_POLICY": str(policy)})
    with server:
        url = f"http://{server.http_url}/v2/models/{AGENT_MODEL}/infer"
        ok = _post(url, _infer_body(None))
        if ok != 200:
            raise RuntimeError(f"agent request answered HTTP {ok}: {server.log_tail()}")
        rejected = _post(url, _infer_body(INVALID_MAX_STEPS))
        if rejected == 200:
            raise RuntimeError(f"agent accepted MAX_STEPS={INVALID_MAX_STEPS}")
        with urllib.request.urlopen(server.metrics_url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
    return text, "nv_gpu_utilization" in text
