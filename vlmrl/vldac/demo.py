"""VL-DAC's part in `vlmrl demo --method vl-dac`: NumberLine episodes on held-out seeds, and a
short VL-DAC run (token PPO with the step-level critic) from the format-warmed model.

The recipe's CPU miniature first teaches `tiny` the JSON reply format with random actions
(`format_warmup`), because `tiny` has never seen it: unwarmed, every reply is invalid and the
world plays random actions. That warm-up is the demo's starting model (`start_model`), so the
before/after table measures the RL run alone, as the learning test does, not the format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmrl.vldac.recipe import VLDACConfig

WORLD = "numberline"  # the world of the README's learning test
# Two value-only updates (the reference's warm-up of the critic) and four policy updates: with
# the format warm-up and 2 x 50 held-out episodes the whole demo took 4 minutes of CPU time
# (the README's "Demo"), inside the 5-minute budget.
DEMO_STEPS = 6
# The README's stable rate: at 3e-4, the recipe's miniature rate, the KL estimate blew up at
# update 4.
DEMO_LEARNING_RATE = 1.5e-4
# A held-out episode costs about as much as four questions of another method's demo (up to
# 10 generations, one per world step, batched across episodes), so `--eval-size` questions'
# worth of time plays a quarter as many episodes: 200 -> 50.
QUESTIONS_PER_EPISODE = 4
# The recipe's held-out seeds (`eval_seed` on): training worlds draw 31-bit hashed seeds, so
# the two do not meet. NumberLine has only 30 (start, target) pairs, so held out means unseen
# episodes, not unseen states.
HELD_OUT_SEED = VLDACConfig().eval_seed
WARMED_MODEL = "format-warmed-model"
FORMAT_WARMUP_STEPS = VLDACConfig.format_warmup_steps  # the recipe's miniature (60)


def _held_out_episodes(config: Any) -> int:
    return max(10, config.eval_size // QUESTIONS_PER_EPISODE)


def make_data(config: Any, data_directory: Path) -> list[Any]:
    """The recipe's success task: greedy NumberLine episodes on seeds no training world uses.
    The worlds draw their scenes from their seeds, so nothing is written to `data_directory`."""
    from vlmrl.vldac.rollouts import world_task

    return [
        world_task(
            WORLD,
            _held_out_episodes(config),
            HELD_OUT_SEED * (config.seed + 1),
            VLDACConfig().max_new_tokens,
        )
    ]


def start_model(config: Any, data_directory: Path) -> Path:
    """`config.model` after the recipe's format warm-up, saved once under `data_directory`;
    both the evaluation before training and the training start from these weights."""
    from vlmrl.model import VLM
    from vlmrl.vldac.recipe import format_warmup

    directory = data_directory / WARMED_MODEL
    if (directory / "config.json").is_file():  # saved atomically, so present means whole
        return directory
    policy = VLM.load(config.model)
    format_warmup(
        policy,
        VLDACConfig(
            model=config.model, world=WORLD, seed=config.seed, format_warmup_steps=FORMAT_WARMUP_STEPS
        ),
    )
    policy.save(directory)
    return directory


def train(config: Any, run_directory: Path, callbacks: list[Callable[..., None]]) -> Path:
    from vlmrl.vldac.recipe import run_vldac

    steps = config.steps or DEMO_STEPS
    vldac = VLDACConfig(
        model=str(start_model(config, run_directory / "data")),
        world=WORLD,
        out=str(run_directory),
        seed=config.seed,
        threads=config.threads,
        steps=steps,
        learning_rate=DEMO_LEARNING_RATE,
        format_warmup_steps=0,  # the starting model is already warmed up (start_model)
        eval_episodes=0,  # the demo evaluates through the harness instead, before and after
        checkpoint_every=0,  # a short run: only the final model is kept
        save_samples_every=max(1, steps // 3),  # a few rollouts' episodes for the replays
    )
    run_vldac(vldac, callbacks=callbacks)
    return run_directory / "model"
