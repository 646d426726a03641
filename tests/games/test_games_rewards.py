"""The spy game's reward formulas and advantages on hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from vlmrl.games.rewards import (
    clue_rewards,
    count_votes,
    decision_format_ok,
    decision_reward,
    player_vote_accuracy,
)
from vlmrl.model.formats import ABSTAIN, FormatFailure, parse_spy_vote
from vlmrl.rl.advantages import group_normalized_advantages, role_baseline_advantages


def test_count_votes_skips_abstentions_failures_and_out_of_range():
    votes = [2, 2, ABSTAIN, FormatFailure("x"), 1, 5, None, True, 2]
    assert count_votes(votes, 4) == [1, 3, 0, 0]


def test_clue_rewards_by_hand():
    # 4 players, spy 2; votes received [1, 5, 2, 0]: civilian mean 1, Psi = 5 - 1 = 4.
    rewards = clue_rewards([1, 5, 2, 0], spy=2, beta=0.1, lam=0.1)
    assert rewards == pytest.approx([0.4 / 3, -0.4, 0.4 / 3 - 0.1, 0.4 / 3 + 0.1])
    assert sum(rewards) == pytest.approx(0.0)  # zero-sum


def test_clue_rewards_ties_no_votes_and_all_abstentions_give_zero():
    assert clue_rewards([2, 2, 2, 2], spy=1) == pytest.approx([0.0] * 4)
    assert clue_rewards([0, 0, 0, 0], spy=3) == pytest.approx([0.0] * 4)
    assert clue_rewards(count_votes([ABSTAIN] * 8, 4), spy=4) == pytest.approx([0.0] * 4)


def test_clue_rewards_spy_never_voted_gains():
    # Civilians 1 and 3 split 8 votes: mean 8/3, Psi = -8/3: the spy gains 0.8/3.
    rewards = clue_rewards([4, 0, 4, 0], spy=2)
    assert rewards[1] == pytest.approx(0.8 / 3)
    assert rewards[0] == pytest.approx(-0.8 / 9 - 0.1 * (4 - 8 / 3))
    assert rewards[3] == pytest.approx(-0.8 / 9 + 0.1 * 8 / 3)
    assert sum(rewards) == pytest.approx(0.0)


def test_clue_rewards_reject_bad_input():
    with pytest.raises(ValueError, match="spy must be a player"):
        clue_rewards([1, 1, 1], spy=4)


def test_decision_rewards_by_hand():
    assert decision_reward(3, spy=3, format_ok=True) == pytest.approx(0.3 + 1.2 + 0.99)  # 2.49
    assert decision_reward(ABSTAIN, spy=3, format_ok=True) == pytest.approx(0.3 - 0.6)  # -0.3
    assert decision_reward(1, spy=3, format_ok=True) == pytest.approx(0.3 - 1.2)  # -0.9
    assert decision_reward(3, spy=3, format_ok=False) == pytest.approx(-0.3 + 1.2 + 0.99)
    assert decision_reward(FormatFailure("none"), spy=3, format_ok=False) == pytest.approx(-1.5)
    # N/A costs less than a wrong vote
    assert decision_reward(ABSTAIN, 3, True) > decision_reward(2, 3, True)


def test_decision_format_needs_reasoning_when_asked():
    text = "Player 2 described a red cube, the picture shows blue. \\boxed{2}"
    assert decision_format_ok(text, parse_spy_vote(text, 4), min_reasoning_chars=10)
    assert not decision_format_ok("\\boxed{2}", 2, min_reasoning_chars=10)
    assert decision_format_ok("<answer>2</answer>", 2, min_reasoning_chars=0)
    assert not decision_format_ok("garbage", parse_spy_vote("garbage", 4), min_reasoning_chars=0)


def test_decision_group_normalisation_by_hand():
    # G = 4 samples: correct, wrong, wrong, N/A -> population std as the reference.
    rewards = torch.tensor([2.49, -0.9, -0.9, -0.3], dtype=torch.float64)
    advantages = group_normalized_advantages(rewards, ["g"] * 4, epsilon=1e-8, population_std=True)
    assert advantages.tolist() == pytest.approx([1.7054435, -0.7110470, -0.7110470, -0.2833495], abs=1e-6)
    same = group_normalized_advantages(torch.full((4,), -0.9), ["g"] * 4, epsilon=1e-8, population_std=True)
    assert same.tolist() == pytest.approx([0.0] * 4)


def test_role_baselines_by_hand():
    # Spy -0.4 on both clue turns; civilians 0.4/3, 0.4/3 - 0.1, 0.4/3 + 0.1 (mean 0.4/3).
    rewards = torch.tensor([-0.4, -0.4, 0.4 / 3, 0.4 / 3, 0.4 / 3 - 0.1, 0.4 / 3 + 0.1])
    roles = ["spy", "spy", "civilian", "civilian", "civilian", "civilian"]
    advantages, baselines = role_baseline_advantages(rewards, roles, {"spy": 0.0, "civilian": 0.0}, alpha=0.9)
    assert baselines == pytest.approx({"spy": -0.04, "civilian": 0.04 / 3})
    assert advantages.tolist() == pytest.approx([-0.36, -0.36, 0.12, 0.12, 0.12 - 0.1, 0.12 + 0.1], abs=1e-6)
    # The next game updates the same baselines before subtracting them.
    _, again = role_baseline_advantages(rewards, roles, baselines, alpha=0.9)
    assert again["spy"] == pytest.approx(0.9 * -0.04 + 0.1 * -0.4)
    # An absent role keeps its baseline.
    _, only_spy = role_baseline_advantages(torch.tensor([1.0]), ["spy"], baselines, alpha=0.5)
    assert only_spy == pytest.approx({"spy": 0.5 * -0.04 + 0.5, "civilian": 0.04 / 3})


def test_player_vote_accuracy_terms():
    assert player_vote_accuracy(2, player=1, spy=2) == 1.0
    assert player_vote_accuracy(ABSTAIN, player=1, spy=2) == -0.5
    assert player_vote_accuracy(3, player=1, spy=2) == -1.0
    assert player_vote_accuracy(2, player=2, spy=2) == -1.0  # the spy voting for itself
    assert player_vote_accuracy(ABSTAIN, player=2, spy=2) == 0.2
    assert player_vote_accuracy(1, player=2, spy=2) == 0.5
    assert player_vote_accuracy(FormatFailure("x"), player=2, spy=2) == -1.0
