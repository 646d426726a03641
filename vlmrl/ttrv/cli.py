"""`vlmrl ttrv adapt|eval`: test-time RL on a task's unlabeled items, and its evaluation.

adapt: evaluate (greedy, and self-consistency at N_vote), adapt on the unlabeled items with
       TTRV (or TTRL's majority reward), evaluate again on the full set; save the model.
eval:  greedy accuracy and self-consistency at N_vote of any model on a task, no training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from vlmrl.config import command, option
from vlmrl.ttrv.recipe import TTRVConfig

app = typer.Typer(help="TTRV: test-time RL on unlabeled data.", no_args_is_help=True)


@dataclass
class TTRVEvalConfig:
    """Greedy accuracy and self-consistency (majority of N_vote samples) on a harness task."""

    model: str = option("tiny", help="Model: 'tiny', a local directory (e.g. runs/ttrv/model) or a hub id.")
    task: str = option("shapes-recognition", help="Harness task: a built-in name, jsonl:FILE or hf:DIR.")
    task_options: list[str] = option(
        help="Built-in task options as KEY=VALUE; repeat the flag.", factory=list
    )
    votes: int = option(8, help="N_vote for self-consistency (0: greedy only).")
    temperature: float = option(1.0, help="Sampling temperature of the votes.")
    out: str = option("runs/ttrv-eval", help="Output directory (predictions, results.json).")
    batch_size: int = option(32, help="Documents per generate call.")
    seed: int = option(0, help="Seed of the vote samples and the bootstrap.")
    threads: int = option(0, help="torch threads (0: torch's default).")


@command(app, TTRVConfig, name="adapt", configs_directory=Path(__file__).parent / "configs")
def adapt(config: TTRVConfig) -> None:
    """Adapt a model on a task's unlabeled items with TTRV; accuracy on the full set before and after."""
    from rich.console import Console

    from vlmrl.ttrv.recipe import run_ttrv

    try:
        results = run_ttrv(config)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    metric = results["metric"]
    if "before" not in results:  # --no-evaluation
        Console().print(f"adapted on {results['adapt_items']} items; results in {config.out}/results.json")
        return
    before, after = results["before"]["metrics"][metric], results["after"]["metrics"][metric]
    delta, (low, high) = results["gain"]
    line = f"{results['task']} {metric}: {before:.3f} -> {after:.3f} (gain {delta:+.3f}, 95% CI {low:+.3f}..{high:+.3f})"
    if results["self_consistency"] is not None:
        line += f"; self-consistency@{config.votes} {results['self_consistency']['metrics'][metric]:.3f}"
    Console().print(f"{line}; results in {config.out}/results.json")


@command(app, TTRVEvalConfig, name="eval")
def evaluate_command(config: TTRVEvalConfig) -> None:
    """Greedy and self-consistency accuracy of a model on a task (no training)."""
    import torch
    from rich.console import Console

    from vlmrl.evals import evaluate, get_task
    from vlmrl.evals.voting import self_consistency_task
    from vlmrl.model import VLM
    from vlmrl.ttrv.recipe import task_options

    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        task = get_task(config.task, **task_options(config.task_options))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="'--task'") from error
    tasks = [task] + (
        [self_consistency_task(task, config.votes, config.temperature, config.seed)] if config.votes else []
    )
    policy = VLM.load(config.model)
    results = evaluate(policy, tasks, out_dir=config.out, batch_size=config.batch_size, seed=config.seed)
    for name, outcome in results["tasks"].items():
        metric = outcome["primary_metric"]
        low, high = outcome["intervals"].get(metric, (float("nan"), float("nan")))
        Console().print(f"{name} {metric}: {outcome['metrics'][metric]:.3f} (95% CI {low:.3f}..{high:.3f})")
    Console().print(f"results in {config.out}/results.json")
