"""Interactive evaluation loops: visual search with the zoom tool, and environments.

Both drive `vlm.generate` themselves, batched across documents: every turn, one call
generates the next assistant message of all unfinished episodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from vlmrl.evals.metrics import exact_match, mean_metrics
from vlmrl.evals.tasks import Interaction, Task
from vlmrl.evals.tools import ToolFailure, run_zoom_call, tool_message
from vlmrl.model.formats import ZOOM_INSTRUCTION, FormatFailure, parse_answer, parse_tool_call
from vlmrl.model.types import SamplingParams


def _user(images: Sequence[Image.Image], text: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in images]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


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
    transcripts: list[list[str]] = [[] for _ in docs]
    answers: list[str | None] = [None] * len(docs)
    answered_turn = [0] * len(docs)
    zooms = [0] * len(docs)
    tool_failures = [0] * len(docs)
    active = list(range(len(docs)))
    for turn in range(1, max_turns + 1):
        if not active:
            break
        generations = vlm.generate([conversations[i] for i in active], sampling)
        still_active = []
        for index, generation in zip(active, generations):
            text = generation.text
            transcripts[index].append(text)
            conversations[index].append(generation.as_message())
            answer = parse_answer(text)
            if not isinstance(answer, FormatFailure):
                answers[index], answered_turn[index] = answer, turn
                continue
            if isinstance(parse_tool_call(text), FormatFailure):
                continue  # neither an answer nor a call: the episode ends unanswered
            result = run_zoom_call(text, docs[index]["image"], output_side)
            zooms[index] += 1
            tool_failures[index] += isinstance(result, ToolFailure)
            conversations[index].append(tool_message(result))
            still_active.append(index)
        active = still_active
    results = []
    for index, doc in enumerate(docs):
        correct = exact_match(answers[index], doc["answer"]) if answers[index] is not None else 0.0
        score: dict[str, Any] = {
            "accuracy": correct,
            "answered": float(answers[index] is not None),
            "turns": float(answered_turn[index] or len(transcripts[index])),
            "zooms": float(zooms[index]),
            "tool_failures": float(tool_failures[index]),
            "difficulty": str(doc.get("difficulty", "all")),
        }
        for budget in budgets:
            score[f"accuracy@{budget}"] = float(correct > 0 and answered_turn[index] <= budget)
        results.append(Interaction(json.dumps(transcripts[index]), score))
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
