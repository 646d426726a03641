"""`vlmrl vision-zero train|play`: spy-game self-play with Iterative-SPO, or one game to read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from vlmrl.config import command, option
from vlmrl.games.recipe import VisionZeroConfig

app = typer.Typer(help="Vision-Zero: 'Who is the spy' self-play with Iterative-SPO.", no_args_is_help=True)

CONFIGS = Path(__file__).parent / "configs"


@command(app, VisionZeroConfig, name="train", configs_directory=CONFIGS)
def train(config: VisionZeroConfig) -> None:
    """Train by self-play; held-out spy identification and shapes QA before and after."""
    from rich.console import Console

    from vlmrl.games.recipe import run_vision_zero

    try:
        results = run_vision_zero(config)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    before, after = results["before"] or {}, results["after"] or {}
    parts = [
        f"{label} {before[task]['accuracy']:.3f} -> {after[task]['accuracy']:.3f}"
        for task, label in (("spy-game", "held-out spy identification"), ("shapes-qa", "shapes QA"))
        if task in before and task in after
    ]
    line = "; ".join(parts) or "no held-out evaluation (--eval-games 0 --eval-questions 0)"
    Console().print(f"{line}; results in {config.out}/results.json")


@dataclass
class PlayConfig:
    """Play games with one model in every seat and print their transcripts."""

    model: str = option("tiny", help="Model: 'tiny', a local directory or a hub id.")
    pairs: str = option(
        "shapes",
        help="'shapes', 'charts', a `vlmrl data pairs` output directory, or a folder of your images.",
    )
    games: int = option(1, help="How many games to play.")
    seed: int = option(0, help="Seed of the pairs, the spies and the sampling.")
    players: int = option(4, help="Players per game.")
    rounds: int = option(2, help="Clue rounds.")
    decision: str = option("observer", help="'observer' or 'players'.")
    group_size: int = option(8, help="Observer decisions sampled per game.")
    prompt_style: str = option("short", help="'short' (tiny's instructions) or 'reference'.")
    clue_tokens: int = option(24, help="Most new tokens per clue.")
    decision_tokens: int = option(16, help="Most new tokens per decision.")
    temperature: float = option(0.8, help="Sampling temperature (0: greedy).")
    resolution: int = option(168, help="Side of generated images.")
    min_objects: int = option(1, help="shapes: fewest objects per scene.")
    max_objects: int = option(2, help="shapes: most objects per scene.")
    edits: str = option("recolor", help="shapes edits, comma-separated.")
    max_side: int = option(512, help="Folder images are shrunk to this longer side.")


@command(app, PlayConfig, name="play", configs_directory=CONFIGS)
def play(config: PlayConfig) -> None:
    """Play games and print each transcript: clues by round, votes, the spy, rewards."""
    import numpy as np
    import torch

    from vlmrl.games.engine import GameSettings, PairPool, format_transcript, play_games, score_game
    from vlmrl.model import VLM

    try:
        settings = GameSettings(
            players=config.players,
            rounds=config.rounds,
            decision=config.decision,
            decision_samples=config.group_size,
            style=config.prompt_style,
            clue_tokens=config.clue_tokens,
            decision_tokens=config.decision_tokens,
            temperature=config.temperature,
        )
        settings.validate()
        edits = tuple(e.strip() for e in config.edits.split(",") if e.strip())
        pool = PairPool(
            config.pairs,
            config.seed,
            max(1, config.games),
            config.resolution,
            config.min_objects,
            config.max_objects,
            edits,
            config.max_side,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    policy = VLM.load(config.model)
    count = max(1, config.games)
    spies = [int(rng.integers(1, settings.players + 1)) for _ in range(count)]
    games = play_games(
        policy, [pool[i] for i in range(count)], spies, settings, [f"game-{i}" for i in range(count)]
    )
    baselines: dict[str, float] = {}
    for game in games:
        baselines = score_game(game, baselines)
        typer.echo(format_transcript(game) + "\n")
