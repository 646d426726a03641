"""Model families the wrapper knows: how their chat templates mark images and end turns.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL are first-class (M-RoPE with `image_grid_thw`); the other
families go through transformers' Auto classes. What differs between families and matters to
the wrapper is small and lives in this table: the text the chat template writes for one
image, the string that ends an assistant turn, and how per-image tensors are batched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    image_marker: str  # what the chat template writes for one image part
    end_of_turn: str  # the token string that closes an assistant turn
    # How per-image tensors of several conversations are joined: along the first dimension,
    # or (Idefics3/SmolVLM) along the images dimension of a [1, images, ...] tensor.
    images_dimension: int = 0
    token_type_ids: bool = False  # Gemma3 marks image tokens for bidirectional attention
    first_class: bool = False


FAMILIES = [
    Family(
        "qwen2_vl",
        ("qwen2_vl",),
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>",
        first_class=True,
    ),
    Family(
        "qwen2_5_vl",
        ("qwen2_5_vl",),
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>",
        first_class=True,
    ),
    Family(
        "qwen3_vl",
        ("qwen3_vl",),
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>",
        first_class=True,
    ),
    Family("idefics3", ("idefics3", "smolvlm"), "<image>", "<end_of_utterance>", images_dimension=1),
    Family("llava_onevision", ("llava_onevision",), "<image>", "<|im_end|>"),
    Family("internvl", ("internvl",), "<IMG_CONTEXT>", "<|im_end|>"),
    Family("gemma3", ("gemma3",), "<start_of_image>", "<end_of_turn>", token_type_ids=True),
]


def family_for(model_type: str, source: str = "model") -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES for t in f.model_types)
    raise ValueError(f"{source}: unknown model family '{model_type}'; supported model types are {known}")
