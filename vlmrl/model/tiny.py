"""The embedded default model `tiny` (and its larger sibling `tiny-teacher`).

Both are Qwen2.5-VL-architecture models small enough to train on 2 CPU cores. When the
pretrained weights are shipped in vlmrl/assets/<name>/ they are loaded from there; otherwise
(a fresh checkout before `vlmrl pretrain tiny` has been run, or in unit tests) a random-init
model of the same architecture is built from its config with the shipped tokenizer, so no
code path needs a download.
"""

from __future__ import annotations

from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# name -> (text hidden, text layers, text heads, kv heads, text MLP, vision hidden, vision depth)
SIZES = {
    "tiny": (256, 4, 4, 2, 768, 128, 4),
    "tiny-teacher": (384, 6, 6, 2, 1152, 160, 4),
}
IMAGE_SIZE = 168  # side of the tiny models' pixel budget: at most (168/28)^2 = 36 visual tokens


def tiny_config(name: str = "tiny", vocab_size: int = 1408, token_ids: dict[str, int] | None = None):
    from transformers import Qwen2_5_VLConfig

    hidden, layers, heads, kv_heads, mlp, vision_hidden, vision_depth = SIZES[name]
    head_dim = hidden // heads
    # M-RoPE splits the rotary half-dimension into temporal/height/width sections.
    half = head_dim // 2
    sections = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    token_ids = token_ids or {}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections},
            "tie_word_embeddings": True,
            "rms_norm_eps": 1e-6,
            "bos_token_id": None,
            "eos_token_id": token_ids.get("<|im_end|>"),
            "pad_token_id": token_ids.get("<|endoftext|>"),
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            "num_heads": 4,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            # Every block attends over the whole (small) image: windowed attention would split
            # a 12x12-patch image into many tiny attention calls, slow on CPU for no gain.
            "window_size": 112,
            "fullatt_block_indexes": list(range(vision_depth)),
        },
        image_token_id=token_ids.get("<|image_pad|>"),
        video_token_id=token_ids.get("<|video_pad|>"),
        vision_start_token_id=token_ids.get("<|vision_start|>"),
        vision_end_token_id=token_ids.get("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    return config


def tiny_processor(image_size: int = IMAGE_SIZE):
    """The tiny models' processor: the shipped tokenizer if present, else trained now (1 s)."""
    from transformers import PreTrainedTokenizerFast

    from vlmrl.model.tokenizer import build_tiny_processor, train_tokenizer

    shipped = ASSETS / "tokenizer"
    if (shipped / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(shipped))
    else:
        tokenizer = train_tokenizer()
    return build_tiny_processor(tokenizer, image_size=image_size)


def build_random_tiny(name: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random-init tiny model with the project tokenizer (for tests and as pretraining start)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vlmrl.model.families import family_for
    from vlmrl.model.vlm import VLM

    processor = tiny_processor()
    tokenizer = processor.tokenizer
    names = [
        "<|image_pad|>",
        "<|video_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    ]
    token_ids = dict(zip(names, tokenizer.convert_tokens_to_ids(names)))
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config = tiny_config(name, vocab_size=vocab_size, token_ids=token_ids)
    for target in (config, config.text_config):
        target.pad_token_id = tokenizer.pad_token_id
        target.eos_token_id = tokenizer.eos_token_id
        target.bos_token_id = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return VLM(model, processor, family_for("qwen2_5_vl"), name=f"{name} (random init)")


def load_tiny(name: str = "tiny", dtype: torch.dtype = torch.float32):
    """The shipped pretrained tiny model, or a random-init one when none is shipped yet."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from vlmrl.model.families import family_for
    from vlmrl.model.vlm import VLM

    directory = ASSETS / name
    if (directory / "model.safetensors").is_file():
        processor = AutoProcessor.from_pretrained(str(directory))
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(directory), dtype=dtype)
        return VLM(model, processor, family_for("qwen2_5_vl"), name=name)
    return build_random_tiny(name, dtype=dtype)


def is_pretrained(name: str = "tiny") -> bool:
    return (ASSETS / name / "model.safetensors").is_file()
