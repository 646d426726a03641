"""VL-DAC's critic math on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from vlmrl.vldac.critic import (
    ValueHead,
    clipped_value_loss,
    decision_states,
    episode_advantages,
    normalize,
    rollout_advantages,
    sequence_ppo_loss,
    weighted_sequence_logprob,
)


def test_rollout_advantages_gae_by_hand():
    # One world, two steps; the second ends the episode, so the bootstrap 0.9 is unused.
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.9]])
    dones = torch.tensor([[0.0, 1.0]])
    advantages, returns = rollout_advantages(rewards, values, dones, gamma=0.5, lam=0.5)
    # delta_1 = 1 - 0.2 = 0.8 = A_1; delta_0 = 0 + 0.5 * 0.2 - 0.5 = -0.4; A_0 = -0.4 + 0.25 * 0.8 = -0.2
    assert torch.allclose(returns, torch.tensor([[0.3, 1.0]]))
    half = 1 / math.sqrt(2)  # (A - mean 0.3) / std 0.7071 over the rollout
    assert torch.allclose(advantages, torch.tensor([[-half, half]]), atol=1e-6)


def test_rollout_advantages_bootstrap_when_not_done():
    rewards = torch.tensor([[0.0], [1.0]])
    values = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    dones = torch.tensor([[0.0], [1.0]])
    _, returns = rollout_advantages(rewards, values, dones, gamma=0.5, lam=1.0)
    assert torch.allclose(returns, torch.tensor([[1.0], [1.0]]))  # 0 + 0.5 * 2 ; 1 (episode over)


def test_normalize_over_the_rollout():
    assert torch.allclose(
        normalize(torch.tensor([1.0, 3.0])), torch.tensor([-1.0, 1.0]) / math.sqrt(2), atol=1e-6
    )
    assert torch.equal(normalize(torch.tensor([5.0])), torch.tensor([0.0]))


@pytest.mark.parametrize(
    "value, old, target, expected",
    [
        (0.2, 0.5, 1.0, 0.64),  # unclipped error is the larger
        (0.9, 0.5, 1.0, 0.16),  # the clipped prediction 0.6 is farther from the target
        (0.9, 0.5, 0.0, 0.81),
    ],
)
def test_clipped_value_loss(value, old, target, expected):
    loss = clipped_value_loss(torch.tensor([value]), torch.tensor([old]), torch.tensor([target]), clip=0.1)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_decision_states_gathers_and_detaches():
    hidden = torch.arange(12.0).view(2, 3, 2).requires_grad_()
    states = decision_states(hidden, [[1], [2]])
    assert torch.equal(states, torch.tensor([[2.0, 3.0], [10.0, 11.0]]))
    assert not states.requires_grad  # stop-gradient: the value loss never reaches the policy
    assert decision_states(hidden, [[], []]).shape == (0, 2)


def test_value_head_shapes_follow_the_reference():
    head = ValueHead(8)
    widths = [m.out_features for m in head.network if isinstance(m, torch.nn.Linear)]
    assert widths == [3072, 2048, 1]
    assert ValueHead(8, (4,))(torch.zeros(5, 8)).shape == (5,)


def test_episode_advantages_without_critic():
    advantages = episode_advantages([0, 0, 1, 2], {0: 1.0, 1: -1.0})
    half = 1 / math.sqrt(2)
    assert torch.allclose(advantages, torch.tensor([half, half, -half, 0.0]), atol=1e-6)
    assert torch.equal(episode_advantages([0, 1], {}), torch.zeros(2))


def test_rl4vlm_weighted_logprob_and_sequence_ppo():
    logprobs = torch.tensor([[0.0, -1.0, -2.0, -3.0]])
    action_mask = torch.tensor([[False, True, True, True]])
    thought_mask = torch.tensor([[False, True, True, False]])
    # lambda * (-1 - 2) + (-3) = -4.5
    assert weighted_sequence_logprob(logprobs, action_mask, thought_mask, 0.5).item() == pytest.approx(-4.5)
    assert sequence_ppo_loss(
        torch.zeros(1), torch.zeros(1), torch.tensor([2.0]), 0.1
    ).item() == pytest.approx(-2.0)
    clipped = sequence_ppo_loss(torch.tensor([math.log(1.5)]), torch.zeros(1), torch.tensor([1.0]), 0.1)
    assert clipped.item() == pytest.approx(-1.1)
