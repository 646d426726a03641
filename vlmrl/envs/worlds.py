"""The registry of worlds, the prompt of each step, and a seeded batch of worlds.

A world is a `gymnasium.Env` with RGB-array observations plus three things the VLM needs:
`action_names` (the valid text actions), `task_text()` (text that changes during the
episode, e.g. the formula so far) and `info["success"]`. `make_world(name)` builds one;
`WORLDS` lists them with the reference's per-world settings (discount, frames in context,
episode step limit).

`WorldBatch` is the thin vectorised wrapper: N worlds stepped together, each reset
automatically when its episode ends, with seeds drawn from (base seed, world index, episode
number), so a batch built with the same seed replays the same episodes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from vlmrl.envs import cards, navigation

JSON_REPLY = 'Reply in JSON: {{"thoughts": "...", "action": {example}}}.'


@dataclass(frozen=True)
class WorldSpec:
    """How to build a world and how VL-DAC's reference runs in it."""

    name: str
    factory: Callable[..., Any]
    instruction: str  # the step prompt; {actions}, {task} and {reply} are filled in
    gamma: float  # GAE discount: 0.9 for navigation, 0.99 otherwise (VL-DAC configs)
    frames: int  # most recent frames shown at each step (4 for MiniWorld, else 1)
    max_steps: int  # the reference's max_episode_steps
    defaults: dict[str, Any] = field(default_factory=dict)
    needs: str = ""  # a package the world needs beyond gymnasium


WORLDS: dict[str, WorldSpec] = {
    spec.name: spec
    for spec in [
        WorldSpec(
            "numberline",
            cards.NumberLine,
            # Short on purpose: every prompt token costs compute at every step on a CPU.
            "Number line: move your number (blue, lower row) to the target (red, upper row) "
            'by adding or subtracting one per turn. Actions: "+" or "-". {reply}',
            gamma=0.99,
            frames=1,
            max_steps=20,
        ),
        WorldSpec(
            "ezpoints",
            cards.EZPoints,
            "You are playing EZ Points. The image shows two playing cards (J, Q and K count as 10). "
            "Write a formula that uses each card's number once and equals 12, one piece per turn, "
            "then finish it with '='. {task}. Actions: a number 1 to 10, '+', '*' or '='. {reply}",
            gamma=0.99,
            frames=1,
            max_steps=20,
        ),
        WorldSpec(
            "points24",
            cards.Points24,
            "You are playing Points 24. The image shows four playing cards (J, Q and K count as 10). "
            "Write a formula that uses each card's number once and equals 24, one piece per turn, "
            "then finish it with '='. {task}. Actions: a number 1 to 10, '+', '-', '*', '/', '(', ')' "
            "or '='. {reply}",
            gamma=0.99,
            frames=1,
            max_steps=20,
        ),
        WorldSpec(
            "blackjack",
            cards.Blackjack,
            "You are playing Blackjack against the dealer. The image shows the dealer's open card "
            "(the other is face down) and your cards. Get closer to 21 than the dealer without "
            'going over. Actions: "stand" or "hit". {reply}',
            gamma=0.99,
            frames=1,
            max_steps=20,
        ),
        WorldSpec(
            "miniworld-oneroom",
            navigation.MiniWorldNavigation,
            "You are a robot in a 3-D room and your task is to {task}. The images are your last "
            "views, the newest last. Actions: {actions}. {reply}",
            gamma=0.9,
            frames=4,
            max_steps=128,
            defaults={"env_id": "MiniWorld-OneRoom-v0"},
            needs="miniworld (and an EGL driver)",
        ),
        WorldSpec(
            "miniworld-fourrooms",
            navigation.MiniWorldNavigation,
            "You are a robot in a 3-D house of four rooms and your task is to {task}. The images "
            "are your last views, the newest last. Actions: {actions}. {reply}",
            gamma=0.9,
            frames=4,
            max_steps=128,
            defaults={"env_id": "MiniWorld-FourRooms-v0"},
            needs="miniworld (and an EGL driver)",
        ),
        WorldSpec(
            "minigrid-empty",
            navigation.MiniGridNavigation,
            "You are the red triangle in a grid seen from above (it points where you face) and "
            "your task is to {task}. The images are your last views, the newest last. "
            "Actions: {actions}. {reply}",
            gamma=0.9,
            frames=4,
            max_steps=100,
            defaults={"env_id": "MiniGrid-Empty-5x5-v0"},
            needs="minigrid",
        ),
    ]
}


