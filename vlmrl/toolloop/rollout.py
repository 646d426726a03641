"""Rollouts of the tool loop: trajectories -> episodes (with replays), the training source,
and accuracy against the turn budget.

Everything runs through the one loop of the suite, `vlmrl.evals.interactive.run_tool_loop`,
with Mini-o3's grounding tool first and the `<tool_call>` zoom dialect second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vlmrl.evals.interactive import LoopLimits, ToolTrajectory, run_tool_loop
from vlmrl.evals.tools import Tool, ZoomTool
from vlmrl.model.types import SamplingParams
from vlmrl.rl.episode import Episode, Turn
from vlmrl.toolloop.data import question_messages
from vlmrl.toolloop.grounding import GroundingTool
from vlmrl.toolloop.rewards import answer_accuracy, format_score, informative_groups, trajectory_reward


def default_tools(min_pixels: int, max_pixels: int, zoom_side: int = 336) -> list[Tool]:
    """The registry: the grounding crop, then the `<tool_call>` zoom dialect."""
    return [GroundingTool(min_pixels, max_pixels), ZoomTool(zoom_side)]


def replay(record: dict[str, Any], trajectory: ToolTrajectory, correct: bool) -> dict[str, Any]:
    """The report's `tool_trajectory` replay (images by order of appearance; 0 is the original)."""
    steps = [
        {
            "turn": step["turn"],
            "source": step.get("source"),
            "bbox": step.get("bbox"),
            "crop_image": step.get("crop_image"),
            "crop_size": step.get("crop_size"),
            "error": step.get("error"),
        }
        for step in trajectory.steps
    ]
    return {
        "kind": "tool_trajectory",
        "question": record["question"],
        "steps": steps,
        "answer": trajectory.answer,
        "truth": record["answer"],
        "correct": bool(correct),
        "overturn": trajectory.overturn,
    }


def to_episode(record: dict[str, Any], trajectory: ToolTrajectory, group: str) -> Episode:
    """An Episode whose turns are the sampled assistant turns; observations are not actions."""
    accuracy = answer_accuracy(trajectory.answer, record["answer"])
    texts = [g.text for g in trajectory.generations]
    return Episode(
        messages=trajectory.messages,
        turns=[
            Turn(list(g.token_ids), list(g.logprobs), g.text, g.finish_reason) for g in trajectory.generations
        ],
        group=group,
        truncated=trajectory.overturn,
        info={
            "record_id": record["id"],
            "answer": record["answer"],
            "prediction": trajectory.answer,
            "correct": bool(accuracy),
            "accuracy": accuracy,
            "format": format_score(texts),
            "used_tool": trajectory.calls > 0,
            "tool_calls": trajectory.calls,
            "tool_failures": trajectory.tool_failures,
            "overturn": trajectory.overturn,
            "overturn_reason": trajectory.overturn_reason,
            "void": trajectory.void,
            "answered_turn": trajectory.answered_turn,
            "difficulty": record.get("difficulty", "all"),
            "replay": replay(record, trajectory, bool(accuracy)),
        },
    )


def search(
    policy: Any,
    records: Sequence[dict[str, Any]],
    sampling: SamplingParams,
    tools: Sequence[Tool],
    limits: LoopLimits,
    repeats: int = 1,
) -> list[ToolTrajectory]:
    """Run the loop on each record `repeats` times (record-major order)."""
    conversations = [question_messages(r) for r in records for _ in range(repeats)]
    return run_tool_loop(policy, conversations, sampling, tools, limits)


