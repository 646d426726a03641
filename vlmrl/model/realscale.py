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
from pathlib import Path
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
    # M-RoPE sections split half of the head width, and the Qwen attention classes derive the
    # head width from hidden_size / heads: one KV head with its real share of query heads at
    # the real head width is the narrowest model that keeps both.
    text["num_key_value_heads"] = 1
    text["num_attention_heads"] = heads // kv_heads
    text["hidden_size"] = head_dim * (heads // kv_heads)
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
            out_hidden_size=text["hidden_size"],
        )
    else:  # Qwen2-VL: embed_dim is the tower's width, hidden_size the merger's output
        vision.update(depth=2, embed_dim=VISION_HIDDEN, num_heads=2, hidden_size=text["hidden_size"])


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


def padded_tokenizer(tokens: dict[str, Any], chat_template: str):
    """The project tokenizer laid out like a real one: its special tokens at the real ids.

    `tokens` is a real tokenizer's `tokens.json` fact sheet (`special`, `added`: name -> id,
    `tokenizer_length`, `pad_token`, `eos_token`). The project's byte-level BPE keeps its low
    ids; unreachable filler entries stand in for the rest of the real vocabulary, so that the
    special tokens sit at the real ids and the tokenizer is as long as the real one.
    """
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from vlmrl.model.tokenizer import train_tokenizer

    base = json.loads(train_tokenizer().backend_tokenizer.to_str())
    claimed = {**tokens["special"], **tokens["added"]}
    taken = set(claimed.values())
    vocabulary = {name: i for name, i in base["model"]["vocab"].items() if name not in claimed}
    for index in range(len(vocabulary), tokens["tokenizer_length"]):
        if index not in taken:
            vocabulary[f"<|filler_{index}|>"] = index
    base["model"]["vocab"] = vocabulary
    base["added_tokens"] = [
        {
            "id": index,
            "content": name,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": name not in tokens["special"],
            "special": name in tokens["special"],
        }
        for name, index in sorted(claimed.items(), key=lambda item: item[1])
    ]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(base)),
        eos_token=tokens["eos_token"],
        pad_token=tokens["pad_token"],
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    wrapped.chat_template = chat_template
    if len(wrapped) != tokens["tokenizer_length"]:
        raise ValueError(f"padded tokenizer has {len(wrapped)} tokens, expected {tokens['tokenizer_length']}")
    return wrapped


def shrunk_vlm(folder: str | Path, directory: str | Path, max_pixels: int = 112 * 112, seed: int = 0) -> Path:
    """Save a shrunk, random-weight model of the real config in `folder` with a padded tokenizer.

    `folder` holds the real `config.json`, `preprocessor_config.json` and `tokens.json`
    (tests/fixtures/real_configs/); `max_pixels` cuts the image processor's token budget.
    The result loads with `VLM.load(directory)`.
    """
    import json

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vlmrl.model.families import FAMILY_BY_NAME, INTERNVL_NAMED, _qwen_style_template, _with_named_tokens
    from vlmrl.model.tokenizer import CHAT_TEMPLATE

    folder, directory = Path(folder), Path(directory)
    real = json.loads((folder / "config.json").read_text())
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    tokens = json.loads((folder / "tokens.json").read_text())
    config = shrink_config(real)
    config.pop("_source", None)
    model_type = config.pop("model_type")
    if model_type == "internvl":
        from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

        template = _qwen_style_template(FAMILY_BY_NAME["internvl"].image_marker)
        tokenizer = _with_named_tokens(padded_tokenizer(tokens, template), INTERNVL_NAMED)
        side = int(max_pixels**0.5) // 28 * 28
        size = {"height": side, "width": side}
        processor = InternVLProcessor(
            image_processor=GotOcr2ImageProcessor(
                size=size,
                crop_to_patches=False,
                image_mean=settings["image_mean"],
                image_std=settings["image_std"],
            ),
            tokenizer=tokenizer,
            video_processor=InternVLVideoProcessor(size=size),
            image_seq_length=int((side // config["vision_config"]["patch_size"][0]) ** 2 * 0.25),
            chat_template=template,
        )
        config["vision_config"]["image_size"] = [side, side]
        config["image_seq_length"] = processor.image_seq_length
    else:
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        if model_type == "qwen2_5_vl":
            from transformers import Qwen2_5_VLProcessor as Processor
        else:
            from transformers import Qwen2VLProcessor as Processor
        tokenizer = padded_tokenizer(tokens, CHAT_TEMPLATE)
        image_processor = Qwen2VLImageProcessor(
            min_pixels=settings["min_pixels"],
            max_pixels=max_pixels,
            patch_size=settings["patch_size"],
            merge_size=settings["merge_size"],
            temporal_patch_size=settings["temporal_patch_size"],
            image_mean=settings["image_mean"],
            image_std=settings["image_std"],
        )
        processor = Processor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=CHAT_TEMPLATE,
        )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(model_type, **config))
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
