"""`vlmrl vl-dac train|eval|play`: VL-DAC in synthetic worlds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from vlmrl.config import command, option
from vlmrl.vldac.recipe import VLDACConfig

app = typer.Typer(
    help="VL-DAC: token PPO with a step-level critic in synthetic worlds.", no_args_is_help=True
)


@command(app, VLDACConfig, name="train", configs_directory=Path(__file__).parent / "configs")
def train(config: VLDACConfig) -> None:
    """Train with VL-DAC (or a baseline); held-out success before and after."""
    from rich.console import Console

    from vlmrl.vldac.recipe import run_vldac

    try:
        config.validate()
    except ValueError as error:  # a usage error naming the option, not a traceback
        raise typer.BadParameter(str(error)) from error
    results = run_vldac(config)
    before, after = results["before"], results["after"]
    if before is None or after is None:  # --eval-episodes 0
        Console().print(f"trained {results['updates']} updates; results in {config.out}/results.json")
        return
    Console().print(
        f"{config.world} success {before['success']:.3f} -> {after['success']:.3f} "
        f"(valid actions {before['valid_rate']:.2f} -> {after['valid_rate']:.2f}); "
        f"results in {config.out}/results.json"
    )


@dataclass
class WorldEvalConfig:
    """Success rate of a model in a world over held-out episodes (greedy), through vlmrl.evals."""

    model: str = option("tiny", help="Model: 'tiny', a local directory (e.g. runs/vl-dac/model) or a hub id.")
    world: str = option("numberline", help="World name (see `vlmrl vl-dac train --help`).")
    world_options: str = option("", help="World options as key=value pairs, comma-separated.")
    episodes: int = option(200, help="Episodes (seeds seed, seed + 1, ...).")
    seed: int = option(1_000_000, help="Seed of the first episode.")
    max_new_tokens: int = option(32, help="Most tokens per reply.")
    out: str = option(
        "runs/vl-dac-eval", help="Output directory (results.json, results.md, cached predictions)."
    )


@command(app, WorldEvalConfig, name="eval")
def evaluate_world(config: WorldEvalConfig) -> None:
    """Evaluate a model's success rate in a world."""
    from rich.console import Console

    from vlmrl.evals.runner import evaluate
    from vlmrl.model import VLM
    from vlmrl.vldac.recipe import parse_world_options, summarise
    from vlmrl.vldac.rollouts import world_task

    _check_world(config.world, config.world_options)
    task = world_task(
        config.world,
        config.episodes,
        config.seed,
        config.max_new_tokens,
        parse_world_options(config.world_options),
    )
    summary = summarise(
        evaluate(VLM.load(config.model), [task], out_dir=config.out, show_progress=False), task.name
    )
    Console().print(
        f"{config.world}: success {summary['success']:.3f} {summary['success_interval']}, "
        f"return {summary['return']:.2f}, valid actions {summary['valid_rate']:.2f}; results in {config.out}"
    )


@dataclass
class PlayConfig:
    """Play one episode and save its frames, actions and values as a replay."""

    model: str = option("tiny", help="Model: 'tiny', a local directory (e.g. runs/vl-dac/model) or a hub id.")
    env: str = option("numberline", help="World name.")
    world_options: str = option("", help="World options as key=value pairs, comma-separated.")
    seed: int = option(0, help="Episode seed.")
    temperature: float = option(0.0, help="Sampling temperature (0: greedy).")
    max_new_tokens: int = option(32, help="Most tokens per reply.")
    value_head: str = option(
        "", help="value_head.safetensors of a trained run (default: MODEL/value_head.safetensors if present)."
    )
    out: str = option("runs/vl-dac-play", help="Output directory: episode.jsonl and its images.")


@command(app, PlayConfig, name="play")
def play(config: PlayConfig) -> None:
    """Play one episode; the replay (frames, actions, values, rewards) goes to OUT/episode.jsonl."""
    from rich.console import Console

    from vlmrl.model import VLM, SamplingParams
    from vlmrl.rl.episode import save_episodes
    from vlmrl.vldac.recipe import parse_world_options
    from vlmrl.vldac.rollouts import load_value_head, play_episodes

    _check_world(config.env, config.world_options)
    policy = VLM.load(config.model)
    head_path = (
        Path(config.value_head) if config.value_head else Path(config.model) / "value_head.safetensors"
    )
    if config.value_head and not head_path.is_file():
        raise typer.BadParameter(f"{head_path} does not exist", param_hint="'--value-head'")
    head = load_value_head(policy, head_path) if head_path.is_file() else None
    sampling = SamplingParams(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed
    )
    (episode,) = play_episodes(
        policy, config.env, [config.seed], sampling, head, parse_world_options(config.world_options)
    )
    path = save_episodes([episode], Path(config.out) / "episode.jsonl")
    replay = episode.info["replay"]
    Console().print(
        f"{config.env} seed {config.seed}: {len(replay['steps'])} steps, return {episode.info['return']:.2f}, "
        f"success {replay['success']}; replay in {path}"
    )


def _check_world(name: str, options: str) -> None:
    from vlmrl.envs import world_spec
    from vlmrl.vldac.recipe import parse_world_options

    try:
        world_spec(name)
        parse_world_options(options)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
