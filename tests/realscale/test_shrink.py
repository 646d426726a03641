"""The shrinking rule keeps what decides shapes and ids; the padded tokenizer keeps real ids."""

from __future__ import annotations

import json

import pytest
from realscale_helpers import REAL_CONFIGS, real_config

from vlmrl.model.realscale import padded_tokenizer, shrink_config, shrink_stages

QWEN = ["Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL-3B-Instruct", "Qwen2-VL-7B-Instruct"]


@pytest.mark.parametrize("name", QWEN)
def test_qwen_shrink_keeps_vocabulary_ids_mrope_head_width_and_query_kv_ratio(name):
    real = real_config(name)
    small = shrink_config(real)
    for key in ("vocab_size", "image_token_id", "video_token_id", "vision_start_token_id", "eos_token_id"):
        assert small[key] == real[key]
    assert small["rope_scaling"] == real["rope_scaling"]
    head_dim = real["hidden_size"] // real["num_attention_heads"]
    assert small["hidden_size"] // small["num_attention_heads"] == head_dim == 128
    assert sum(real["rope_scaling"]["mrope_section"]) == head_dim // 2
    ratio = real["num_attention_heads"] // real["num_key_value_heads"]
    assert small["num_attention_heads"] // small["num_key_value_heads"] == ratio
    assert small["num_hidden_layers"] == 2 < real["num_hidden_layers"]
    vision, real_vision = small["vision_config"], real["vision_config"]
    for key in ("patch_size", "spatial_merge_size", "temporal_patch_size", "window_size"):
        assert vision.get(key) == real_vision.get(key)
    if "fullatt_block_indexes" in real_vision:  # windows, then one full-attention block
        assert vision["fullatt_block_indexes"] == [vision["depth"] - 1]


def test_hiera_l_keeps_its_stages_and_global_attention_per_stage():
    # Hiera-L: stages of 2, 6, 36, 4 blocks; global attention at 23, 33, 43 (stage 3: 8..43)
    # -> stages of 1, 1, 3, 1; 23 is 15/36 into stage 3 -> 1, 33 -> 25*3/36 = 2, 43 -> 2
    assert shrink_stages([2, 6, 36, 4], [23, 33, 43], [1, 1, 3, 1]) == [3, 4]
    assert shrink_stages([1, 2, 7, 2], [5, 7, 9], [1, 1, 3, 1]) == [2, 3, 4]
    small = shrink_config(real_config("sam2.1-hiera-large"))
    backbone = small["vision_config"]["backbone_config"]
    real = real_config("sam2.1-hiera-large")["vision_config"]["backbone_config"]
    assert (
        len(backbone["blocks_per_stage"]) == 4
        and backbone["window_size_per_stage"] == real["window_size_per_stage"]
    )
    assert backbone["num_attention_heads_per_stage"] == real["num_attention_heads_per_stage"]
    assert backbone["image_size"] == [1024, 1024]
    dims = backbone["embed_dim_per_stage"]
    assert all(b == 2 * a for a, b in zip(dims, dims[1:]))  # Hiera doubles its width per stage
    with pytest.raises(ValueError, match="no shrinking rule"):
        shrink_config({"model_type": "llama"})


def test_padded_tokenizer_has_the_real_length_and_special_token_ids():
    tokens = json.loads((REAL_CONFIGS / "Qwen2.5-VL-7B-Instruct" / "tokens.json").read_text())
    tokenizer = padded_tokenizer(tokens, "")
    assert len(tokenizer) == 151665
    assert tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|im_end|>", "<tool_call>"]) == [
        151655,
        151645,
        151657,
    ]
    assert tokenizer.pad_token_id == 151643 and tokenizer.eos_token_id == 151645
    ids = tokenizer("a red cube<|im_end|>")["input_ids"]
    assert ids[-1] == 151645 and max(ids[:-1]) < 4096  # text keeps the project's own small ids
    assert tokenizer.decode(ids[:-1]) == "a red cube"