def world_spec(name: str) -> WorldSpec:
    if name not in WORLDS:
        raise ValueError(f"unknown world '{name}'; choose one of {sorted(WORLDS)}")
    return WORLDS[name]


def make_world(name: str, **options: Any) -> Any:
    """A fresh world by registry name; `options` override its constructor's defaults."""
    spec = world_spec(name)
    return spec.factory(**{**spec.defaults, **options})


def step_prompt(spec: WorldSpec, world: Any, frames: list[np.ndarray]) -> list[dict[str, Any]]:
    """The one-turn conversation the policy acts from: the recent frames and the instruction."""
    names = list(world.action_names)
    numbered = any(len(n) > 2 and not n.isdigit() and " " in n for n in names)
    if numbered:  # navigation: actions by number, as in the reference prompt
        actions = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
        example = "<action number>"
    else:
        actions = ", ".join(names)
        example = f'"{names[-1]}"'
    task = world.task_text() or getattr(world, "mission", "")
    text = spec.instruction.format(actions=actions, task=task, reply=JSON_REPLY.format(example=example))
    content: list[dict[str, Any]] = [{"type": "image", "image": Image.fromarray(f)} for f in frames]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def episode_seed(base_seed: int, world_index: int, episode: int) -> int:
    """A 31-bit seed for a world's k-th episode, independent across (seed, index, episode)."""
    return int(np.random.SeedSequence([base_seed, world_index, episode]).generate_state(1)[0] >> 1)


class WorldBatch:
    """N copies of one world stepped together, reset automatically (the vectorised API).

    Each world keeps its last `frames` observations. `state_dict` holds each world's episode
    number and the actions of its current episode: `load_state_dict` replays them from the
    episode's seed, so a resumed run continues mid-episode exactly (the worlds are
    deterministic given their seed).
    """

    def __init__(self, name: str, count: int, seed: int, options: dict[str, Any] | None = None):
        if count < 1:
            raise ValueError(f"a world batch needs at least one world, got {count}")
        self.spec = world_spec(name)
        self.name = name
        self.seed = seed
        self.options = dict(options or {})
        self.worlds = [make_world(name, **self.options) for _ in range(count)]
        self.episodes = [0] * count
        self.actions: list[list[int]] = [[] for _ in range(count)]
        self.frames: list[deque] = [deque(maxlen=self.spec.frames) for _ in range(count)]
        self.steps = [0] * count
        for index in range(count):
            self._reset(index)

    def __len__(self) -> int:
        return len(self.worlds)

    @property
    def action_names(self) -> list[str]:
        return list(self.worlds[0].action_names)

    def current_seed(self, index: int) -> int:
        return episode_seed(self.seed, index, self.episodes[index])

    def _reset(self, index: int) -> None:
        observation, _ = self.worlds[index].reset(seed=self.current_seed(index))
        self.frames[index].clear()
        self.frames[index].append(observation)
        self.actions[index] = []
        self.steps[index] = 0

    def prompts(self) -> list[list[dict[str, Any]]]:
        return [step_prompt(self.spec, w, list(f)) for w, f in zip(self.worlds, self.frames)]

    def step(self, actions: list[int]) -> list[dict[str, Any]]:
        """Step every world; returns per world its reward, done, truncated, success, info.

        A world whose episode ended (terminated, truncated by the world, or past the spec's
        step limit) starts its next episode; the returned record describes the ended one.
        """
        if len(actions) != len(self.worlds):
            raise ValueError(f"got {len(actions)} actions for {len(self.worlds)} worlds")
        results = []
        for index, (world, action) in enumerate(zip(self.worlds, actions)):
            observation, reward, terminated, truncated, info = world.step(int(action))
            self.actions[index].append(int(action))
            self.steps[index] += 1
            truncated = bool(truncated) or (not terminated and self.steps[index] >= self.spec.max_steps)
            results.append(
                {
                    "reward": float(reward),
                    "terminated": bool(terminated),
                    "truncated": truncated,
                    "done": bool(terminated) or truncated,
                    "success": bool(info.get("success", False)),
                    "seed": self.current_seed(index),
                    "info": info,
                }
            )
            if terminated or truncated:
                self.episodes[index] += 1
                self._reset(index)
            else:
                self.frames[index].append(observation)
        return results

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": list(self.episodes), "actions": [list(a) for a in self.actions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes = [int(e) for e in state["episodes"]]
        for index, taken in enumerate(state["actions"]):
            self._reset(index)
            for action in taken:
                observation, *_ = self.worlds[index].step(int(action))
                self.frames[index].append(observation)
                self.actions[index].append(int(action))
                self.steps[index] += 1