class ProbeSource:
    """GRPO groups of search episodes on a record stream, with the reference's dynamic sampling.

    Each round samples `n // group_size` records, `group_size` trajectories each; groups whose
    rewards do not vary (over their non-over-turn members) are dropped and rounds continue,
    at most `max_rounds`, until `n` episodes are kept. A short batch is topped up with dropped
    groups, so the trainer always gets `n`; `rollout_metrics` reports what happened.
    """

    def __init__(
        self,
        record_at: Callable[[int], dict[str, Any]],
        group_size: int,
        sampling: SamplingParams,
        tools: Sequence[Tool],
        limits: LoopLimits,
        reward: Callable[[Episode], float],
        dynamic_sampling: bool = True,
        max_rounds: int = 4,
    ):
        if group_size < 1 or max_rounds < 1:
            raise ValueError(f"group_size and max_rounds must be >= 1, got {group_size}, {max_rounds}")
        self.record_at = record_at
        self.group_size = group_size
        self.sampling = sampling
        self.tools = list(tools)
        self.limits = limits
        self.reward = reward
        self.dynamic_sampling = dynamic_sampling
        self.max_rounds = max_rounds
        self.cursor = 0
        self.last_metrics: dict[str, float] = {}

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Episode]:
        if n % self.group_size:
            raise ValueError(f"asked for {n} episodes, not a multiple of group_size={self.group_size}")
        wanted = n // self.group_size
        kept: list[list[Episode]] = []
        dropped: list[list[Episode]] = []
        rounds = 0
        while len(kept) < wanted and rounds < self.max_rounds:
            rounds += 1
            count = wanted - len(kept) if self.dynamic_sampling else wanted
            records = [self.record_at(self.cursor + i) for i in range(count)]
            trajectories = search(policy, records, self.sampling, self.tools, self.limits, self.group_size)
            groups: dict[str, list[Episode]] = {}
            for position, trajectory in enumerate(trajectories):
                index = self.cursor + position // self.group_size
                record = records[position // self.group_size]
                groups.setdefault(f"{index}", []).append(to_episode(record, trajectory, f"{index}"))
            self.cursor += count
            episodes = [e for members in groups.values() for e in members]
            if not self.dynamic_sampling:
                kept = list(groups.values())
                break
            useful = set(
                informative_groups(
                    [self.reward(e) for e in episodes],
                    [e.group for e in episodes],
                    [e.truncated for e in episodes],
                )
            )
            kept += [members for name, members in groups.items() if name in useful]
            dropped += [members for name, members in groups.items() if name not in useful]
        filled = kept[:wanted] + dropped[: max(0, wanted - len(kept))]
        episodes = [e for members in filled for e in members]
        self.last_metrics = {
            "rollout/rounds": float(rounds),
            "rollout/dropped_groups": float(len(dropped)),
            "rollout/topped_up_groups": float(max(0, wanted - len(kept))),
            "rollout/overturn_rate": float(np.mean([e.truncated for e in episodes])),
            "rollout/tool_calls_mean": float(np.mean([e.info["tool_calls"] for e in episodes])),
            "rollout/tool_failures_mean": float(np.mean([e.info["tool_failures"] for e in episodes])),
            "rollout/turns_mean": float(np.mean([len(e.turns) for e in episodes])),
            "rollout/accuracy": float(np.mean([e.info["accuracy"] for e in episodes])),
        }
        return episodes

    def rollout_metrics(self) -> dict[str, float]:
        return dict(self.last_metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])


def make_reward(
    accuracy_weight: float, format_weight: float, tool_penalty: float
) -> Callable[[Episode], float]:
    def reward(episode: Episode) -> float:
        return trajectory_reward(
            episode.info["accuracy"],
            episode.info["format"],
            episode.info["used_tool"],
            accuracy_weight,
            format_weight,
            tool_penalty,
        )

    return reward


def budget_curve(
    trajectories: Sequence[ToolTrajectory], truths: Sequence[str], budgets: Sequence[int]
) -> dict:
    """Accuracy at each test-time turn budget b: correct and answered within b turns.

    An episode run with budget B is, turn for turn, the same as one run with b < B until turn
    b (nothing in the prompt depends on the budget), so one run at the largest budget scores
    every smaller one, sampled or greedy.
    """
    correct = [answer_accuracy(t.answer, truth) for t, truth in zip(trajectories, truths)]
    return {
        int(b): float(np.mean([c > 0 and 0 < t.answered_turn <= b for c, t in zip(correct, trajectories)]))
        for b in budgets
    }


def eval_limits(limits: LoopLimits, max_turns: int) -> LoopLimits:
    """Test-time limits: more turns, and room for one image per turn."""
    images = max(limits.max_images, max_turns + 1) if limits.max_images else 0
    return dataclasses.replace(limits, max_turns=max_turns, max_images=images)
