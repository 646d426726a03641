"""Mini-o3's reward and dynamic sampling, as pure functions.

Reward (the reference's `general_qa_tool_mc.compute_score`):
    r = (1 - tool_penalty * used_tool) * accuracy_weight * accuracy + format_weight * format
with accuracy_weight 1, format_weight 0 and tool_penalty 0 in the reference run, i.e. the
reward is answer accuracy alone.

Dynamic sampling (the reference's `trainer.rejection_sample` with `get_valid_mask`): a group
whose rewards do not vary (standard deviation below 1e-4, computed without its over-turn
trajectories) carries no GRPO signal and is dropped; more groups are sampled until the batch
is full.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from vlmrl.model.formats import FormatFailure, parse_answer

_TOOL_TURN = re.compile(r"^\s*<think>.*</think>.*<grounding>.*</grounding>\s*$", re.DOTALL)
_ANSWER_TURN = re.compile(r"^\s*<think>.*</think>.*<answer>.*</answer>\s*$", re.DOTALL)
STD_TOLERANCE = 1e-4


def normalise(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".").split())


def answer_accuracy(answer: str | None, truth: str) -> float:
    """1.0 when the answer equals the truth (case/space-insensitive), else 0.0."""
    if answer is None:
        return 0.0
    return float(normalise(answer) == normalise(truth))


def format_score(texts: Sequence[str]) -> float:
    """1.0 when every non-final turn is think + grounding and the final one think + answer."""
    if not texts or isinstance(parse_answer(texts[-1]), FormatFailure):
        return 0.0
    ok = all(_TOOL_TURN.match(t) for t in texts[:-1]) and _ANSWER_TURN.match(texts[-1])
    return float(bool(ok))


def trajectory_reward(
    accuracy: float,
    format_ok: float,
    used_tool: bool,
    accuracy_weight: float = 1.0,
    format_weight: float = 0.0,
    tool_penalty: float = 0.0,
) -> float:
    """r = (1 - tool_penalty * used_tool) * accuracy_weight * accuracy + format_weight * format."""
    scale = 1.0 - tool_penalty if used_tool else 1.0
    return scale * accuracy_weight * accuracy + format_weight * format_ok


def informative_groups(
    rewards: Sequence[float],
    groups: Sequence[str],
    overturn: Sequence[bool],
    tolerance: float = STD_TOLERANCE,
) -> list[str]:
    """Groups (in first-seen order) whose rewards vary, over their non-over-turn members.

    A group whose members are all over-turn, or whose remaining rewards have a population
    standard deviation below `tolerance`, is not informative.
    """
    if not len(rewards) == len(groups) == len(overturn):
        raise ValueError(
            f"rewards, groups and overturn must have one length, got {len(rewards)}, {len(groups)}, {len(overturn)}"
        )
    members: dict[str, list[float]] = {}
    for reward, group, over in zip(rewards, groups, overturn):
        members.setdefault(group, [])
        if not over:
            members[group].append(float(reward))
    return [g for g, values in members.items() if len(values) > 1 and float(np.std(values)) >= tolerance]
