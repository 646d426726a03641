"""The shared SFT loop: its loss and schedule by hand, prefetching that changes nothing, learning."""

from __future__ import annotations

import math

import pytest
import torch
from rl_helpers import tiny_policy

from vlmrl.model import TokenScores
from vlmrl.rl.sft import SFTSettings, sft_loss, train_sft, warmup_cosine


def test_sft_loss_is_the_mean_negative_log_likelihood_of_action_tokens():
    scores = TokenScores(
        input_ids=torch.zeros(2, 3, dtype=torch.long),
        attention_mask=torch.ones(2, 3, dtype=torch.bool),
        action_mask=torch.tensor([[False, True, True], [False, False, True]]),
        logprobs=torch.tensor([[-9.0, -1.0, -2.0], [-9.0, -9.0, -3.0]]),
        turn_index=torch.zeros(2, 3, dtype=torch.long),
    )
    assert float(sft_loss(scores)) == pytest.approx((1.0 + 2.0 + 3.0) / 3)


def test_warmup_then_cosine_to_the_floor():
    assert warmup_cosine(0, 4, 14) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 14) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 14) == pytest.approx(1.0)
    assert warmup_cosine(9, 4, 14) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(14, 4, 14) == pytest.approx(0.1)
    assert warmup_cosine(100, 4, 14) == pytest.approx(0.1)


def conversation(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def batch(step: int) -> list[list[dict]]:
    return [conversation(f"Say {word}.", word) for word in ("red", "blue", "cube", "cone")[step % 2 :: 1]]


def trained_weights(prefetch: bool) -> tuple[dict[str, torch.Tensor], list[dict]]:
    policy = tiny_policy(seed=3)
    settings = SFTSettings(steps=4, learning_rate=1e-3, warmup_steps=1, log_every=1, prefetch=prefetch)
    history = train_sft(policy, batch, settings)
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}, history


def test_prefetching_the_next_batch_changes_no_result():
    with_prefetch, history_with = trained_weights(True)
    without, history_without = trained_weights(False)
    assert [h["loss"] for h in history_with] == [h["loss"] for h in history_without]
    for name, value in without.items():
        assert torch.equal(with_prefetch[name], value), name


def test_a_failing_batch_builder_surfaces_its_error():
    def broken(step: int):
        if step == 1:
            raise ValueError("record 7 of the dataset has no answer")
        return batch(step)

    with pytest.raises(ValueError, match="record 7"):
        train_sft(tiny_policy(), broken, SFTSettings(steps=3, log_every=1))


def test_sft_learns_a_fixed_batch():
    policy = tiny_policy(seed=4)
    fixed = [conversation("Colour?", "red"), conversation("Shape?", "cube")]
    settings = SFTSettings(steps=30, learning_rate=3e-3, warmup_steps=2, log_every=1)
    history = train_sft(policy, lambda step: fixed, settings)
    assert history[-1]["loss"] < 0.2 * history[0]["loss"], (history[0]["loss"], history[-1]["loss"])


@pytest.mark.parametrize("native", [True, False])
def test_sft_computes_in_the_dtype_the_precision_module_decides(monkeypatch, native):
    """bf16 autocast only on a CPU with native bf16; float32 (no autocast) where it is emulated."""
    from vlmrl.model import precision

    facts = precision.CpuPrecision("AVX512" if native else "AVX2", native, "", native, "cpu flags")
    monkeypatch.setattr(precision, "cpu_precision", lambda: facts)
    policy = tiny_policy(seed=5)
    seen = []
    score = policy.score

    def recording_score(*args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return score(*args, **kwargs)

    monkeypatch.setattr(policy, "score", recording_score)
    train_sft(policy, batch, SFTSettings(steps=1, log_every=1, prefetch=False))
    assert len(seen) == 1
    enabled, dtype = seen[0]
    assert enabled is native
    if native:
        assert dtype == torch.bfloat16
