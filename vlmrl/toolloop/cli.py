"""`vlmrl mini-o3`: cold start, SFT, GRPO with the tool loop, evaluation, and search on one image.

vlmrl mini-o3 coldstart --out runs/mini-o3 --coldstart-examples 64   # write trajectories
vlmrl mini-o3 sft --out runs/mini-o3-sft                              # cold-start SFT only
vlmrl mini-o3 train --out runs/mini-o3                                # SFT, then RL, evals
vlmrl mini-o3 eval --model runs/mini-o3/model --out runs/mini-o3-eval
vlmrl mini-o3 search --model tiny --image FILE --question TEXT
vlmrl mini-o3 train --config qwen2.5-vl-7b --model PATH               # the reference settings
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from vlmrl.config import command, option
from vlmrl.toolloop.recipe import MiniO3Config

app = typer.Typer(help="Mini-o3: multi-turn visual search with a grounding tool.", no_args_is_help=True)
CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass
class ColdstartConfig(MiniO3Config):
    """Write cold-start trajectories (JSONL + PNG) for inspection or another SFT stack."""

    coldstart_examples: int = option(64, help="Trajectories to write.")


@dataclass
class SearchConfig(MiniO3Config):
    """Run the tool loop on one image and question, printing each turn."""

    image: str = option("", help="Image file to search.")
    question: str = option("", help="Question about the image.")
    temperature: float = option(0.0, help="Sampling temperature (0: greedy).")


@command(app, ColdstartConfig, name="coldstart", configs_directory=CONFIGS)
def coldstart(config: ColdstartConfig) -> None:
    """Write cold-start trajectories (direct, trial and error, refinement) from recorded boxes."""
    from vlmrl.toolloop.recipe import write_coldstart

    config.validate()
    path = write_coldstart(config, config.coldstart_examples)
    typer.echo(f"wrote {config.coldstart_examples} trajectories to {path}")


@command(app, MiniO3Config, name="sft", configs_directory=CONFIGS)
def sft(config: MiniO3Config) -> None:
    """Cold-start SFT only (vision frozen); saves the model to OUT/sft-model."""
    from vlmrl.runs import save_run_config
    from vlmrl.toolloop.recipe import load_policy, run_coldstart_sft

    config.validate()
    Path(config.out).mkdir(parents=True, exist_ok=True)
    save_run_config(Path(config.out), config)
    policy = load_policy(config)
    history = run_coldstart_sft(policy, config)
    path = policy.save(Path(config.out) / "sft-model")
    typer.echo(
        f"cold-start loss {history[-1]['loss']:.3f} after {config.coldstart_steps} steps; model in {path}"
    )


@command(app, MiniO3Config, name="train", configs_directory=CONFIGS)
def train(config: MiniO3Config) -> None:
    """Cold start (unless --coldstart-steps 0), then GRPO with the tool loop; evals before and after."""
    from vlmrl.toolloop.recipe import run_mini_o3

    results = run_mini_o3(config)
    if "after_rl" not in results:
        typer.echo(
            f"trained {results['steps']} RL steps, not evaluated (--eval-size 0); model in {config.out}/model"
        )
        return
    primary = results["primary"]
    typer.echo(
        f"mini-probe {primary} accuracy after SFT {results['after_sft'][primary]['accuracy']:.3f} -> "
        f"after RL {results['after_rl'][primary]['accuracy']:.3f} (greedy "
        f"{results['after_sft']['greedy']['accuracy']:.3f} -> {results['after_rl']['greedy']['accuracy']:.3f}); "
        f"curve {results['after_rl'][primary]['curve']}; results in {config.out}/results.json"
    )


@command(app, MiniO3Config, name="eval", configs_directory=CONFIGS)
def evaluate(config: MiniO3Config) -> None:
    """Mini-probe accuracy of --model and its accuracy against the turn budget (results.json, plot)."""
    from vlmrl.toolloop.recipe import run_eval

    config.validate()
    results = run_eval(config)["model"]
    for label, summary in results.items():
        typer.echo(f"{label}: accuracy {summary['accuracy']:.3f}, curve {summary['curve']}")
    typer.echo(f"results in {config.out}/results.json, plot in {config.out}/budget_curve.png")


@command(app, SearchConfig, name="search", configs_directory=CONFIGS)
def search_image(config: SearchConfig) -> None:
    """Search one user image: each turn's box, crop size and text, then the answer."""
    from PIL import Image, UnidentifiedImageError

    from vlmrl.model import SamplingParams
    from vlmrl.toolloop.recipe import load_policy, loop_limits
    from vlmrl.toolloop.rollout import default_tools, search

    if not config.question.strip():
        raise typer.BadParameter("--question is required", param_hint="'--question'")
    path = Path(config.image)
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file (expected an image)", param_hint="'--image'")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise typer.BadParameter(
            f"{path} is not a readable image ({error})", param_hint="'--image'"
        ) from error
    policy = load_policy(config)
    record = {"image": image, "question": config.question}
    sampling = SamplingParams(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed
    )
    limits = loop_limits(config, config.eval_turns)
    trajectory = search(
        policy, [record], sampling, default_tools(config.min_pixels, config.max_pixels), limits
    )[0]
    steps = {step["turn"]: step for step in trajectory.steps}
    for turn, generation in enumerate(trajectory.generations, start=1):
        typer.echo(f"turn {turn}: {generation.text}")
        step = steps.get(turn)
        if step is not None:
            if step.get("error"):
                typer.echo(f"  tool error: {step['error']}")
            else:
                box = ", ".join(f"{v:.2f}" for v in step["bbox"])
                typer.echo(
                    f"  crop [{box}] of {step['source']} -> {step['crop_size'][0]}x{step['crop_size'][1]} px"
                )
    ending = (
        "over-turn (budget spent)"
        if trajectory.overturn
        else ("no answer" if trajectory.answer is None else "")
    )
    typer.echo(f"answer: {trajectory.answer}" + (f" ({ending})" if ending else ""))
