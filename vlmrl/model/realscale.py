"""Real architectures, shrunk: the shapes and ids of a real config at a size that builds in seconds.

`shrink_config(config)` takes a real model's `config.json` (as a dict) and keeps everything that
decides shapes and ids — vocabulary size, special-token ids, rope and M-RoPE sections (hence
the attention head width), the ratio of query heads to KV heads, patch/merge sizes, window and
full-attention layout, Hiera's stage structure and its global-attention placement — while it
cuts depth and width. The dry runs of every bundled config (`tests/realscale/`) and SAMTok's
reload test build their models from it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

TEXT_HIDDEN = 64
VISION_HIDDEN = 32


def shrink_config(config: dict[str, Any]) -> dict[str, Any]:
    """The shrunk copy of a real `config.json` dict (see the module docstring)."""
    config = copy.deepcopy(config)
    model_type = config.get("model_type")
    shrink = _SHRINKERS.get(model_type)
    if shrink is None:
        raise ValueError(f"no shrinking rule for model_type '{model_type}'; known: {sorted(_SHRINKERS)}")
    shrink(config)
    return config


def _shrink_text(text: dict[str, Any]) -> None:
    """A decoder's width and depth; head width, query/KV ratio, vocabulary and ids stay."""
    heads, kv_heads = (
        text["num_attention_heads"],
        text.get("num_key_value_heads", text["num_attention_heads"]),
    )
    head_dim = text.get("head_dim") or text["hidden_size"] // heads
    text["head_dim"] = head_dim  # M-RoPE sections are halves of this width: it must not change
    text["num_key_value_heads"] = 1
    text["num_attention_heads"] = heads // kv_heads
    text["hidden_size"] = TEXT_HIDDEN
    text["intermediate_size"] = 2 * TEXT_HIDDEN
    text["num_hidden_layers"] = 2
    if "max_window_layers" in text:
        text["max_window_layers"] = min(text["max_window_layers"], 2)
    if isinstance(text.get("layer_types"), list):
        text["layer_types"] = text["layer_types"][:2]


def _shrink_qwen_vl(config: dict[str, Any]) -> None:
    text = config["text_config"] if "text_config" in config else config
    _shrink_text(text)
    vision = config["vision_config"]
    if config["model_type"] == "qwen2_5_vl":
        # One windowed block then one full-attention block: the layout [.. w w w F] x 4, shrunk.
        vision.update(
            depth=2,
            hidden_size=VISION_HIDDEN,
            intermediate_size=2 * VISION_HIDDEN,
            num_heads=2,
            fullatt_block_indexes=[1],
            out_hidden_size=TEXT_HIDDEN,
        )
    else:  # Qwen2-VL: embed_dim is the tower's width, hidden_size the merger's output
        vision.update(depth=2, embed_dim=VISION_HIDDEN, num_heads=2, hidden_size=TEXT_HIDDEN)


def _shrink_internvl(config: dict[str, Any]) -> None:
    _shrink_text(config["text_config"])
    config["vision_config"].update(
        hidden_size=VISION_HIDDEN,
        intermediate_size=2 * VISION_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
    )


def shrink_stages(blocks: list[int], global_blocks: list[int], keep: list[int]) -> list[int]:
    """Global-attention block indices after stage s shrinks from blocks[s] to keep[s] blocks.

    Each global block keeps its stage and its relative place within it (rounded down, at most
    the stage's last block).
    """
    starts = [sum(blocks[:s]) for s in range(len(blocks))]
    new_starts = [sum(keep[:s]) for s in range(len(keep))]
    moved = []
    for index in global_blocks:
        stage = max(s for s in range(len(blocks)) if starts[s] <= index)
        offset = math.floor((index - starts[stage]) * keep[stage] / blocks[stage])
        moved.append(new_starts[stage] + min(keep[stage] - 1, offset))
    return sorted(set(moved))


def _shrink_sam2(config: dict[str, Any]) -> None:
    vision = config["vision_config"]
    backbone = vision["backbone_config"]
    blocks = backbone["blocks_per_stage"]
    keep = [1, 1, 3, 1] if len(blocks) == 4 else [1] * len(blocks)
    backbone["global_attention_blocks"] = shrink_stages(blocks, backbone["global_attention_blocks"], keep)
    backbone["blocks_per_stage"] = keep
    width = 8
    dims = [width * 2**s for s in range(len(blocks))]  # Hiera doubles the width at each stage
    backbone["embed_dim_per_stage"] = dims
    backbone["hidden_size"] = dims[0]
    vision["backbone_channel_list"] = list(reversed(dims))
    vision["fpn_hidden_size"] = VISION_HIDDEN
    config["prompt_encoder_config"]["hidden_size"] = VISION_HIDDEN
    decoder = config["mask_decoder_config"]
    decoder.update(hidden_size=VISION_HIDDEN, mlp_dim=2 * VISION_HIDDEN, num_attention_heads=2)
    decoder["iou_head_hidden_dim"] = VISION_HIDDEN


_SHRINKERS = {
    "qwen2_5_vl": _shrink_qwen_vl,
    "qwen2_vl": _shrink_qwen_vl,
    "internvl": _shrink_internvl,
    "sam2": _shrink_sam2,
}
