"""Interactive loops: multi-turn tool use (visual search), and environments.

Both drive `vlm.generate` themselves, batched across documents: every turn, one call
generates the next assistant message of all unfinished episodes. `run_tool_loop` is the one
tool loop of the suite: the evaluation's zoom search and Mini-o3's training rollouts
(`vlmrl.toolloop`) both run through it, each with its own tools (`vlmrl.evals.tools.Tool`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from vlmrl.evals.metrics import exact_match, mean_metrics
from vlmrl.evals.tasks import Interaction, Task
from vlmrl.evals.tools import Tool, ZoomTool
from vlmrl.model.formats import ZOOM_INSTRUCTION, FormatFailure, parse_answer
from vlmrl.model.types import Generation, SamplingParams


def _user(images: Sequence[Image.Image], text: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in images]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


# ----------------------------------------------------------------------------- tool loop


@dataclass
class LoopLimits:
    """Budgets of one multi-turn episode (Mini-o3 trains with 6 turns and 12 images).

    - `max_turns`: assistant turns; a tool call in the last one is over-turn (no answer left).
    - `max_images`: images in the conversation, the original included (0: no limit); a call
      when the limit is reached is over-turn.
    - `context_budget` / `context_margin`: a call whose observation would bring the prompt of
      the next turn within `context_margin` tokens of `context_budget` (after leaving room for
      `max_new_tokens`) is over-turn, and the observation is not added (0: no check).
    - `stop_at_calls`: end generation at a tool's closing tag so the tool runs between turns.
    """

    max_turns: int = 4
    max_images: int = 0
    context_budget: int = 0
    context_margin: int = 0
    stop_at_calls: bool = False

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_images < 0 or self.context_budget < 0 or self.context_margin < 0:
            raise ValueError(f"loop limits: max_turns >= 1 and non-negative image/context limits, got {self}")


@dataclass
class ToolTrajectory:
    """One episode of the tool loop: the conversation and what happened in it.

    `steps` holds one record per tool call (turn, tool, and the tool's details: box, source,
    crop size, error; `crop_image` is the index of the crop among `images`). `overturn` says
    the episode called a tool when no budget was left (`overturn_reason`: 'turns', 'images',
    'context'); `void` that it ended with neither an answer nor a call, or cut by length.
    """

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    generations: list[Generation] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    answered_turn: int = 0
    calls: int = 0
    tool_failures: int = 0
    overturn: bool = False
    overturn_reason: str | None = None
    void: bool = False

    @property
    def turns(self) -> int:
        return len(self.generations)


def overturn_reason(turn: int, images: int, limits: LoopLimits, context_tokens: int = 0) -> str | None:
    """Why a tool call at `turn` (1-based) is over-turn, or None when it may run.

    Mini-o3's criteria: the call comes in the last allowed turn ('turns'), the conversation
    already holds `max_images` images ('images'), or the next turn's prompt plus its new
    tokens (`context_tokens`) would come within `context_margin` of `context_budget`
    ('context').
    """
    if turn >= limits.max_turns:
        return "turns"
    if limits.max_images and images >= limits.max_images:
        return "images"
    if limits.context_budget and context_tokens > limits.context_budget - limits.context_margin:
        return "context"
    return None


def _first_image(conversation: list[dict[str, Any]]) -> Image.Image | None:
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image" and part.get("image") is not None:
                    return part["image"]
    return None


def _prompt_tokens(vlm: Any, conversation: list[dict[str, Any]]) -> int:
    return len(vlm.encode([conversation], add_generation_prompt=True)[0].input_ids)


def run_tool_loop(
    vlm: Any,
    conversations: Sequence[list[dict[str, Any]]],
    sampling: SamplingParams,
    tools: Sequence[Tool],
    limits: LoopLimits,
) -> list[ToolTrajectory]:
    """Run every conversation until it answers, stops calling tools, or runs out of budget.

    Each turn one `vlm.generate` call continues all unfinished episodes. A turn with a valid
    `<answer>` ends the episode; a turn that one of `tools` detects runs that tool on the
    episode's images (image 0 is the first image of the conversation, the original; each
    successful call adds its observation image) and appends the tool's observation turn, or
    is over-turn when no budget is left (`LoopLimits`). Anything else ends the episode (void).
    Tool failures (malformed calls) become error observations and are counted, never raised.
    """
    if not tools:
        raise ValueError("run_tool_loop needs at least one tool")
    context_length = getattr(vlm, "context_length", None)
    if limits.context_budget and callable(context_length):
        # Never plan past what the model can hold: generate would refuse the next turn.
        limits = dataclasses.replace(limits, context_budget=min(limits.context_budget, context_length()))
    if limits.stop_at_calls:
        stops = list(dict.fromkeys([*sampling.stop, *(t.stop for t in tools if t.stop)]))
        sampling = dataclasses.replace(sampling, stop=stops)
    trajectories = []
    for conversation in conversations:
        image = _first_image(conversation)
        trajectories.append(ToolTrajectory(list(conversation), [image] if image is not None else []))
    active = list(range(len(trajectories)))
    for turn in range(1, limits.max_turns + 1):
        if not active:
            break
        generations = vlm.generate([trajectories[i].messages for i in active], sampling)
        still_active = []
        for index, generation in zip(active, generations):
            trajectory = trajectories[index]
            text = generation.text
            trajectory.generations.append(generation)
            trajectory.messages.append(generation.as_message())
            answer = parse_answer(text)
            if not isinstance(answer, FormatFailure):
                trajectory.answer, trajectory.answered_turn = answer, turn
                continue
            tool = next((t for t in tools if t.detect(text)), None)
            if tool is None:
                trajectory.void = True  # neither an answer nor a call (or cut by length)
                continue
            trajectory.calls += 1
            reason = overturn_reason(turn, len(trajectory.images), limits)
            if reason is not None:
                trajectory.overturn, trajectory.overturn_reason = True, reason
                continue
            outcome = tool.run(text, trajectory.images, turn) if trajectory.images else None
            if outcome is None:
                trajectory.void = True  # a text-only conversation has nothing to crop
                continue
            trajectory.messages.append(outcome.message)
            if limits.context_budget:
                needed = _prompt_tokens(vlm, trajectory.messages) + sampling.max_new_tokens
                if overturn_reason(turn, len(trajectory.images), limits, needed) is not None:
                    trajectory.messages.pop()  # the observation is rolled back
                    trajectory.overturn, trajectory.overturn_reason = True, "context"
                    continue
            step = {"turn": turn, "tool": tool.name, **(outcome.details or {})}
            step.setdefault("error", outcome.failure)
            if outcome.image is not None:
                trajectory.images.append(outcome.image)
                step["crop_image"] = len(trajectory.images) - 1
            else:
                step["crop_image"] = None
                trajectory.tool_failures += 1
            trajectory.steps.append(step)
            still_active.append(index)
        active = still_active
    return trajectories


# ----------------------------------------------------------------------------- visual search


def zoom_search(
    vlm: Any,
    docs: list[dict[str, Any]],
    sampling: SamplingParams,
    max_turns: int,
    budgets: Sequence[int],
    output_side: int = 336,
) -> list[Interaction]:
    """Ask each doc's question about its image; the model may zoom until it answers or the turn
    budget ends. A turn that is neither an answer nor a tool call ends the episode unanswered.

    Greedy decoding makes the episode under a smaller budget b the first b turns of this one,
    so one run scores every budget: correct@b is right and answered within b turns.
    """
    conversations = [
        [_user([doc["image"]], ZOOM_INSTRUCTION.format(question=doc["question"]))] for doc in docs
    ]
    trajectories = run_tool_loop(
        vlm, conversations, sampling, [ZoomTool(output_side)], LoopLimits(max_turns=max_turns)
    )
    results = []
    for doc, trajectory in zip(docs, trajectories):
        answer = trajectory.answer
        correct = exact_match(answer, doc["answer"]) if answer is not None else 0.0
        score: dict[str, Any] = {
            "accuracy": correct,
            "answered": float(answer is not None),
            "turns": float(trajectory.answered_turn or trajectory.turns),
            "zooms": float(trajectory.calls),
            "tool_failures": float(trajectory.tool_failures),
            "difficulty": str(doc.get("difficulty", "all")),
        }
        for budget in budgets:
            score[f"accuracy@{budget}"] = float(correct > 0 and trajectory.answered_turn <= budget)
        transcript = [generation.text for generation in trajectory.generations]
        results.append(Interaction(json.dumps(transcript), score))
    return results


# ----------------------------------------------------------------------------- environments


@dataclass
class Observation:
    image: Image.Image | None
    text: str


@runtime_checkable
class Environment(Protocol):
    """A world the model acts in, one text action per step (VL-DAC's worlds implement it)."""

    def reset(self, seed: int) -> Observation | tuple[Image.Image | None, str]: ...

    def step(
        self, action_text: str
    ) -> tuple[Observation | tuple[Image.Image | None, str], float, bool, dict[str, Any]]: ...


def _observation(value: Any, where: str) -> Observation:
    if isinstance(value, Observation):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        return Observation(value[0], value[1])
    raise TypeError(f"{where}: expected an Observation or an (image, text) tuple, got {type(value).__name__}")


def run_episodes(
    vlm: Any,
    docs: list[dict[str, Any]],
    sampling: SamplingParams,
    make_environment: Callable[[], Environment],
    max_steps: int,
    history_turns: int = 4,
) -> list[Interaction]:
    """Run one episode per doc (doc["seed"] resets its environment), all in lockstep.

    The model sees the last `history_turns` observation/action pairs, so long episodes keep a
    bounded prompt. Success is the environment's `info["success"]` at the end when it reports
    one, else a positive final reward.
    """
    environments = [make_environment() for _ in docs]
    observations = [
        _observation(env.reset(int(doc["seed"])), f"reset of episode {doc['id']}")
        for env, doc in zip(environments, docs)
    ]
    history: list[list[dict[str, Any]]] = [[] for _ in docs]
    returns = [0.0] * len(docs)
    steps = [0] * len(docs)
    success = [False] * len(docs)
    actions: list[list[str]] = [[] for _ in docs]
    active = list(range(len(docs)))
    for _ in range(max_steps):
        if not active:
            break
        prompts = []
        for index in active:
            observation = observations[index]
            turn = _user([observation.image] if observation.image is not None else [], observation.text)
            prompts.append(history[index][-2 * history_turns :] + [turn])
        generations = vlm.generate(prompts, sampling)
        still_active = []
        for index, prompt, generation in zip(active, prompts, generations):
            action = generation.text
            actions[index].append(action)
            observation, reward, done, info = environments[index].step(action)
            returns[index] += float(reward)
            steps[index] += 1
            history[index] = prompt + [{"role": "assistant", "content": action}]
            observations[index] = _observation(
                observation, f"step {steps[index]} of episode {docs[index]['id']}"
            )
            if done:
                success[index] = (
                    bool(info.get("success", reward > 0)) if isinstance(info, dict) else reward > 0
                )
            else:
                still_active.append(index)
        active = still_active
    return [
        Interaction(
            json.dumps(actions[index]),
            {"success": float(success[index]), "return": returns[index], "steps": float(steps[index])},
        )
        for index in range(len(docs))
    ]


def environment_task(
    name: str,
    make_environment: Callable[[], Environment],
    episodes: int = 32,
    max_steps: int = 16,
    seed: int = 0,
    max_new_tokens: int = 32,
    history_turns: int = 4,
) -> Task:
    """An env-success task: the success rate, mean return and length of `episodes` episodes."""

    def docs(limit: int | None) -> list[dict[str, Any]]:
        count = episodes if limit is None else min(episodes, limit)
        return [{"id": f"{name}-{seed + i}", "seed": seed + i} for i in range(count)]

    def interact(vlm: Any, batch: list[dict[str, Any]], sampling: SamplingParams) -> list[Interaction]:
        return run_episodes(vlm, batch, sampling, make_environment, max_steps, history_turns)

    return Task(
        name=name,
        docs=docs,
        interact=interact,
        aggregate=mean_metrics,
        max_new_tokens=max_new_tokens,
        primary_metric="success",
        description=f"success rate over episodes of {name} (at most {max_steps} steps)",
        settings={"max_steps": max_steps, "seed": seed, "history_turns": history_turns},
    )
