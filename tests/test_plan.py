"""`vlmrl plan`: each memory term on hand-computed numbers, then the command on every bundled config."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmrl import plan
from vlmrl.cli import app

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted(ROOT.glob("vlmrl/*/configs/*.yaml"))


def test_weights_gradients_and_adamw_moments_in_the_parameters_dtype():
    assert plan.weight_bytes(1000) == 2000  # bf16
    assert plan.weight_bytes(10, plan.FP32) == 40
    assert plan.gradient_bytes(1000) == 2000
    assert plan.adamw_state_bytes(1000) == 4000  # two bf16 moments
    assert plan.adamw_state_bytes(1000, plan.FP32) == 8000


def test_mixed_precision_follows_accelerates_estimate():
    # fp32 master weights: model 4, gradients 4 + 2, optimizer 2 x 4 bytes per parameter
    assert plan.mixed_precision_training_bytes(1000) == {"model": 4000, "gradients": 6000, "optimizer": 8000}


def test_fsdp_shards_evenly_rounding_up():
    assert plan.fsdp_shard_bytes(8, 4) == 2
    assert plan.fsdp_shard_bytes(10, 4) == 3
    assert plan.fsdp_shard_bytes(10, 1) == 10


def test_lora_adds_rank_times_in_plus_out_per_linear():
    # 16 x (4096 + 4096) + 16 x (4096 + 11008) = 131072 + 241664
    assert plan.lora_parameters([(4096, 4096), (4096, 11008)], 16) == 372736


def test_activations_follow_korthikanti_eq1():
    # 2 layers, s = 4, b = 1, h = 8, a = 2: 34 s b h = 1088 bytes per layer
    assert plan.activation_bytes(2, 4, 1, 8, 2, checkpointing=False) == 2 * 1088
    # eager attention adds 5 a s^2 b = 5 x 2 x 16 = 160 per layer
    assert plan.activation_bytes(2, 4, 1, 8, 2, checkpointing=False, attention_scores=True) == 2 * 1248
    # checkpointing keeps 2 s b h = 64 per layer, plus one layer recomputed
    assert plan.activation_bytes(2, 4, 1, 8, 2, checkpointing=True) == 2 * 64 + 1088


def test_logits_kv_cache_and_distributions():
    assert plan.logits_bytes(4, 2, 10) == 4 * 2 * 10 * 4
    # Qwen2.5-VL-7B: 28 layers, 4 KV heads of 128, 1000 tokens, bf16
    assert plan.kv_cache_bytes(28, 4, 128, 1000) == 2 * 28 * 4 * 128 * 1000 * 2 == 57_344_000
    # Masters: micro-batch 4 x 1024 tokens x 152064 rows, fp32
    assert plan.distribution_bytes(4, 1024, 152064) == 2_491_416_576


def test_value_head_of_the_reference_critic():
    # 3584 -> 3072 -> 2048 -> 1, weights and biases
    expected = 3584 * 3072 + 3072 + 3072 * 2048 + 2048 + 2048 * 1 + 1
    assert plan.value_head_parameters(3584, [3072, 2048]) == expected == 17_308_673


def test_image_tokens_and_sequence_length():
    qwen = plan.ModelFacts("qwen", 1, tile=28)
    assert plan.image_tokens(qwen, 448) == 256
    assert plan.image_tokens(qwen, 480) == 289  # 480 / 28 rounds to 17
    internvl = plan.ModelFacts("internvl", 1, image_tokens_per_tile=256, tile=448)
    assert plan.image_tokens(internvl, 448) == 256
    assert plan.image_tokens(internvl, 896) == 256 * (4 + 1)  # four tiles and a thumbnail
    assert plan.sequence_length({"max_new_tokens": 1024, "resolution": 448}, qwen) == 256 + 128 + 1024
    assert plan.sequence_length({"context_budget": 32768, "max_new_tokens": 8192}, qwen) == 32768
    assert plan.rollout_sequences({"group_size": 8}) == 8
    assert plan.rollout_sequences({"responses": 8}) == 8
    assert plan.rollout_sequences({}) == 1


def test_totals_add_the_terms_and_shard_only_what_fsdp_shards():
    facts = plan.ModelFacts(
        "toy",
        1000,
        linear_shapes=[(8, 8)],
        layers=2,
        hidden=8,
        heads=2,
        kv_heads=1,
        head_dim=4,
        vocabulary=10,
        tile=28,
    )
    settings = {
        "beta": 0.04,
        "max_new_tokens": 4,
        "resolution": 28,
        "gradient_checkpointing": True,
        "group_size": 2,
    }
    _, details = plan.plan_rows(settings, "games", facts, gpus=2)
    assert details["sequence"] == 1 + 128 + 4  # one 28 px image token, prompt text, response
    # per GPU, not sharded: checkpointed activations 2 x 2 x 133 x 8 + 34 x 133 x 8 = 40432,
    # logits 133 x 10 x 4 = 5320, KV cache 2 x 2 x 1 x 4 x (2 x 133) x 2 = 8512
    transient = 40432 + 5320 + 8512
    # full: weights 2000 + gradients 2000 + AdamW 4000 + reference 2000; LoRA r16: 16 x 16 = 256
    # parameters (512 + 512 + 1024 bytes) beside the frozen 2000-byte weights
    assert details["totals"] == {
        "full_one_gpu": 10000 + transient,
        "full_sharded": 5000 + transient,
        "lora_one_gpu": 4048 + transient,
        "lora_sharded": 2024 + transient,
    }


def test_real_parameter_counts_from_the_public_configs():
    """Built on the meta device from the fixtures; the Hub lists 8.29B and 3.75B parameters."""
    seven = plan.model_facts(plan.REAL_CONFIGS / "Qwen2.5-VL-7B-Instruct", "7B")
    three = plan.model_facts(plan.REAL_CONFIGS / "Qwen2.5-VL-3B-Instruct", "3B")
    assert seven.parameters == 8_292_166_656
    assert three.parameters == 3_754_622_976  # tied embeddings counted once
    assert (seven.layers, seven.kv_heads, seven.head_dim, seven.vocabulary) == (28, 4, 128, 152064)
    assert (three.layers, three.kv_heads, three.head_dim, three.vocabulary) == (36, 2, 128, 151936)


@pytest.mark.parametrize("path", YAMLS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in YAMLS])
def test_plan_runs_for_every_bundled_config(path):
    name = f"{path.parent.parent.name}/{path.stem}"
    result = CliRunner().invoke(app, ["plan", "--config", name, "--gpus", "8"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "total, full fine-tuning" in result.output and "weights (bf16)" in result.output


def test_an_ambiguous_name_lists_the_bundled_configs():
    result = CliRunner().invoke(app, ["plan", "--config", "qwen2.5-vl-7b"])
    assert result.exit_code == 2
    assert "ambiguous" in result.output and "games/qwen2.5-vl-7b" in result.output
