"""Masters' divergence and rewards on hand-computed numbers; the judge's parser is total."""

from __future__ import annotations

import math

import pytest
import torch

from vlmrl.masters.rewards import distill_rewards, jensen_shannon, judge_prompt, parse_judgement
from vlmrl.model.formats import FormatFailure


def _log(values):
    return torch.tensor(values, dtype=torch.float64).log()


def test_jensen_shannon_on_hand_computed_distributions():
    # disjoint supports: ln 2
    assert float(jensen_shannon(_log([1.0, 0.0]), _log([0.0, 1.0]))) == pytest.approx(math.log(2))
    # identical: 0
    assert float(jensen_shannon(_log([0.3, 0.7]), _log([0.3, 0.7]))) == pytest.approx(0.0, abs=1e-9)
    # P = (1/2, 1/2), Q = (1, 0): M = (3/4, 1/4)
    # KL(P||M) = 1/2 ln(2/3) + 1/2 ln 2 = 0.143841; KL(Q||M) = ln(4/3) = 0.287682
    expected = 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2) + math.log(4 / 3))
    assert float(jensen_shannon(_log([0.5, 0.5]), _log([1.0, 0.0]))) == pytest.approx(expected)
    assert expected == pytest.approx(0.215762, abs=1e-6)
    # symmetric, batched over leading axes
    batch = jensen_shannon(_log([[0.5, 0.5], [1.0, 0.0]]), _log([[1.0, 0.0], [0.5, 0.5]]))
    assert batch.shape == (2,) and torch.allclose(batch, torch.full((2,), expected, dtype=batch.dtype))


def test_distill_reward_is_reverse_min_max_within_each_question():
    rewards = distill_rewards([0.1, 0.3, 0.2, 0.5, 0.5, 0.4], ["a", "a", "a", "b", "b", "c"])
    # group a: D_min 0.1, D_max 0.3 -> (0.3 - D) / 0.2; ties (b) and singletons (c) get 1
    assert rewards == pytest.approx([1.0, 0.0, 0.5, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        distill_rewards([0.1], ["a", "b"])


def test_judge_verdict_parser_is_total():
    assert parse_judgement("<answer>yes</answer>") == 1.0
    assert parse_judgement("<answer>No</answer>") == 0.0
    assert parse_judgement("The response is correct.") == 1.0
    assert parse_judgement("incorrect") == 0.0
    for bad in ("", "maybe", None, 3, "<answer></answer>", "\x00\xff<answer>"):
        assert isinstance(parse_judgement(bad), FormatFailure)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):  # random text never raises
        text = "".join(chr(int(c)) for c in torch.randint(0, 0x2FF, (30,), generator=generator))
        parse_judgement(text)
    prompt = judge_prompt("What colour?", "red", "<answer>blue</answer>")
    assert "red" in prompt and "blue" in prompt and "What colour?" in prompt


def test_shared_log_distributions_renormalise_over_the_shared_tokens():
    from vlmrl.masters.rewards import shared_log_distributions

    # (0.2, 0.3, 0.5) over 3 rows, of which 2 are real tokens: (0.4, 0.6) over them
    rows = _log([[0.2, 0.3, 0.5]])
    assert torch.allclose(
        shared_log_distributions(rows, 2).exp(), torch.tensor([[0.4, 0.6]], dtype=rows.dtype)
    )
    assert shared_log_distributions(rows, 3) is rows  # equal rows: untouched
