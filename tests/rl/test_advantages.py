import math

import pytest
import torch

from vlmrl.rl.advantages import (
    broadcast_to_tokens,
    group_normalized_advantages,
    offline_weighted,
    rloo_advantages,
    step_gae,
)


def test_grpo_normalises_within_group_with_unbiased_std():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    advantages = group_normalized_advantages(rewards, ["a", "a", "b", "b"])
    std = math.sqrt(0.5)  # unbiased std of (1, 0)
    expected = torch.tensor([0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.0, 0.0])
    assert torch.allclose(advantages, expected, atol=1e-6)


def test_dr_grpo_only_centres():
    rewards = torch.tensor([3.0, 1.0, 2.0, 5.0])
    advantages = group_normalized_advantages(rewards, [0, 0, 0, 1], scale_rewards=False)
    assert torch.allclose(advantages, torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_per_role_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 2.0])
    advantages = group_normalized_advantages(rewards, ["g"] * 4, roles=["spy", "civ", "civ", "civ"])
    # spy alone -> 0; civilians mean 1, std 1
    assert torch.allclose(advantages, torch.tensor([0.0, -1 / (1 + 1e-4), 0.0, 1 / (1 + 1e-4)]), atol=1e-6)
    # the same as role-qualified group keys
    keyed = group_normalized_advantages(rewards, ["g/spy", "g/civ", "g/civ", "g/civ"])
    assert torch.equal(advantages, keyed)


def test_rloo_leaves_one_out():
    rewards = torch.tensor([3.0, 1.0, 2.0, 7.0])
    advantages = rloo_advantages(rewards, ["x", "x", "x", "y"])
    assert torch.allclose(advantages, torch.tensor([3 - 1.5, 1 - 2.5, 2 - 2.0, 0.0]))


def test_group_errors_are_clear():
    with pytest.raises(ValueError, match="3 rewards but 2 group keys"):
        group_normalized_advantages(torch.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="1-D"):
        rloo_advantages(torch.zeros(2, 2), ["a", "b"])


def test_step_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.8, 0.3]])  # the bootstrap 0.3 is ignored: step 1 is done
    dones = torch.tensor([[0.0, 1.0]])
    advantages, returns = step_gae(rewards, values, dones, gamma=0.9, lam=0.5)
    # t=1: delta = 1 - 0.8 = 0.2; t=0: delta = 0.9 * 0.8 - 0.5 = 0.22, A0 = 0.22 + 0.45 * 0.2
    assert torch.allclose(advantages, torch.tensor([[0.31, 0.2]]))
    assert torch.allclose(returns, torch.tensor([[0.81, 1.0]]))


def test_step_gae_bootstraps_when_not_done():
    advantages, _ = step_gae(
        torch.tensor([1.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.0]), gamma=0.5, lam=1.0
    )
    assert torch.allclose(advantages, torch.tensor([2.0]))  # 1 + 0.5 * 2 - 0
    no_bootstrap, _ = step_gae(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]), gamma=0.5)
    assert torch.allclose(no_bootstrap, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="values must have shape"):
        step_gae(torch.zeros(1, 2), torch.zeros(1, 5), torch.zeros(1, 2))


def test_broadcast_to_tokens():
    turn_index = torch.tensor([[-1, 0, 0, -1, 1, -1], [-1, -1, 0, 0, -1, -1]])
    spread = broadcast_to_tokens(torch.tensor([[1.0, 2.0], [3.0, 9.0]]), turn_index)
    assert torch.equal(spread, torch.tensor([[0, 1, 1, 0, 2, 0], [0, 0, 3, 3, 0, 0]], dtype=torch.float32))
    per_episode = broadcast_to_tokens(torch.tensor([5.0, -1.0]), turn_index)
    assert torch.equal(per_episode[1], torch.tensor([0, 0, -1, -1, 0, 0], dtype=torch.float32))
    with pytest.raises(ValueError, match="turn_index reaches 2"):
        broadcast_to_tokens(torch.zeros(1, 2), torch.tensor([[0, 1, 2]]))


def test_offline_weighted():
    advantages = offline_weighted(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 2.0, 1.0]), baseline=1.0)
    assert torch.allclose(advantages, torch.tensor([0.0, -2.0, 1.0]))
    assert torch.equal(offline_weighted(torch.tensor([3.0])), torch.tensor([3.0]))


def test_population_std_option():
    rewards = torch.tensor([1.0, 3.0])
    # mean 2, population std 1 (unbiased: sqrt(2))
    assert group_normalized_advantages(rewards, ["g", "g"], epsilon=0.0, population_std=True).tolist() == [
        -1.0,
        1.0,
    ]
    unbiased = group_normalized_advantages(rewards, ["g", "g"], epsilon=0.0)
    assert unbiased.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_role_baseline_advantages_by_hand():
    from vlmrl.rl.advantages import role_baseline_advantages

    rewards = torch.tensor([1.0, -1.0, 0.0])
    advantages, baselines = role_baseline_advantages(rewards, ["a", "b", "b"], {"a": 0.5}, alpha=0.5)
    # a: 0.5 * 0.5 + 0.5 * 1 = 0.75; b: 0.5 * 0 + 0.5 * (-0.5) = -0.25
    assert baselines == {"a": 0.75, "b": -0.25}
    assert advantages.tolist() == pytest.approx([0.25, -0.75, 0.25])
    with pytest.raises(ValueError, match="roles"):
        role_baseline_advantages(rewards, ["a"], {})
