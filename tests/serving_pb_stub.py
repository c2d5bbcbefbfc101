"""A stub of Triton's ``triton_python_backend_utils`` for unit tests of the python models.

It keeps the parts of the API the models use: Tensor, InferenceRequest (BLS, routed to functions
registered in ``BLS_MODELS``), InferenceResponse, TritonError with codes, the tensor getters and
the custom-metrics API (MetricFamily/Metric, recorded in memory).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 1) -> None:
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None) -> None:
        self._outputs = list(output_tensors)
        self._error = error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs


class Request:
    """What Triton hands ``execute``: named input tensors."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self._inputs = [Tensor(k, v) for k, v in arrays.items()]

    def inputs(self) -> list[Tensor]:
        return self._inputs


#: model name -> function(list of Tensor) -> InferenceResponse, for BLS calls.
BLS_MODELS: dict = {}
#: (model name, model_version) of every BLS call, in order (-1: the latest version).
BLS_CALLS: list = []


class InferenceRequest:
    def __init__(self, model_name: str, requested_output_names, inputs, **kwargs) -> None:
        self.model_name = model_name
        self.requested_output_names = list(requested_output_names)
        self.inputs = list(inputs)
        self.model_version = int(kwargs.get("model_version", -1))

    def exec(self) -> InferenceResponse:
        BLS_CALLS.append((self.model_name, self.model_version))
        fn = BLS_MODELS.get(self.model_name)
        if fn is None:
            return InferenceResponse(error=TritonError(f"Request for unknown model: '{self.model_name}' is not found", TritonError.NOT_FOUND))
        return fn(self.inputs)


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


class Metric:
    def __init__(self, family: MetricFamily, labels: dict, buckets=None) -> None:
        if (family.kind == MetricFamily.HISTOGRAM) != (buckets is not None):
            raise ValueError("histograms need buckets, other kinds take none")
        self.family, self.labels, self.buckets = family, dict(labels), buckets
        self.value = 0.0
        self.observations: list[float] = []

    def increment(self, value: float) -> None:
        self.value += value

    def observe(self, value: float) -> None:
        self.observations.append(value)


class MetricFamily:
    COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
    #: every family created, by name
    CREATED: dict = {}

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name, self.description, self.kind = name, description, kind
        self.metrics: list[Metric] = []
        MetricFamily.CREATED[name] = self

    def Metric(self, labels: dict | None = None, buckets=None) -> Metric:  # noqa: N802 - Triton's name
        metric = Metric(self, labels or {}, buckets)
        self.metrics.append(metric)
        return metric


def install() -> types.ModuleType:
    """Puts the stub in ``sys.modules['triton_python_backend_utils']`` and returns it."""
    module = types.ModuleType("triton_python_backend_utils")
    for name in (
        "Tensor",
        "TritonError",
        "InferenceResponse",
        "InferenceRequest",
        "get_input_tensor_by_name",
        "get_output_tensor_by_name",
        "MetricFamily",
        "Metric",
    ):
        setattr(module, name, globals()[name])
    module.BLS_MODELS = BLS_MODELS
    module.Request = Request
    sys.modules["triton_python_backend_utils"] = module
    return module


def model_args(model_dir: Path, config_name: str = "cpu") -> dict:
    """The ``args`` Triton passes ``initialize``: the config as JSON (parsed from the pbtxt)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    path = model_dir / "configs" / f"{config_name}.pbtxt" if config_name else model_dir / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    as_json = json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))
    return {
        "model_config": as_json,
        "model_repository": str(model_dir),
        "model_version": "1",
        "model_name": config.name,
        "model_instance_kind": "CPU",
        "model_instance_name": f"{config.name}_0",
    }
