"""``clip``: the CLIP vision tower (the paper's ViT-L/14, docs/method.md §1) from a local folder
given as ``model_path`` or ``$RESTORE_R1_CLIP_PATH``; nothing is ever downloaded. torch and
transformers are imported lazily."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.encoders.base import check_batch, torch_device
from restore_r1.weights import resolve_model_dir

#: Environment variable naming the local CLIP folder (a Hugging Face checkpoint directory).
CLIP_PATH_ENV = "RESTORE_R1_CLIP_PATH"
#: The paper's encoder (docs/method.md §1, secondary).
CLIP_DEFAULT_REPO = "openai/clip-vit-large-patch14"
CLIP_HOW_TO = f"download it once with `huggingface-cli download {CLIP_DEFAULT_REPO} --local-dir DIR` and pass model_path=DIR or set ${CLIP_PATH_ENV}=DIR"


def _clip_vision_config(path: Path) -> Any:
    """The vision config of a CLIP folder, with the projection size of the full model.

    A full ``CLIPModel`` folder (e.g. openai/clip-vit-large-patch14) keeps ``projection_dim`` at
    its top level; the nested vision config may carry another default.
    """
    from transformers import AutoConfig, CLIPVisionConfig

    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    if cfg.model_type == "clip":
        vision = CLIPVisionConfig(**cfg.vision_config.to_dict())
        vision.projection_dim = cfg.projection_dim
        return vision
    elif cfg.model_type == "clip_vision_model":
        return cfg
    else:
        raise ValueError(f"CLIP encoder: {path} holds a {cfg.model_type!r} model, not CLIP")


class CLIPEncoder:
    """``clip``: CLIP image embeddings (projection output, L2-normalised by default).

    Args:
        model_path: local Hugging Face folder of a CLIP model (full CLIPModel or vision-only);
            ``None`` reads ``$RESTORE_R1_CLIP_PATH``.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        batch_size: images per forward pass.
        normalize: L2-normalise the embeddings.
    """

    name = "clip"

    def __init__(self, model_path: str | None = None, device: str = "cpu", batch_size: int = 16, normalize: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be ≥ 1")
        path = resolve_model_dir(model_path, CLIP_PATH_ENV, "CLIP encoder", CLIP_HOW_TO)
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        self.model_path = str(path)
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._device = torch_device(device)
        self.processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
        self.model = CLIPVisionModelWithProjection.from_pretrained(path, config=_clip_vision_config(path), local_files_only=True).eval().to(self._device)
        self.dim = int(self.model.config.projection_dim)

    def encode(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB H×W×3 images -> float32 ``[N, projection_dim]``."""
        import torch

        check_batch(imgs, self.name)
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(imgs), self.batch_size):
                inputs = self.processor(images=list(imgs[start : start + self.batch_size]), return_tensors="pt")
                emb = self.model(pixel_values=inputs["pixel_values"].to(self._device)).image_embeds.float()
                if self.normalize:
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                out.append(emb.cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model_path": self.model_path, "device": self.device, "batch_size": self.batch_size, "normalize": self.normalize}
