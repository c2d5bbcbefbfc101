"""Triton python model: tool rl_motion_deblur (logic in restore_r1.serving.backend)."""
import triton_python_backend_utils as pb_utils
from restore_r1.serving.backend import make_model
TritonPythonModel = make_model("tool", pb_utils)
