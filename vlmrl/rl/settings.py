"""The trainer's options as a config dataclass, importable without torch (for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmrl.config import option

ADVANTAGES = ("grpo", "dr_grpo", "rloo", "offline", "given")
AGGREGATIONS = ("token_mean", "seq_mean", "token_sum_norm")


@dataclass
class TrainerConfig:
    """Options shared by every RL command (each method's config embeds these fields)."""

    steps: int = option(100, help="Training steps (one collect + update each).")
    episodes_per_step: int = option(64, help="Episodes collected per step over all processes.")
    ppo_epochs: int = option(1, help="Passes over each step's episodes.")
    minibatches: int = option(
        1, help="Optimizer steps per PPO epoch (the episodes are split this many ways)."
    )
    micro_batch_size: int = option(8, help="Episodes per forward/backward pass (gradients accumulate).")
    learning_rate: float = option(1e-5, help="Peak AdamW learning rate.")
    warmup_steps: int = option(0, help="Linear warmup steps.")
    min_learning_rate_ratio: float = option(0.1, help="Cosine decay ends at this fraction of the peak.")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    max_grad_norm: float = option(1.0, help="Gradient clipping norm (0: off).")
    epsilon_low: float = option(0.2, help="PPO clip range below 1.")
    epsilon_high: float = option(0.2, help="PPO clip range above 1 (clip-higher: 0.28).")
    beta: float = option(
        0.0, help="KL(policy || reference) coefficient (k3 estimator); 0 skips the reference."
    )
    kl_ratio_correction: bool = option(
        False, help="Weight the KL term by the importance ratio (unbiased off-policy KL gradient)."
    )
    entropy_coef: float = option(0.0, help="Entropy bonus coefficient.")
    aggregation: str = option("token_mean", help=f"Loss aggregation: {', '.join(AGGREGATIONS)}.")
    max_length: int = option(64, help="The constant max length of token_sum_norm (max new tokens).")
    advantage: str = option("grpo", help=f"Advantage estimator: {', '.join(ADVANTAGES)}.")
    per_role: bool = option(False, help="Normalise advantages within (group, role) instead of group.")
    mask_truncated: bool = option(False, help="Over-turn masking: truncated episodes leave the loss.")
    recompute_old_logprobs: bool = option(
        False,
        help="Recompute old log-probs with the policy instead of the sampler's (other rollout backend).",
    )
    temperature: float = option(1.0, help="Sampling temperature; scoring divides logits by it too.")
    gradient_checkpointing: bool = option(False, help="Trade compute for memory in the update.")
    checkpoint_every: int = option(0, help="Write a checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = option(2, help="How many recent checkpoints to keep.")
    save_samples_every: int = option(0, help="Save the step's episodes to samples/ every N steps (0: never).")
    seed: int = option(0, help="Seed of python, numpy, torch and the rollout RNG.")
    deterministic: bool = option(
        False,
        help="torch deterministic algorithms everywhere (always on for CPU training, where they cost nothing measurable; on GPU set CUBLAS_WORKSPACE_CONFIG=:4096:8).",
    )

    def validate(self) -> None:
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage '{self.advantage}' is not one of {ADVANTAGES}")
        if self.episodes_per_step < 1 or self.micro_batch_size < 1 or self.minibatches < 1:
            raise ValueError("episodes_per_step, micro_batch_size and minibatches must be >= 1")
        from vlmrl.rl.losses import LossSettings

        LossSettings(**self.loss_settings_kwargs())

    def loss_settings_kwargs(self) -> dict[str, Any]:
        return {
            "epsilon_low": self.epsilon_low,
            "epsilon_high": self.epsilon_high,
            "beta": self.beta,
            "kl_ratio_correction": self.kl_ratio_correction,
            "entropy_coef": self.entropy_coef,
            "aggregation": self.aggregation,
            "max_length": self.max_length,
        }
