"""Advantage estimators: pure functions, tensors in and tensors out (DESIGN 3.2).

Episode-level estimators (GRPO, Dr. GRPO, RLOO, offline weighting) return one advantage per
episode; `step_gae` returns one per environment step, and `broadcast_to_tokens` spreads
per-step (or per-episode) values over each step's action tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


def group_indices(groups: Sequence[Hashable], roles: Sequence[Hashable] | None = None) -> torch.Tensor:
    """Dense integer ids of the (group, role) keys, in order of first appearance."""
    if roles is not None and len(roles) != len(groups):
        raise ValueError(f"got {len(groups)} group keys but {len(roles)} roles (expected equal)")
    keys = list(zip(groups, roles)) if roles is not None else list(groups)
    ids: dict[Hashable, int] = {}
    return torch.tensor([ids.setdefault(key, len(ids)) for key in keys], dtype=torch.long)


def _as_group_ids(
    rewards: torch.Tensor, groups: Sequence[Hashable] | torch.Tensor, roles: Sequence[Hashable] | None
) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [episodes], got shape {tuple(rewards.shape)}")
    if isinstance(groups, torch.Tensor) and roles is None:
        ids = groups.long()
    else:
        keys = groups.tolist() if isinstance(groups, torch.Tensor) else groups
        ids = group_indices(keys, roles)
    if ids.shape != rewards.shape:
        raise ValueError(f"got {rewards.numel()} rewards but {ids.numel()} group keys (expected equal)")
    return ids.to(rewards.device)


def _group_statistics(
    rewards: torch.Tensor, ids: torch.Tensor, population_std: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-episode group size, group mean, and unbiased group std (0 for singleton groups);
    with `population_std` the std divides by n instead of n - 1."""
    count = int(ids.max()) + 1 if ids.numel() else 0
    rewards = rewards.double()
    sizes = torch.zeros(count, dtype=torch.float64, device=rewards.device).index_add_(
        0, ids, torch.ones_like(rewards)
    )
    sums = torch.zeros_like(sizes).index_add_(0, ids, rewards)
    means = sums / sizes
    squares = torch.zeros_like(sizes).index_add_(0, ids, (rewards - means[ids]) ** 2)
    divisor = sizes if population_std else (sizes - 1).clamp(min=1)
    variances = torch.where(sizes > 1, squares / divisor, torch.zeros_like(sizes))
    return sizes[ids], means[ids], variances.sqrt()[ids]


def group_normalized_advantages(
    rewards: torch.Tensor,
    groups: Sequence[Hashable] | torch.Tensor,
    scale_rewards: bool = True,
    epsilon: float = 1e-4,
    roles: Sequence[Hashable] | None = None,
    population_std: bool = False,
) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024, eq. in sec. 4.1.2):

        A_i = (r_i - mean_{j in G(i)} r_j) / (std_{j in G(i)} r_j + epsilon)

    with the unbiased (n - 1) standard deviation, 0 for a group of one. `scale_rewards=False`
    drops the division (Dr. GRPO, Liu et al. 2025: A_i = r_i - mean_G r). With `roles`, the
    group of an episode is the pair (group, role). `population_std` divides the squared
    deviations by n instead of n - 1 (what TRL's and Vision-Zero's GRPO code compute).
    """
    ids = _as_group_ids(rewards, groups, roles)
    _, means, stds = _group_statistics(rewards, ids, population_std)
    advantages = rewards.double() - means
    if scale_rewards:
        advantages = advantages / (stds + epsilon)
    return advantages.to(rewards.dtype)


def rloo_advantages(
    rewards: torch.Tensor, groups: Sequence[Hashable] | torch.Tensor, roles: Sequence[Hashable] | None = None
) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): the baseline is the mean of the others,

        A_i = r_i - (1 / (n - 1)) sum_{j in G(i), j != i} r_j = n / (n - 1) * (r_i - mean_G r)

    and 0 for a group of one (no other sample to compare with).
    """
    ids = _as_group_ids(rewards, groups, roles)
    sizes, means, _ = _group_statistics(rewards, ids)
    scale = torch.where(sizes > 1, sizes / (sizes - 1).clamp(min=1), torch.zeros_like(sizes))
    return (scale * (rewards.double() - means)).to(rewards.dtype)


