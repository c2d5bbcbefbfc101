"""Triton python model: tool dncnn6_denoise (logic in restore_r1.serving.backend)."""
import triton_python_backend_utils as pb_utils
from restore_r1.serving.backend import make_model
TritonPythonModel = make_model("tool", pb_utils)
