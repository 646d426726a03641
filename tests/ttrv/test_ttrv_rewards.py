"""TTRV's rewards on hand-computed cases (vlmrl/ttrv/rewards.py)."""

import math

import pytest
import torch

from vlmrl.rl.advantages import group_normalized_advantages
from vlmrl.ttrv.rewards import (
    frequency_rewards,
    item_weighted_advantages,
    majority_rewards,
    normalized_entropy,
    ttrv_rewards,
)


def test_frequencies_are_each_answers_share_of_all_votes():
    assert frequency_rewards(["A", "A", "B", "A"]) == [0.75, 0.75, 0.25, 0.75]
    assert frequency_rewards(["A", "B", "C", "D"]) == [0.25] * 4


def test_entropy_is_normalised_by_the_log_of_the_distinct_answers():
    # q = (3/4, 1/4): H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335; / ln 2 = 0.811278
    assert normalized_entropy(["A", "A", "B", "A"]) == pytest.approx(0.811278, abs=1e-6)
    assert normalized_entropy(["A", "B", "C", "D"]) == pytest.approx(1.0)  # uniform: maximal
    # r_i = p_i - 0.75 * 0.811278 = p_i - 0.608459
    assert ttrv_rewards(["A", "A", "B", "A"]) == pytest.approx(
        [0.141541, 0.141541, -0.358459, 0.141541], abs=1e-6
    )


def test_a_single_distinct_answer_has_no_entropy_and_full_frequency():
    assert normalized_entropy(["C"] * 5) == 0.0
    assert ttrv_rewards(["C"] * 5) == [1.0] * 5


def test_one_vote():
    assert normalized_entropy(["B"]) == 0.0
    assert ttrv_rewards(["B"]) == [1.0]
    assert majority_rewards(["B"]) == [1.0]
    assert ttrv_rewards([None]) == [0.0]  # a lone failure: no answer, no disagreement


def test_ties():
    # Two answers twice each: equal frequencies; entropy ln 2 / ln 2 = 1.
    assert ttrv_rewards(["A", "B", "B", "A"]) == pytest.approx([0.5 - 0.75] * 4)
    # TTRL's majority takes the answer seen first among the tied ones (Counter.most_common).
    assert majority_rewards(["B", "A", "A", "B"]) == [1.0, 0.0, 0.0, 1.0]
    assert majority_rewards(["A", "B", "B", "A"]) == [1.0, 0.0, 0.0, 1.0]


def test_unparseable_answers_never_win_and_count_as_disagreement():
    votes = ["A", None, None, None]
    # Failures earn nothing, even as the most common outcome, and the lone answer wins the vote.
    assert frequency_rewards(votes) == [0.25, 0.0, 0.0, 0.0]
    assert majority_rewards(votes) == [1.0, 0.0, 0.0, 0.0]
    # Each failure is an outcome of its own: four outcomes of 1/4, entropy ln 4 / ln 4 = 1.
    assert normalized_entropy(votes) == pytest.approx(1.0)
    # A, A, fail, fail: outcomes (1/2, 1/4, 1/4); H = 1.5 ln 2 = 1.039721; / ln 3 = 0.946395
    assert normalized_entropy(["A", "A", None, None]) == pytest.approx(1.5 * math.log(2) / math.log(3))
    assert majority_rewards([None, None]) == [0.0, 0.0]
    assert ttrv_rewards([None, None]) == pytest.approx([-0.75, -0.75])


def test_the_entropy_term_cancels_under_group_normalisation():
    # Two items; the entropy shifts each item's rewards by a constant, which GRPO's
    # (r - mean) / std removes: the advantages equal those of the frequency reward alone.
    items = [["A", "A", "B", "A"], ["C", "D", "D", None]]
    groups = [0] * 4 + [1] * 4
    full = torch.tensor([r for votes in items for r in ttrv_rewards(votes)])
    frequency = torch.tensor([r for votes in items for r in frequency_rewards(votes)])
    assert not torch.allclose(full, frequency)
    assert torch.allclose(
        group_normalized_advantages(full, groups), group_normalized_advantages(frequency, groups), atol=1e-6
    )


def test_item_weighting_makes_the_entropy_act():
    advantages = torch.tensor([1.0, -1.0, 2.0, -2.0])
    entropies = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # weight 1 - 0.75 H: 1 for the unanimous item, 0.25 for the maximally split one
    assert torch.allclose(
        item_weighted_advantages(advantages, entropies), torch.tensor([1.0, -1.0, 0.5, -0.5])
    )
