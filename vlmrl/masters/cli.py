"""`vlmrl masters generate|distill|eval`: Masters' offline data, distillation, evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from vlmrl.config import command, option
from vlmrl.masters.recipe import GenerateConfig, MastersConfig

app = typer.Typer(
    help="Masters: masked-teacher progressive distillation with offline RL.", no_args_is_help=True
)


@dataclass
class EvalConfig:
    """Held-out shapes-qa accuracy (greedy, bootstrap interval) of a teacher, student or run."""

    model: str = option("tiny", help="'tiny', 'tiny-student', a run's model/ directory or a hub id.")
    teacher: str = option("tiny", help="The teacher 'tiny-student' is built from.")
    student_layers: str = option("0", help="tiny-student: the teacher's language layers it keeps.")
    out: str = option("runs/masters-eval", help="Evaluation directory (predictions, results.json).")
    eval_size: int = option(400, help="Held-out questions.")
    eval_seed: int = option(1000, help="Seed of the held-out questions.")
    min_objects: int = option(1, help="shapes-qa: fewest objects per scene.")
    max_objects: int = option(2, help="shapes-qa: most objects per scene.")
    resolution: int = option(168, help="shapes-qa image side in pixels.")
    seed: int = option(0, help="Seed of the bootstrap intervals.")


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


@command(app, GenerateConfig, name="generate")
def generate(config: GenerateConfig) -> None:
    """Pre-generate masked-teacher and student responses per stage (resumable)."""
    from vlmrl.masters.recipe import run_generate

    try:
        summary = run_generate(config)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(
        f"{summary['questions']} questions in {summary['parts']} parts ({summary['parts_written_now']} written now) "
        f"under {config.data_dir}"
    )


@command(app, MastersConfig, name="distill")
def distill(config: MastersConfig) -> None:
    """Train the student on the offline data with Masters, or a baseline (--method)."""
    from vlmrl.masters.recipe import run_distill

    try:
        results = run_distill(config)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    before, after = results["before"], results["after"]
    if before is None or after is None:  # --eval-size 0
        typer.echo(f"{config.method}: {results['student_updates']} student updates; results in {config.out}")
        return
    typer.echo(
        f"{config.method}: held-out accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f} "
        f"(95% interval {after['interval'][0]:.3f}-{after['interval'][1]:.3f}) after "
        f"{results['student_updates']} student updates; results in {config.out}/results.json"
    )


@command(app, EvalConfig, name="eval")
def evaluate(config: EvalConfig) -> None:
    """Held-out accuracy of one model on the scenes Masters trains on."""
    from pathlib import Path

    from vlmrl.masters.recipe import run_eval
    from vlmrl.masters.student import load_student

    try:
        model = load_student(config.model, config.teacher, config.student_layers)
        result = run_eval(model, config, Path(config.out))
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    low, high = result["interval"]
    typer.echo(f"{config.model}: accuracy {result['accuracy']:.3f} (95% interval {low:.3f}-{high:.3f})")
