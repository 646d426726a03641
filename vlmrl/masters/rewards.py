"""Masters' divergence and rewards as pure functions (Lee et al., 2025, §3.3, App. B).

- `jensen_shannon`: the distillation divergence D between the masked teacher's and the
  student's token distributions (Eq. 4-5).
- `shared_log_distributions`: distributions over the tokens two padded vocabularies share.
- `distill_rewards`: R_distill = (D_max - D) / (D_max - D_min) over one question's responses
  (Eq. 7): the response the student already matches best gets 1, the worst 0.
- `parse_judgement`: the LLM judge's verdict, parsed totally (Eq. 6, R_acc).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence

import torch

from vlmrl.model.formats import FormatFailure


def jensen_shannon(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-position JSD(P_T || P_S) = 1/2 KL(P_T || M) + 1/2 KL(P_S || M), M = (P_T + P_S) / 2.

    Inputs are log-probabilities over the vocabulary on the last axis; the result drops that
    axis, in nats (0 <= JSD <= ln 2). Computed in log space so zero probabilities are safe.
    """
    teacher = teacher_log_probs.float()
    student = student_log_probs.float()
    mixture = torch.logsumexp(torch.stack([teacher, student]), dim=0) - math.log(2.0)
    teacher_term = torch.where(teacher.exp() > 0, teacher.exp() * (teacher - mixture), 0.0)
    student_term = torch.where(student.exp() > 0, student.exp() * (student - mixture), 0.0)
    return 0.5 * (teacher_term.sum(-1) + student_term.sum(-1))


def shared_log_distributions(log_probs: torch.Tensor, size: int) -> torch.Tensor:
    """Log-distributions restricted to the first `size` tokens and renormalised over them.

    Two models of one family can pad their output rows differently past the tokenizer's real
    tokens (Qwen2.5-VL-7B: 152064 rows, 3B: 151936, for 151665 tokens); their distributions
    are compared over the tokens they share. Where `size` is the whole last axis the input is
    returned as it is.
    """
    if size == log_probs.shape[-1]:
        return log_probs
    kept = log_probs[..., :size]
    return kept - torch.logsumexp(kept, dim=-1, keepdim=True)


def distill_rewards(divergences: Sequence[float], groups: Sequence[Hashable]) -> list[float]:
    """Eq. 7 per group: (D_max - D) / (D_max - D_min); a group whose divergences all tie gets 1.

    Groups are the responses to one question (the paper's 8 per question).
    """
    if len(divergences) != len(groups):
        raise ValueError(f"{len(divergences)} divergences but {len(groups)} group labels")
    extremes: dict[Hashable, tuple[float, float]] = {}
    for value, group in zip(divergences, groups):
        low, high = extremes.get(group, (math.inf, -math.inf))
        extremes[group] = (min(low, value), max(high, value))
    rewards = []
    for value, group in zip(divergences, groups):
        low, high = extremes[group]
        rewards.append(1.0 if high - low <= 1e-12 else (high - value) / (high - low))
    return rewards


JUDGE_INSTRUCTION = (
    "Decide whether the response answers the question correctly, given the reference answer. "
    "Reply with <answer>yes</answer> or <answer>no</answer>."
)


def judge_prompt(question: str, reference: str, response: str) -> str:
    """The text a judge model reads (our wording of the paper's LLM-as-a-judge set-up)."""
    return f"{JUDGE_INSTRUCTION}\nQuestion: {question}\nReference answer: {reference}\nResponse: {response}"


_VERDICT = re.compile(r"\b(yes|no|correct|incorrect|right|wrong)\b", re.IGNORECASE)


def parse_judgement(text: object) -> float | FormatFailure:
    """1.0 for a 'yes'/'correct' verdict, 0.0 for 'no'/'incorrect', else a FormatFailure.

    Reads the judge's <answer> block when there is one, otherwise its first verdict word.
    """
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    inside = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    found = _VERDICT.search(inside[-1] if inside else text)
    if found is None:
        return FormatFailure("no yes/no verdict in the judge's reply")
    return 1.0 if found.group(1).lower() in ("yes", "correct", "right") else 0.0
