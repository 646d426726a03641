"""Plain data types of the VLM wrapper's interface: sampling settings and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# A conversation is a list of Hugging Face chat messages:
#   {"role": "system" | "user" | "assistant" | "tool",
#    "content": [{"type": "image", "image": PIL.Image.Image}, {"type": "text", "text": "..."}]}
# `content` may also be a plain string. An assistant message may carry "token_ids": list[int],
# the exact tokens the sampler produced (ending with the end-of-turn token if it stopped);
# `score` then uses those ids verbatim instead of re-tokenising the text, so the log-probs of
# a sampled completion are computed on exactly the sampled tokens.
Message = dict[str, Any]
Conversation = list[Message]


@dataclass
class SamplingParams:
    """How `VLM.generate` samples. temperature 0 means greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # CTRL-style penalty (Keskar et al., 2019) on every id already in the prompt or the
    # completion: positive logits are divided by it, negative ones multiplied. 1.0 is off.
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.n < 1:
            raise ValueError(f"top_k must be >= 0 and n >= 1, got top_k={self.top_k}, n={self.n}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


@dataclass
class Generation:
    """One sampled completion of one conversation."""

    text: str  # decoded completion, cut before a stop string / end-of-turn token
    token_ids: list[int]  # sampled ids, including the end-of-turn token when the model stopped
    logprobs: list[float]  # the sampler's log-prob of each id in token_ids
    prompt_index: int  # index of the conversation it continues
    sample_index: int  # 0..n-1
    finish_reason: str  # "stop" (end-of-turn token), "stop_string" or "length"

    def as_message(self) -> Message:
        """The assistant message to append to the conversation (keeps the exact ids)."""
        return {
            "role": "assistant",
            "content": [{"type": "text", "text": self.text}],
            "token_ids": list(self.token_ids),
        }


@dataclass
class TokenScores:
    """Per-token results of one forward pass over whole conversations (right-padded batch).

    Position t holds the log-prob of input_ids[:, t] given the tokens before it; position 0
    is 0. `action_mask` is True exactly on tokens the assistant produced (its content and its
    end-of-turn token): prompts, images, tool observations and padding are False.
    """

    input_ids: torch.Tensor  # [batch, length] long
    attention_mask: torch.Tensor  # [batch, length] bool
    action_mask: torch.Tensor  # [batch, length] bool
    logprobs: torch.Tensor  # [batch, length] float (carries grad when called with grad enabled)
    turn_index: (
        torch.Tensor
    )  # [batch, length] long: which assistant turn (0, 1, ...) a token belongs to, -1 elsewhere
    entropy: torch.Tensor | None = None  # [batch, length], when asked
    hidden_states: torch.Tensor | None = None  # [batch, length, hidden] last layer, when asked
    # For each conversation, the position of the last token before each assistant turn: the
    # state the policy acted from (value heads read the hidden state there).
    decision_positions: list[list[int]] = field(default_factory=list)
    # When asked: the log-probability distribution over the vocabulary at every action token,
    # [action tokens, vocab], rows in the order of `logprobs[action_mask]` (distillation).
    action_log_distributions: torch.Tensor | None = None
