"""Rollouts in a batch of worlds with the VLM as policy, and the replays the report shows.

`WorldSource` is a `RolloutSource`: `collect(policy, n)` advances N worlds by n / N steps
each (one generation = one environment step, the reference's layout), and returns one
`Episode` per step: the step's one-turn conversation (recent frames + instruction) with the
sampled reply, the step's reward in `step_rewards`, and in `info` what GAE needs (world,
time, done) and what the report shows. Episodes of the worlds that ended during the
rollout are kept whole in `completed`, from which `replay_episode` builds the multi-turn
`env_episode` replays saved under `samples/`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vlmrl.envs import WorldBatch, choose_action
from vlmrl.model import SamplingParams
from vlmrl.rl.episode import Episode, Turn


class WorldSource:
    def __init__(
        self,
        world: str,
        worlds: int,
        sampling: SamplingParams,
        seed: int,
        options: dict[str, Any] | None = None,
    ):
        self.batch = WorldBatch(world, worlds, seed, options)
        self.world = world
        self.sampling = sampling
        self.running: list[list[Episode]] = [[] for _ in range(worlds)]
        self.completed: list[list[Episode]] = []
        self.bootstrap: list[list[dict[str, Any]]] = []
        self.rollouts = 0

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Episode]:
        count = len(self.batch)
        if n % count:
            raise ValueError(f"{n} steps per rollout do not divide over {count} worlds")
        self.completed = []
        episodes: list[Episode] = []
        names = self.batch.action_names
        for time in range(n // count):
            prompts = self.batch.prompts()
            generations = policy.generate(prompts, self.sampling)
            chosen = [choose_action(g.text, names, rng) for g in generations]
            results = self.batch.step([c.index for c in chosen])
            for index, (prompt, generation, action, result) in enumerate(
                zip(prompts, generations, chosen, results)
            ):
                episode = Episode(
                    messages=prompt + [generation.as_message()],
                    turns=[
                        Turn(
                            generation.token_ids,
                            generation.logprobs,
                            generation.text,
                            generation.finish_reason,
                        )
                    ],
                    reward=result["reward"],
                    # Logged by the trainer as reward/<name>_mean: valid-action rate, and the
                    # fraction of steps that ended (success) an episode.
                    reward_components={
                        "valid": float(action.valid),
                        "episode_end": float(result["done"]),
                        "success": float(result["success"]),
                    },
                    step_rewards=[result["reward"]],
                    group=f"{self.world}/world-{index}/seed-{result['seed']}",
                    info={
                        "world": index,
                        "time": time,
                        "rollout": self.rollouts,
                        "seed": result["seed"],
                        "done": result["done"],
                        "terminated": result["terminated"],
                        "truncated": result["truncated"],
                        "success": result["success"],
                        "action": names[action.index],
                        "valid": action.valid,
                        "format_error": action.reason,
                    },
                )
                episodes.append(episode)
                self.running[index].append(episode)
                if result["done"]:
                    self.completed.append(self.running[index])
                    self.running[index] = []
        # The observation after the last step: its value bootstraps GAE.
        self.bootstrap = self.batch.prompts()
        self.rollouts += 1
        return episodes

    def state_dict(self) -> dict[str, Any]:
        return {"batch": self.batch.state_dict(), "rollouts": self.rollouts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch.load_state_dict(state["batch"])
        self.rollouts = int(state["rollouts"])
        # Steps of the interrupted episodes taken before the checkpoint are not in memory;
        # their replay starts at the resume.
        self.running = [[] for _ in range(len(self.batch))]


@torch.no_grad()
def step_values(
    policy: Any, head: torch.nn.Module, conversations: list[list[dict[str, Any]]], batch_size: int = 32
) -> torch.Tensor:
    """V(s) of each conversation's first step: the head on the hidden state of the last prompt token.

    A conversation without an assistant turn (a bootstrap observation) gets an empty reply so
    that its decision position, the last token of the generation prompt, exists.
    """
    from vlmrl.vldac.critic import decision_states

    values = []
    for start in range(0, len(conversations), batch_size):
        chunk = [
            c if any(m["role"] == "assistant" for m in c) else c + [{"role": "assistant", "content": ""}]
            for c in conversations[start : start + batch_size]
        ]
        scores = policy.score(chunk, hidden_states=True)
        first = [positions[:1] for positions in scores.decision_positions]
        values.append(head(decision_states(scores.hidden_states, first)).float().cpu())
    return torch.cat(values) if values else torch.zeros(0)


def replay_episode(steps: list[Episode], world: str) -> Episode:
    """One world's whole episode as a multi-turn conversation with its `env_episode` replay.

    Each step's prompt and reply follow one another; image i of the replay is the i-th image
    in `messages` (the newest frame of each step is that step's `frame`).
    """
    messages: list[dict[str, Any]] = []
    replay_steps = []
    images = 0
    for step in steps:
        prompt, reply = step.messages[0], step.messages[-1]
        messages += [prompt, reply]
        images += sum(
            1 for part in prompt["content"] if isinstance(part, dict) and part.get("type") == "image"
        )
        value = step.info.get("value")
        replay_steps.append(
            {
                "frame": images - 1,
                "action": step.turns[0].text,
                "parsed_action": step.info.get("action"),
                "valid": bool(step.info.get("valid")),
                "value": None if value is None else float(value),
                "reward": float(step.step_rewards[0]),
            }
        )
    success = bool(steps[-1].info.get("success")) if steps else False
    return Episode(
        messages=messages,
        turns=[step.turns[0] for step in steps],
        reward=float(sum(s.step_rewards[0] for s in steps)),
        step_rewards=[s.step_rewards[0] for s in steps],
        group=steps[0].group if steps else world,
        truncated=bool(steps[-1].info.get("truncated")) if steps else False,
        info={
            "replay": {"kind": "env_episode", "env": world, "steps": replay_steps, "success": success},
            "correct": success,
            "return": float(sum(s.step_rewards[0] for s in steps)),
        },
    )


def play_episodes(
    policy: Any,
    world: str,
    seeds: list[int],
    sampling: SamplingParams,
    head: torch.nn.Module | None = None,
    options: dict[str, Any] | None = None,
) -> list[Episode]:
    """Play one whole episode per seed (all in lockstep) and return their replay episodes.

    The prompts are the training ones (`step_prompt`); an invalid reply takes a random valid
    action drawn from a generator seeded by the episode's seed, so a greedy policy's episode
    is a function of (weights, seed). With a value head, each step records V(s).
    """
    from collections import deque

    from vlmrl.envs import make_world, step_prompt, world_spec

    spec = world_spec(world)
    worlds = [make_world(world, **(options or {})) for _ in seeds]
    generators = [np.random.default_rng([seed, 7919]) for seed in seeds]
    frames = []
    for env, seed in zip(worlds, seeds):
        observation, _ = env.reset(seed=int(seed))
        frames.append(deque([observation], maxlen=spec.frames))
    steps: list[list[Episode]] = [[] for _ in seeds]
    active = list(range(len(seeds)))
    names = list(worlds[0].action_names) if worlds else []
    for time in range(spec.max_steps):
        if not active:
            break
        prompts = [step_prompt(spec, worlds[i], list(frames[i])) for i in active]
        generations = policy.generate(prompts, sampling)
        values = step_values(policy, head, prompts).tolist() if head is not None else [None] * len(active)
        still = []
        for index, prompt, generation, value in zip(active, prompts, generations, values):
            action = choose_action(generation.text, names, generators[index])
            observation, reward, terminated, truncated, info = worlds[index].step(action.index)
            truncated = bool(truncated) or (not terminated and time + 1 >= spec.max_steps)
            steps[index].append(
                Episode(
                    messages=prompt + [generation.as_message()],
                    turns=[
                        Turn(
                            generation.token_ids,
                            generation.logprobs,
                            generation.text,
                            generation.finish_reason,
                        )
                    ],
                    reward=float(reward),
                    step_rewards=[float(reward)],
                    group=f"{world}/seed-{seeds[index]}",
                    info={
                        "time": time,
                        "seed": int(seeds[index]),
                        "done": bool(terminated) or truncated,
                        "truncated": truncated,
                        "success": bool(info.get("success", False)),
                        "action": names[action.index],
                        "valid": action.valid,
                        "value": value,
                    },
                )
            )
            if terminated or truncated:
                continue
            frames[index].append(observation)
            still.append(index)
        active = still
    return [replay_episode(s, world) for s in steps]


def world_task(
    world: str,
    episodes: int,
    seed: int,
    max_new_tokens: int,
    options: dict[str, Any] | None = None,
) -> Any:
    """The env-success task of `vlmrl.evals`: success rate (with bootstrap intervals), mean
    return, steps and valid-action rate over `episodes` episodes seeded seed, seed + 1, ..."""
    import json

    from vlmrl.evals.metrics import mean_metrics
    from vlmrl.evals.tasks import Interaction, Task

    def docs(limit: int | None) -> list[dict[str, Any]]:
        count = episodes if limit is None else min(episodes, limit)
        return [{"id": f"{world}-{seed + i}", "seed": seed + i} for i in range(count)]

    def interact(vlm: Any, batch: list[dict[str, Any]], sampling: SamplingParams) -> list[Interaction]:
        played = play_episodes(vlm, world, [int(d["seed"]) for d in batch], sampling, options=options)
        results = []
        for episode in played:
            replay = episode.info["replay"]
            valid = [s["valid"] for s in replay["steps"]]
            results.append(
                Interaction(
                    json.dumps([s["action"] for s in replay["steps"]]),
                    {
                        "success": float(replay["success"]),
                        "return": episode.info["return"],
                        "steps": float(len(valid)),
                        "valid_rate": float(np.mean(valid)) if valid else 0.0,
                    },
                )
            )
        return results

    return Task(
        name=f"vl-dac-{world}",
        docs=docs,
        interact=interact,
        aggregate=mean_metrics,
        max_new_tokens=max_new_tokens,
        primary_metric="success",
        description=f"success rate over {episodes} episodes of {world} (seeds from {seed})",
        settings={"world": world, "seed": seed, "options": options or {}},
    )


def load_value_head(policy: Any, path: Any) -> torch.nn.Module:
    """A value head saved by `vlmrl vl-dac train` (its widths are read from the weights)."""
    from safetensors.torch import load_file

    from vlmrl.vldac.critic import ValueHead

    state = load_file(str(path))
    linear = sorted(k for k in state if k.endswith(".weight"))
    widths = [state[k].shape[0] for k in linear[:-1]]
    text_config = getattr(policy.model.config, "text_config", policy.model.config)
    head = ValueHead(text_config.hidden_size, widths)
    head.load_state_dict(state)
    return head.to(policy.device)
