"""A tiny, randomly initialised vision-language model folder, for plumbing tests and the step bench only.

:func:`write_tiny_vlm` builds everything offline: a word-level tokenizer whose vocabulary is the
chat's special tokens, the tool names, STOP and the comma; a Qwen2-VL image processor that resizes
every image to ``image_side``²; a Qwen2-VL-architecture model with a hidden size of a few dozen
and one layer each in the vision tower and the language model. Its answers are arbitrary: it is
for checking that prompts, generation, parsing, rewards, GRPO steps and checkpoints fit together,
never for planning. Nothing in the library falls back to it: a missing model is an error
(:func:`restore_r1.agent.vlm.resolve_vlm_model`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from restore_r1.agent.plan import PLAN_SEPARATOR, STOP, check_tool_names

#: Special tokens of the Qwen2-VL chat format, pad and unknown first.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
#: Role names, so that the chat's headers are not unknown tokens.
ROLE_WORDS = ("user", "assistant", "system")
#: A minimal Qwen2-VL-style chat template: image placeholders, then text, per turn.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Qwen2-VL's patch and merge sizes: an image of side S gives (S / 28)² tokens.
PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH_SIZE = 14, 2, 2


def tiny_vocabulary(tool_names: Sequence[str]) -> dict[str, int]:
    """token -> id: :data:`SPECIAL_TOKENS`, the tool names, STOP, the comma, :data:`ROLE_WORDS`."""
    words = [*SPECIAL_TOKENS, *check_tool_names(tool_names), STOP, PLAN_SEPARATOR, *ROLE_WORDS]
    return {w: i for i, w in enumerate(dict.fromkeys(words))}


def write_tiny_vlm(
    directory: str | os.PathLike,
    tool_names: Sequence[str],
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 1,
    image_side: int = 56,
) -> Path:
    """Writes a random tiny Qwen2-VL model and its processor to ``directory``; returns it.

    Args:
        tool_names: the words a plan is made of (in the vocabulary as whole tokens).
        seed: seeds the weights (the global torch RNG is forked, not advanced).
        hidden_size: width of the language model and of the vision tower (a multiple of 16).
        layers: layers of the language model (the vision tower has one).
        image_side: every image is resized to this side (a multiple of 28).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    if hidden_size % 16 or hidden_size < 16:
        raise ValueError(f"hidden_size {hidden_size} must be a positive multiple of 16")
    if image_side % (PATCH_SIZE * MERGE_SIZE):
        raise ValueError(f"image_side {image_side} must be a multiple of {PATCH_SIZE * MERGE_SIZE}")
    vocab = tiny_vocabulary(tool_names)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(PLAN_SEPARATOR, behavior="isolated")])
    backend.decoder = decoders.WordPiece(prefix="##")  # joins the words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=list(SPECIAL_TOKENS[2:]),
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    pixels = image_side * image_side
    image_processor = Qwen2VLImageProcessor(
        min_pixels=pixels, max_pixels=pixels, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE
    )
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 2
    half_head = hidden_size // heads // 2  # mrope splits the rotary half of a head into 3 sections
    section = [half_head - 2 * (half_head // 3), half_head // 3, half_head // 3]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 1,
            "max_position_embeddings": 1024,
            "rope_parameters": {"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<pad>"],
        },
        vision_config={
            "depth": 1,
            "embed_dim": hidden_size,
            "hidden_size": hidden_size,
            "num_heads": heads,
            "mlp_ratio": 2,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
