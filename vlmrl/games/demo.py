"""Vision-Zero's part in `vlmrl demo --method vision-zero` (the demo itself is `vlmrl/demo.py`).

The metric is the one Vision-Zero's learning test measures: held-out spy identification, whole
"Who is the spy" games on image pairs training never sees (the recipe's held-out pool, seed
data_seed + 1), played greedily by the evaluated model in every seat; does the observer name
the spy? Training is the recipe's self-play on pairs of the training seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlmrl.demo import DemoConfig

# 8-9 s a step (8 games) with 1 thread on the shared 2-core CPU: the whole demo took 4 minutes.
DEMO_STEPS = 16
# A game is nine generate calls (four players, two clue rounds, the observer) where a question
# is one, so the demo plays half as many held-out games as it would ask questions.
GAMES_PER_QUESTION = 0.5


def _recipe_config(config: DemoConfig, out: str) -> Any:
    """The recipe's config for the demo: the learning test's settings, no held-out evaluation."""
    from vlmrl.games.recipe import VisionZeroConfig

    steps = config.steps or DEMO_STEPS
    return VisionZeroConfig(
        model=config.model,
        out=out,
        data_seed=config.seed,
        seed=config.seed,
        threads=config.threads,
        steps=steps,
        # tests/games/test_games_learning.py's settings, the ones the README's figures are for:
        # pairs tiny can tell apart (one or two objects, one recoloured: the recipe's defaults),
        # the paper's adaptive phase switch (decision training until the observer is right on 60%
        # of its last 128 decisions, so the steps go to the stage the metric measures), an
        # entropy bonus that keeps the vote's entropy from collapsing, short turns.
        phase_mode="adaptive",
        window=128,
        episodes_per_step=64,
        micro_batch_size=64,
        learning_rate=5e-5,
        entropy_coef=0.01,
        clue_tokens=16,
        decision_tokens=8,
        max_length=16,
        # The demo evaluates through the harness before and after; the recipe's own held-out
        # games and shapes QA would cost the time twice.
        eval_games=0,
        eval_questions=0,
        checkpoint_every=0,  # a short run: the final model is all the demo reads
        save_samples_every=max(1, steps // 3),
        save_games_every=max(1, steps // 3),
    )


def make_data(config: DemoConfig, data_directory: Path) -> list[Any]:
    """The held-out spy games (pairs are generated from a seed, so nothing is written)."""
    from vlmrl.games.recipe import held_out_spy_game_task, pair_pools

    games = max(1, round(config.eval_size * GAMES_PER_QUESTION))
    recipe = dataclasses.replace(_recipe_config(config, str(data_directory)), eval_games=games)
    _, held_out = pair_pools(recipe)
    return [held_out_spy_game_task(recipe, held_out)]


def train(config: DemoConfig, run_directory: Path, callbacks: list[Callable[..., None]]) -> Path:
    """Self-play from `config.model` on the training pairs; returns the model directory."""
    from vlmrl.games.recipe import run_vision_zero

    run_vision_zero(_recipe_config(config, str(run_directory)), callbacks=callbacks)
    return run_directory / "model"
