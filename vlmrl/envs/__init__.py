"""Cheap synthetic worlds for VL-DAC on the gymnasium API (gym-cards, MiniWorld, MiniGrid)."""

from vlmrl.envs.actions import ChosenAction, choose_action, format_action, parse_action
from vlmrl.envs.worlds import WORLDS, WorldBatch, WorldSpec, episode_seed, make_world, step_prompt, world_spec

__all__ = [
    "WORLDS",
    "ChosenAction",
    "WorldBatch",
    "WorldSpec",
    "choose_action",
    "episode_seed",
    "format_action",
    "make_world",
    "parse_action",
    "step_prompt",
    "world_spec",
]