def role_baseline_advantages(
    rewards: torch.Tensor,
    roles: Sequence[Hashable],
    baselines: dict[Hashable, float],
    alpha: float = 0.9,
) -> tuple[torch.Tensor, dict[Hashable, float]]:
    """Role-advantage estimation (Vision-Zero, Wang et al. 2025, sec. 3): one exponential
    moving-average baseline per role, updated with this batch before it is subtracted:

        b_role <- alpha * b_role + (1 - alpha) * mean_{i: role_i = role} r_i
        A_i    =  r_i - b_{role_i}

    A role absent from `baselines` starts at 0. Returns the advantages (no group
    normalisation: the game's rewards are zero-sum by design) and the updated baselines (a
    new dict; the input is left unchanged).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [episodes], got shape {tuple(rewards.shape)}")
    if len(roles) != rewards.numel():
        raise ValueError(f"got {rewards.numel()} rewards but {len(roles)} roles (expected equal)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    updated = dict(baselines)
    values = rewards.double()
    for role in dict.fromkeys(roles):  # first-appearance order, each role once
        chosen = torch.tensor([r == role for r in roles], dtype=torch.bool, device=rewards.device)
        mean = float(values[chosen].mean())
        updated[role] = alpha * float(updated.get(role, 0.0)) + (1.0 - alpha) * mean
    subtract = torch.tensor([updated[r] for r in roles], dtype=torch.float64, device=rewards.device)
    return (values - subtract).to(rewards.dtype), updated


def step_gae(
    rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over environment steps (Schulman et al. 2016, eq. 16):

        delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    `rewards`, `dones`: [..., T]; `values`: [..., T + 1] where the last entry is the value of
    the state after the final step (the bootstrap; ignored where that step is done), or
    [..., T] meaning a bootstrap of 0. Returns (advantages [..., T], returns = A + V [..., T]).
    VL-DAC computes values once per environment step and broadcasts A to that step's tokens.
    """
    if rewards.shape != dones.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and dones {tuple(dones.shape)} must have one shape")
    steps = rewards.shape[-1]
    if values.shape[-1] == steps:
        values = torch.cat([values, torch.zeros_like(values[..., :1])], dim=-1)
    if values.shape[:-1] != rewards.shape[:-1] or values.shape[-1] != steps + 1:
        raise ValueError(
            f"values must have shape {tuple(rewards.shape[:-1]) + (steps,)} or (..., {steps + 1}); "
            f"got {tuple(values.shape)}"
        )
    not_done = 1.0 - dones.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(steps)):
        delta = rewards[..., t] + gamma * values[..., t + 1] * not_done[..., t] - values[..., t]
        running = delta + gamma * lam * not_done[..., t] * running
        advantages[..., t] = running
    return advantages, advantages + values[..., :steps]


def broadcast_to_tokens(step_values: torch.Tensor, turn_index: torch.Tensor) -> torch.Tensor:
    """Spread per-step values [batch, steps] (or per-episode [batch]) over tokens [batch, length].

    Token t of row b gets step_values[b, turn_index[b, t]]; tokens with turn_index -1 (prompt,
    observations, padding) get 0. This is how a step's advantage reaches its action tokens.
    """
    if step_values.dim() == 1:
        step_values = step_values.unsqueeze(1)
    if step_values.dim() != 2 or turn_index.dim() != 2 or step_values.shape[0] != turn_index.shape[0]:
        raise ValueError(
            f"expected step values [batch, steps] and turn_index [batch, length] with one batch size, got "
            f"{tuple(step_values.shape)} and {tuple(turn_index.shape)}"
        )
    turn_index = turn_index.to(step_values.device)
    if step_values.shape[1] == 1:
        spread = step_values.expand(-1, turn_index.shape[1])
    else:
        if int(turn_index.max()) >= step_values.shape[1]:
            raise ValueError(
                f"turn_index reaches {int(turn_index.max())} but only {step_values.shape[1]} step values given"
            )
        spread = step_values.gather(1, turn_index.clamp(min=0))
    return torch.where(turn_index >= 0, spread, torch.zeros_like(spread))


def offline_weighted(
    rewards: torch.Tensor, weights: torch.Tensor | None = None, baseline: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Masters' offline advantage: A_i = w_i * (r_i - b).

    Offline episodes (pre-generated teacher/student responses) carry a per-episode weight
    w_i (e.g. the progressive-distillation schedule's weight of that response) and a reward;
    with b = 0 and w = 1 this is plain reward-weighted regression on the stored tokens.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [episodes], got shape {tuple(rewards.shape)}")
    if weights is None:
        weights = torch.ones_like(rewards)
    if weights.shape != rewards.shape:
        raise ValueError(f"weights {tuple(weights.shape)} must match rewards {tuple(rewards.shape)}")
    return weights * (rewards - baseline)
