"""The policy loss every RL method in the suite uses: token-level PPO-clip (DESIGN 3.2).

Per action token t of episode i, with ratio rho = exp(log pi(t) - log pi_old(t)):

    l_t = -min(rho * A, clip(rho, 1 - epsilon_low, 1 + epsilon_high) * A) + beta * KL_t

(PPO, Schulman et al. 2017, eq. 7; asymmetric "clip-higher" range from DAPO, Yu et al. 2025),
where KL_t is the k3 estimator of KL(pi || pi_ref) (Schulman 2020):

    KL_t = exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1   (>= 0, unbiased)

optionally weighted by rho (`kl_ratio_correction`, DeepSeek-V3.2) for an unbiased gradient
when the samples come from pi_old rather than pi.

The per-token losses are aggregated by one of
    token_mean:     sum_{i,t} l / (number of tokens)                   (DAPO; TRL "bnpo"/"dapo")
    seq_mean:       mean_i [ sum_t l / (tokens of i) ]                 (GRPO paper; TRL "grpo")
    token_sum_norm: sum_{i,t} l / (number of episodes * max_length)    (Dr. GRPO; TRL "dr_grpo")
and an entropy bonus -entropy_coef * (token mean of the policy's entropy) is added.

Masks: a token counts when the wrapper's `action_mask` says the model produced it AND its
episode is not masked (over-turn masking, format failures). This function is the one place
where episode masks meet the loss. For micro-batching and several processes, the caller may
pass the token and episode counts of the whole (global) minibatch, so that summing the
micro-batch losses gives exactly the loss of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlmrl.rl.settings import AGGREGATIONS


@dataclass
class LossSettings:
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    entropy_coef: float = 0.0
    aggregation: str = "token_mean"
    max_length: int = 0  # the constant of token_sum_norm (the rollout's max new tokens)
    # Multiply KL_t by the (differentiable) ratio rho, which makes its gradient the unbiased
    # reverse-KL gradient off-policy (DeepSeek-V3.2; TRL's `use_bias_correction_kl`).
    kl_ratio_correction: bool = False

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation '{self.aggregation}' is not one of {AGGREGATIONS}")
        if self.aggregation == "token_sum_norm" and self.max_length <= 0:
            raise ValueError("aggregation 'token_sum_norm' needs max_length > 0 (the max completion length)")
        if self.epsilon_low < 0 or self.epsilon_high < 0:
            raise ValueError(f"clip ranges must be >= 0, got {self.epsilon_low}, {self.epsilon_high}")


def kl_k3(logprobs: torch.Tensor, reference_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = log pi_ref - log pi."""
    difference = reference_logprobs - logprobs
    return torch.exp(difference) - difference - 1


def token_mask(action_mask: torch.Tensor, episode_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The tokens that count: action tokens of episodes that are not masked out."""
    mask = action_mask.to(torch.float32)
    if episode_mask is not None:
        if episode_mask.shape != action_mask.shape[:1]:
            raise ValueError(
                f"episode_mask must be [batch]={tuple(action_mask.shape[:1])}, got {tuple(episode_mask.shape)}"
            )
        mask = mask * episode_mask.to(device=mask.device, dtype=mask.dtype).unsqueeze(1)
    return mask


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: str,
    token_count: float | torch.Tensor | None = None,
    sequence_count: float | torch.Tensor | None = None,
    max_length: int = 0,
) -> torch.Tensor:
    """Reduce per-token values [batch, length] to a scalar (see the module docstring)."""
    if token_count is None:
        token_count = mask.sum()
    if sequence_count is None:
        sequence_count = (mask.sum(1) > 0).sum()
    masked = per_token * mask
    if aggregation == "token_mean":
        return masked.sum() / torch.as_tensor(token_count, dtype=masked.dtype).clamp(min=1)
    if aggregation == "seq_mean":
        per_sequence = masked.sum(1) / mask.sum(1).clamp(min=1)
        return per_sequence.sum() / torch.as_tensor(sequence_count, dtype=masked.dtype).clamp(min=1)
    if aggregation == "token_sum_norm":
        denominator = torch.as_tensor(sequence_count, dtype=masked.dtype).clamp(min=1) * max_length
        return masked.sum() / denominator
    raise ValueError(f"aggregation '{aggregation}' is not one of {AGGREGATIONS}")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    action_mask: torch.Tensor,
    settings: LossSettings,
    *,
    episode_mask: torch.Tensor | None = None,
    reference_logprobs: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    token_count: float | torch.Tensor | None = None,
    sequence_count: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip loss over action tokens. All token tensors are [batch, length].

    `advantages` is [batch] (one per episode, broadcast over its tokens) or [batch, length].
    `token_count` / `sequence_count` default to this batch's counts (pass the global
    minibatch's counts when this call sees a micro-batch). Returns the loss and metrics
    (token means over the counted tokens, plus `tokens`, the count they are averaged over).
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != action_mask.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and action_mask "
            f"{tuple(action_mask.shape)} must have one shape"
        )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    mask = token_mask(action_mask, episode_mask)
    # Masked positions can hold anything (padding); zero their log-ratio so exp cannot overflow.
    log_ratio = torch.where(mask > 0, logprobs - old_logprobs, torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1 - settings.epsilon_low, 1 + settings.epsilon_high)
    advantages = advantages.to(ratio.dtype)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    kl = None
    if reference_logprobs is not None:
        kl = kl_k3(logprobs, torch.where(mask > 0, reference_logprobs, logprobs))
        if settings.beta != 0:
            per_token = per_token + settings.beta * (kl * ratio if settings.kl_ratio_correction else kl)
    elif settings.beta != 0:
        raise ValueError("beta != 0 needs reference_logprobs")
    loss = aggregate(per_token, mask, settings.aggregation, token_count, sequence_count, settings.max_length)
    if settings.entropy_coef != 0:
        if entropy is None:
            raise ValueError("entropy_coef != 0 needs the policy's per-token entropy")
        loss = loss - settings.entropy_coef * aggregate(entropy, mask, "token_mean", token_count)

    with torch.no_grad():
        count = mask.sum()
        denominator = count.clamp(min=1)

        def mean(values: torch.Tensor) -> float:
            return float((values * mask).sum() / denominator)

        wide = advantages.expand_as(ratio)
        metrics = {
            "tokens": float(count),
            "clip_fraction_low": mean(((ratio < 1 - settings.epsilon_low) & (wide < 0)).float()),
            "clip_fraction_high": mean(((ratio > 1 + settings.epsilon_high) & (wide > 0)).float()),
            "ratio_mean": mean(ratio),
            "ratio_max": float(torch.where(mask > 0, ratio, torch.zeros_like(ratio)).max()) if count else 1.0,
            "ratio_min": float(torch.where(mask > 0, ratio, torch.full_like(ratio, 1e9)).min())
            if count
            else 1.0,
            "policy_loss": float(loss),
        }
        if kl is not None:
            metrics["kl"] = mean(kl)
        if entropy is not None:
            metrics["entropy"] = mean(entropy)
    return loss, metrics
