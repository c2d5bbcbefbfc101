"""Small fixtures for serving tests and the serving benchmark (no training needed).

:func:`make_random_policy` writes a policy checkpoint over the ``stats`` encoder whose output layer
is drawn at full scale, so that its greedy plans call several different tools (a freshly
initialised policy is near-uniform and may stop at once). It is for plumbing tests only: its plans
are arbitrary. :func:`degraded_photos` makes the degraded crops of the bundled photos that the
load tests and the serving bench send.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: A tool model.py whose every request fails (swapped in by :func:`swapped_model`).
FAILING_MODEL = """import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("injected failure")) for _ in requests]
"""

#: A tool model.py whose execute raises: Triton fails every request of the batch and counts them
#: in ``nv_inference_request_failure`` (reason BACKEND). Error *responses* (:data:`FAILING_MODEL`,
#: and how our models report any error) are counted as successes by Triton 2.51.
RAISING_MODEL = """import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        raise pb_utils.TritonModelException("injected crash")
"""

#: Tools cheap enough for tests (under 60 ms per 512² image, bench/results/tools.md).
FAST_TOOLS = ("gamma_correction", "constant_shift", "clahe", "guided_denoise", "cap_dehaze", "rain_opening", "unsharp_defocus", "jpeg_guided_deblock")
#: Std of the output layer's weights of the random policy.
HEAD_STD = 0.5
#: Bias of the STOP logit: low, so that plans run to ``max_steps`` unless a tool logit is lower.
STOP_BIAS = -3.0


def make_random_policy(directory: str | os.PathLike, tools: Sequence[str] = FAST_TOOLS, seed: int = 0, max_steps: int = 3) -> Path:
    """Writes a random ``stats``-encoder policy over ``tools`` to ``directory``; returns it."""
    import torch

    from restore_r1.agent.policy import Policy, PolicyConfig, save_policy
    from restore_r1.encoders import STATS_DIM, create_encoder

    encoder = create_encoder("stats")
    config = PolicyConfig(
        "stats", encoder.config(), STATS_DIM, list(tools), hidden_sizes=(32,), max_steps=max_steps, extra={"note": "random policy for serving tests"}
    )
    gen = torch.Generator().manual_seed(seed)
    policy = Policy(config, generator=gen)
    head = [mod for mod in policy.mlp if isinstance(mod, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.normal_(0.0, HEAD_STD, generator=gen)
        head.bias.normal_(0.0, HEAD_STD, generator=gen)
        head.bias[config.stop_action] = STOP_BIAS
    return save_policy(policy, directory)


def degraded_photos(width: int, height: int, n: int, photos: Sequence[str] | None = None, seed: int = 0) -> list[np.ndarray]:
    """``n`` degraded ``width``×``height`` crops of the bundled photos, for load tests and benches.

    Image ``i`` is a crop of photo ``i mod len(photos)`` (default: the held-out photos), degraded
    by case ``i mod 15 + 1`` with ``numpy.random.default_rng(seed + i)``. A photo smaller than the
    crop is first enlarged (bicubic) to cover it, so ~1 MP inputs come from the same photos; the
    crop is centred.

    Returns:
        uint8 RGB ``height``×``width``×3 arrays.
    """
    import cv2

    from restore_r1.cleanimages import HELDOUT_NAMES, load_clean
    from restore_r1.degradations import CASES, apply_case

    if width < 1 or height < 1 or n < 0:
        raise ValueError(f"degraded_photos: {width}×{height}, n={n}: expected positive sides and n >= 0")
    names = tuple(photos or HELDOUT_NAMES)
    clean = {}
    for name in names:
        img = load_clean(name)
        scale = max(width / img.shape[1], height / img.shape[0])
        if scale > 1:
            size = (max(width, round(img.shape[1] * scale)), max(height, round(img.shape[0] * scale)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
        top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
        clean[name] = np.ascontiguousarray(img[top : top + height, left : left + width])
    cases = sorted(CASES)
    return [apply_case(cases[i % len(cases)], clean[names[i % len(names)]], np.random.default_rng(seed + i))[0] for i in range(n)]


@contextlib.contextmanager
def swapped_model(repository: str | os.PathLike, admin, tool: str, body: str):
    """Tool ``tool``'s model.py in ``repository`` replaced by ``body`` and reloaded through the
    explicit model-control API (``admin``: a ``tritonclient.http.InferenceServerClient`` of a
    server started with ``--model-control-mode=explicit``); the original is restored and reloaded
    on exit."""
    from restore_r1.serving import backend as b
    from restore_r1.serving.repository import MODEL_VERSION

    model_py = Path(repository) / b.tool_model_name(tool) / MODEL_VERSION / "model.py"
    original = model_py.read_text()
    model_py.write_text(body)
    try:
        admin.load_model(b.tool_model_name(tool))
        yield
    finally:
        model_py.write_text(original)
        admin.load_model(b.tool_model_name(tool))
