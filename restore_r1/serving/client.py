"""Client of the agent model on a Triton server (``restore-r1 restore --triton-url``).

    client = TritonAgentClient("127.0.0.1:8000", protocol="http")
    result = client.restore(img)          # RestoreResult(image, tools, scores, seconds, partial, failed, policy_version)

One image per request (``IMAGE`` uint8 [1, H, W, 3]); ``TRAJECTORY`` comes back as JSON. A
server-side error (bad input, a tool or the policy failing at the first step) raises
:class:`RemoteError` with the server's message and its reason tag (``[tool_timeout] ...``). A
failure after a successful step is not an error: the result is the best image so far with
``partial=True`` and ``failed`` saying which step, tool and why. ``policy_version`` is the policy
model version that made the episode's last decision.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass

import numpy as np

from restore_r1.agent.inference import RestoreResult
from restore_r1.errors import RestoreR1Error
from restore_r1.serving.backend import AGENT_MODEL, IMAGE, MAX_STEPS, OUTPUT_IMAGE, TRAJECTORY, tool_model_name

#: Protocols and their default ports.
PROTOCOLS = {"http": 8000, "grpc": 8001}
#: Seconds a request may take end to end (client side).
DEFAULT_TIMEOUT_S = 300.0
_REASON = re.compile(r"\[([a-z_]+)\]")
#: ``RemoteError.status`` of a request that never got an answer (the server is down, was killed
#: mid-request or closed the connection).
STATUS_UNAVAILABLE = "UNAVAILABLE"
#: gRPC reconnect backoff (ms). gRPC's own maximum is 120 s, so after a server restart a client
#: could keep failing fast for half a minute; with these it reconnects within ~2 s.
GRPC_INITIAL_RECONNECT_BACKOFF_MS = 250
GRPC_MAX_RECONNECT_BACKOFF_MS = 2000


class RemoteError(RestoreR1Error, RuntimeError):
    """The server answered a request with an error.

    Attributes:
        reason: the agent's reason tag (``invalid_input``, ``tool_failed``, ...) or ``None``
            when Triton itself refused the request (e.g. a wrong dtype or shape).
        status: the transport's status text (HTTP code or gRPC status) when known.
    """

    def __init__(self, message: str, reason: str | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def grpc_channel_args(tc) -> list[tuple[str, int]]:
    """tritonclient's default gRPC channel options (message sizes, keepalive) plus a short
    reconnect backoff (``tc`` is ``tritonclient.grpc``)."""
    keepalive = tc.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", tc.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", tc.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", GRPC_INITIAL_RECONNECT_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", GRPC_INITIAL_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", GRPC_MAX_RECONNECT_BACKOFF_MS),
    ]


@dataclass
class TritonAgentClient:
    """Calls ``restore_r1_agent`` over HTTP or gRPC.

    Args:
        url: ``host:port`` (a leading ``http://`` / ``grpc://`` is dropped).
        protocol: ``"http"`` or ``"grpc"``.
        timeout_s: per-request timeout.
        model: the agent model name.
    """

    url: str
    protocol: str = "http"
    timeout_s: float = DEFAULT_TIMEOUT_S
    model: str = AGENT_MODEL

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: expected one of {sorted(PROTOCOLS)}")
        self.url = re.sub(r"^[a-z]+://", "", self.url).rstrip("/")
        if not self.url:
            raise ValueError("empty Triton URL; expected host:port")
        if self.protocol == "http":
            import tritonclient.http as tc

            self._client = tc.InferenceServerClient(self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
        else:
            import tritonclient.grpc as tc

            self._client = tc.InferenceServerClient(self.url, channel_args=grpc_channel_args(tc))
        self._tc = tc

    def ready(self) -> bool:
        """Whether the server and the agent model are ready."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except (InferenceServerException, ConnectionError, OSError):
            return False

    def model_ready(self, model: str) -> bool:
        """Whether the server is up and serves ``model``."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self._client.is_model_ready(model))
        except (InferenceServerException, ConnectionError, OSError):
            return False

    def check_ready(self) -> None:
        """Raises :class:`RemoteError` unless the server and the agent model are ready."""
        if not self.ready():
            raise RemoteError(f"Triton at {self.url} ({self.protocol}) is not reachable or its model {self.model} is not ready")

    def infer_raw(self, array: np.ndarray | None, max_steps: int | None = None):
        """Sends ``array`` as ``IMAGE`` as it is (any dtype/shape, or None for no ``IMAGE``: for
        tests) and ``max_steps`` as ``MAX_STEPS`` int32 [B, 1]; returns the result object."""
        from tritonclient.utils import np_to_triton_dtype

        tc = self._tc
        inputs = []
        if array is not None:
            inp = tc.InferInput(IMAGE, list(array.shape), np_to_triton_dtype(array.dtype))
            inp.set_data_from_numpy(array)
            inputs.append(inp)
        if max_steps is not None:
            rows = 1 if array is None else array.shape[0]
            cap = tc.InferInput(MAX_STEPS, [rows, 1], "INT32")
            cap.set_data_from_numpy(np.full((rows, 1), max_steps, dtype=np.int32))
            inputs.append(cap)
        outputs = [tc.InferRequestedOutput(OUTPUT_IMAGE), tc.InferRequestedOutput(TRAJECTORY)]
        return self._infer(self.model, inputs, outputs)

    def run_tool(self, tool: str, img: np.ndarray) -> np.ndarray:
        """One uint8 RGB H×W×3 image through the server's ``restore_r1_tool_<tool>`` model.

        Raises:
            RemoteError: the server refused or failed the request.
        """
        from tritonclient.utils import np_to_triton_dtype

        tc = self._tc
        array = np.ascontiguousarray(img)[None]
        inp = tc.InferInput(IMAGE, list(array.shape), np_to_triton_dtype(array.dtype))
        inp.set_data_from_numpy(array)
        result = self._infer(tool_model_name(tool), [inp], [tc.InferRequestedOutput(OUTPUT_IMAGE)])
        return result.as_numpy(OUTPUT_IMAGE)[0]

    def _infer(self, model: str, inputs: list, outputs: list):
        from tritonclient.utils import InferenceServerException

        try:
            if self.protocol == "grpc":
                return self._client.infer(model, inputs, outputs=outputs, client_timeout=self.timeout_s)
            return self._client.infer(model, inputs, outputs=outputs)
        except InferenceServerException as exc:
            message = " ".join(str(exc.message() or exc).split())
            found = _REASON.search(message)
            raise RemoteError(f"Triton {self.url}: {message}", found.group(1) if found else None, str(exc.status())) from None
        except (OSError, http.client.HTTPException) as exc:  # HTTP transport: refused, reset or closed connections, socket timeouts
            message = " ".join(str(exc).split()) or "connection closed"
            raise RemoteError(f"Triton {self.url} ({self.protocol}): {type(exc).__name__}: {message}", None, STATUS_UNAVAILABLE) from None

    def restore(self, img: np.ndarray, max_steps: int | None = None) -> RestoreResult:
        """Restores one uint8 RGB H×W×3 image through the agent model.

        Returns:
            The result; ``partial`` and ``failed`` say whether a step failed after a good one
            (the image is then the best so far).

        Raises:
            RemoteError: the server refused or failed the request.
        """
        result = self.infer_raw(np.ascontiguousarray(img)[None], max_steps)
        image = result.as_numpy(OUTPUT_IMAGE)[0]
        raw = result.as_numpy(TRAJECTORY).reshape(-1)[0]
        traj = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        return RestoreResult(
            image=image,
            tools=list(traj["tools"]),
            scores=[float(s) for s in traj["scores"]],
            seconds=float(traj["seconds"]),
            partial=bool(traj.get("partial", False)),  # absent from servers older than the fault handling
            failed=traj.get("failed"),
            policy_version=traj.get("policy_version"),  # absent from servers older than the policy version
        )

    def close(self) -> None:
        self._client.close()


@dataclass
class TritonTool:
    """A tool served by Triton as a callable ``uint8 RGB H×W×3 -> uint8 RGB H×W×3``, so that an
    agent loop (e.g. the VLM planner's reward, :func:`restore_r1.agent.env.apply_plans`) can call
    the served tool where it would call the in-process one."""

    client: TritonAgentClient
    name: str

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.client.run_tool(self.name, img)


def triton_tool_map(url: str, names: list[str], protocol: str = "http", timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, TritonTool]:
    """name -> :class:`TritonTool` for each of ``names``, over one connection.

    Raises:
        ValueError: no names.
        RemoteError: the server is unreachable or does not serve one of the tools (all named).
    """
    if not names:
        raise ValueError("triton_tool_map: no tool names")
    client = TritonAgentClient(url, protocol=protocol, timeout_s=timeout_s)
    missing = [n for n in names if not client.model_ready(tool_model_name(n))]
    if missing:
        raise RemoteError(f"Triton at {client.url} ({protocol}) does not serve the tools {missing} (models {[tool_model_name(n) for n in missing]})")
    return {n: TritonTool(client, n) for n in names}
