"""`vlmrl pretrain smol`: the mixture's pure parts, and a minute-long run whose shipped parts
reassemble into exactly the model it trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlmrl.model.formats import parse_answer
from vlmrl.pretrain_smol import (
    SMOL_BUILDERS,
    SmolPretrainConfig,
    parse_smol_mixture,
    smol_batch,
    thought_for,
)


def test_parse_smol_mixture_normalises_and_rejects_bad_weights():
    assert parse_smol_mixture("qa=3,box=1") == {"qa": 0.75, "box": 0.25}
    with pytest.raises(ValueError, match="unknown skill 'vote'"):
        parse_smol_mixture("qa=1,vote=1")  # a method's own task is not in smol's mixture
    with pytest.raises(ValueError, match="not a number"):
        parse_smol_mixture("qa=lots")
    with pytest.raises(ValueError, match="no positive weight"):
        parse_smol_mixture("qa=0")
    with pytest.raises(ValueError, match="negative"):
        parse_smol_mixture("qa=1,box=-1")


@pytest.mark.parametrize("skill", sorted(SMOL_BUILDERS))
def test_every_skill_builds_an_image_conversation_the_wrapper_can_read(skill):
    config = SmolPretrainConfig()
    for seed in range(4):
        conversation = SMOL_BUILDERS[skill](np.random.default_rng(seed), config)
        assert conversation[0]["role"] == "user"
        images = [p for p in conversation[0]["content"] if p["type"] == "image"]
        assert len(images) == 1
        roles = [m["role"] for m in conversation]
        assert roles == ["user", "assistant"] * (len(conversation) // 2)
        for message in conversation[1::2]:
            text = message["content"][0]["text"]
            if skill in ("caption", "object"):
                assert text.endswith(".") and "<answer>" not in text
            else:  # answers are in the suite's tags, parseable by the harness
                assert isinstance(parse_answer(text), str), text


def test_qa_conversations_ask_distinct_questions_of_every_type():
    config = SmolPretrainConfig(questions_per_image=4)
    seen = set()
    for seed in range(40):
        conversation = SMOL_BUILDERS["qa"](np.random.default_rng(seed), config)
        questions = [
            m["content"] if isinstance(m["content"], str) else m["content"][-1]["text"]
            for m in conversation[::2]
        ]
        assert len(set(questions)) == len(questions) <= 4
        seen.update(q.split()[0] for q in questions)
    assert {"How", "Is", "What", "Are"} <= seen


def test_batches_are_a_pure_function_of_seed_stage_and_step():
    config = SmolPretrainConfig(batch_size=5)
    weights = parse_smol_mixture(config.mixture)

    def text(batch):
        return json.dumps(
            [[m["content"] if isinstance(m["content"], str) else m["content"][-1] for m in c] for c in batch]
        )

    assert text(smol_batch(1, 3, config, weights)) == text(smol_batch(1, 3, config, weights))
    assert text(smol_batch(1, 3, config, weights)) != text(smol_batch(2, 3, config, weights))
    assert text(smol_batch(1, 3, config, weights)) != text(smol_batch(1, 4, config, weights))


def test_thoughts_commit_to_the_answer():
    assert thought_for({"question_type": "count", "answer": "3"}) == "I count the matching objects: 3."
    assert thought_for({"question_type": "query_color", "answer": "red"}).endswith("its color: red.")
    assert thought_for({"question_type": "relation", "answer": "yes"}).endswith(": yes.")


@pytest.mark.slow
def test_a_short_run_ships_parts_that_reassemble_into_the_trained_model(tmp_path, monkeypatch):
    """Every stage runs; the shipped file holds only the vision tower, merger and LoRA factors,
    and `assemble` with them reproduces the trained model's logits (LoRA merged)."""
    from safetensors.torch import load_file

    from vlmrl.model import smol
    from vlmrl.pretrain_smol import SmolPretrainConfig, pretrain_smol

    monkeypatch.chdir(tmp_path)
    captured = {}
    original = smol.trained_parts

    def keep_model(vlm):
        captured["vlm"] = vlm
        return original(vlm)

    monkeypatch.setattr(smol, "trained_parts", keep_model)
    config = SmolPretrainConfig(
        out="runs/quick",
        align_steps=2,
        frozen_steps=1,
        lora_steps=1,
        batch_size=2,
        eval_questions=2,
        eval_every=0,
        lora_rank=2,
        lora_alpha=4,
        warmup_steps=1,
        threads=2,
    )
    summary = pretrain_smol(config)
    model_directory = tmp_path / "runs" / "quick" / "model"
    parts = load_file(str(model_directory / smol.TRAINED_FILE))
    assert all(k.startswith(("model.visual.", "lora::")) for k in parts)
    assert sum(k.startswith("lora::") for k in parts) == 2 * 7 * 30  # A and B of 7 projections x 30 layers
    assert (model_directory / "README.md").read_text().count("Q4_1") >= 1
    assert summary["card"]["shapes-1to2"]["items"] == 2
    settings = json.loads((model_directory / smol.SETTINGS_FILE).read_text())
    rebuilt = smol.assemble(parts, settings)
    trained = captured["vlm"]
    conversation = [[{"role": "user", "content": "Name a colour."}]]
    with torch.no_grad():
        ids = rebuilt.encode(conversation, add_generation_prompt=True)[0].input_ids
        ours = rebuilt.model(input_ids=torch.tensor([ids])).logits
        theirs = trained.model(input_ids=torch.tensor([ids])).logits
    assert (ours - theirs).abs().max() < 1e-3
