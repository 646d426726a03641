"""VL-DAC's step-level critic and the advantage math around it (pure functions + one module).

VL-DAC (Bredis et al. 2025) learns one value per environment step from the VLM's last-layer
hidden state at the last prompt token (the state the step's action was generated from), with
that hidden state detached, so the value loss trains the head alone. Advantages come from GAE
over environment steps, are normalised over the rollout, and every generated token of a step
receives its step's advantage unchanged (token-level PPO with a step-level critic).

The two baselines of the paper's ablation live here too: episode-level advantages without a
critic (GRPO-style), and RL4VLM's lambda-weighted log-probability of the thought tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vlmrl.rl.advantages import step_gae


class ValueHead(nn.Module):
    """The reference critic: Linear(hidden, 3072) - ReLU - Linear(3072, 2048) - ReLU - Linear(2048, 1)."""

    def __init__(self, hidden_size: int, widths: Sequence[int] = (3072, 2048)):
        super().__init__()
        layers: list[nn.Module] = []
        previous = hidden_size
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, 1))
        self.network = nn.Sequential(*layers)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Values [n] of hidden states [n, hidden] (computed in the head's dtype)."""
        parameter = next(self.parameters())
        return self.network(states.to(parameter.dtype)).squeeze(-1)


def decision_states(hidden_states: torch.Tensor, decision_positions: list[list[int]]) -> torch.Tensor:
    """Hidden states [steps, hidden] at each conversation's decision positions, detached.

    `decision_positions[b]` lists, for conversation b, the position of the last token before
    each assistant turn (`TokenScores.decision_positions`). Detaching is VL-DAC's stop-gradient:
    the value loss never reaches the policy.
    """
    rows = [b for b, positions in enumerate(decision_positions) for _ in positions]
    columns = [p for positions in decision_positions for p in positions]
    if not rows:
        return hidden_states.new_zeros((0, hidden_states.shape[-1])).detach()
    index_rows = torch.tensor(rows, device=hidden_states.device)
    index_columns = torch.tensor(columns, device=hidden_states.device)
    return hidden_states[index_rows, index_columns].detach()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped value loss (as in the reference's a2c-ppo-acktr code):

        L_V = mean( max( (V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2 ) )

    Clipping keeps the new value within c of the value the rollout was scored with.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()


def normalize(advantages: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + epsilon) over the whole rollout (the reference's normalisation)."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + epsilon)


def rollout_advantages(
    rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each world's sequence of steps in the rollout (Schulman et al. 2016, eq. 16).

    `rewards`, `dones`: [worlds, T]; `values`: [worlds, T + 1], the last column the value of
    the observation after the rollout's final step (the bootstrap, unused where that step
    ended an episode). A step that ends an episode (terminated or truncated) cuts the
    recursion: delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t and
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}. Returns (normalised advantages,
    returns = raw A + V: the value targets).
    """
    raw, returns = step_gae(rewards, values, dones, gamma=gamma, lam=lam)
    return normalize(raw), returns


def episode_advantages(
    episode_ids: Sequence[int], episode_returns: dict[int, float], epsilon: float = 1e-8
) -> torch.Tensor:
    """The no-critic baseline: each step gets its episode's return, normalised over episodes.

    GRPO-style (Shao et al. 2024): A = (G_e - mean_e G) / (std_e G + epsilon) over the
    rollout's completed episodes e; steps of an episode the rollout cut short (absent from
    `episode_returns`) get 0, so they do not move the policy.
    """
    finished = sorted(episode_returns)
    if not finished:
        return torch.zeros(len(episode_ids))
    totals = torch.tensor([episode_returns[e] for e in finished], dtype=torch.float64)
    scale = totals.std() if len(finished) > 1 else torch.tensor(1.0, dtype=torch.float64)
    normalised = {e: float((episode_returns[e] - totals.mean()) / (scale + epsilon)) for e in finished}
    return torch.tensor([normalised.get(e, 0.0) for e in episode_ids], dtype=torch.float32)


def weighted_sequence_logprob(
    logprobs: torch.Tensor, action_mask: torch.Tensor, thought_mask: torch.Tensor, thought_weight: float
) -> torch.Tensor:
    """RL4VLM's action log-probability (Zhai et al. 2024, eq. 3), per conversation [batch]:

        log pi(a | s) = lambda * sum_{t in thoughts} log p_t + sum_{t in action} log p_t

    `thought_mask` marks the action tokens that belong to the reasoning part; the rest of
    `action_mask` is the action part. VL-DAC removes this lambda (it is its "hyperparameter").
    """
    action = action_mask.to(logprobs.dtype)
    thought = (thought_mask & action_mask).to(logprobs.dtype)
    return (logprobs * (action - thought)).sum(-1) + thought_weight * (logprobs * thought).sum(-1)


def sequence_ppo_loss(
    logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO-clip on one log-probability per step (RL4VLM): -mean(min(rho A, clip(rho) A))."""
    ratio = torch.exp(logprob - old_logprob)
    return -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages).mean()
