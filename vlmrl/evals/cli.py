"""`vlmrl eval ...`: run tasks, compare runs, list tasks, export to and run lmms-eval."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from vlmrl.config import command, option

app = typer.Typer(help="Evaluate a model on built-in or user tasks; lmms-eval runs.", no_args_is_help=True)


@dataclass
class EvalRunConfig:
    """`vlmrl eval run`: evaluate a model on tasks; rerunning into the same --out resumes."""

    model: str = option("tiny", help="Model: 'tiny', a saved checkpoint directory or a hub id.")
    tasks: str = option(
        "shapes-qa,charts-qa",
        help="Comma-separated tasks: registered names (see 'vlmrl eval list'), jsonl:FILE or hf:DIR[@SPLIT].",
    )
    limit: int | None = option(None, help="Evaluate at most this many documents per task.")
    batch_size: int = option(16, help="Documents per generate call.")
    out: str = option("runs/eval", help="Run directory: predictions cache, results.json, results.md.")
    max_new_tokens: int | None = option(None, help="Tokens per answer (default: each task's own).")
    temperature: float = option(0.0, help="0 is greedy decoding (deterministic); > 0 samples with --seed.")
    seed: int = option(0, help="Seed for sampling and for the bootstrap intervals.")
    resamples: int = option(1000, help="Bootstrap resamples for the 95% intervals.")
    device: str = option("auto", help="Device: auto, cpu, cuda, cuda:1, ...")
    dtype: str = option("auto", help="Weights dtype: auto, float32, bfloat16, float16.")
    response: str = option(
        "answer",
        help="User tasks (jsonl:/hf:): 'answer' scores the final answer (last <answer>, else last "
        "\\boxed{}, else the text); 'raw' scores the whole output.",
    )
    pre_prompt: str = option(
        "", help="User tasks: text put before each question (as lmms-eval's pre_prompt)."
    )
    post_prompt: str = option(
        "", help="User tasks: text put after each question (as lmms-eval's post_prompt, e.g. a format hint)."
    )


USER_TASK_PREFIXES = ("jsonl:", "hf:")


def _fail(error: Exception) -> None:
    typer.secho(f"error: {error}", fg="red", err=True)
    raise typer.Exit(code=2) from error


@command(app, EvalRunConfig, name="run")
def run(config: EvalRunConfig) -> None:
    """Evaluate a model on tasks and print the results table."""
    from vlmrl.evals.runner import EvalError, evaluate
    from vlmrl.evals.tasks import TaskError, get_task
    from vlmrl.model import SamplingParams

    user_options = {
        "response": config.response,
        "pre_prompt": config.pre_prompt,
        "post_prompt": config.post_prompt,
    }
    try:
        tasks = [
            get_task(spec, **user_options) if spec.startswith(USER_TASK_PREFIXES) else get_task(spec)
            for spec in [s.strip() for s in config.tasks.split(",") if s.strip()]
        ]
        if not tasks:
            raise TaskError("no tasks given")
    except TaskError as error:
        _fail(error)
    from vlmrl.model import VLM, ModelLoadError

    try:
        vlm = VLM.load(config.model, device=config.device, dtype=config.dtype)
    except ModelLoadError as error:
        _fail(error)
    sampling = None
    if config.temperature > 0 or config.max_new_tokens is not None:
        sampling = SamplingParams(
            max_new_tokens=config.max_new_tokens or 32, temperature=config.temperature, seed=config.seed
        )
    try:
        evaluate(
            vlm,
            tasks,
            limit=config.limit,
            batch_size=config.batch_size,
            out_dir=config.out,
            sampling=sampling,
            seed=config.seed,
            resamples=config.resamples,
        )
    except (EvalError, TaskError) as error:
        _fail(error)
    from pathlib import Path

    typer.echo((Path(config.out) / "results.md").read_text())


@app.command("compare")
def compare(
    run_a: str = typer.Argument(..., help="First run directory (the baseline, A)."),
    run_b: str = typer.Argument(..., help="Second run directory (B)."),
    resamples: int = typer.Option(1000, help="Paired bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Print B - A per task and metric with paired-bootstrap 95% intervals over shared documents."""
    from vlmrl.evals.results import compare_runs, comparison_table

    try:
        rows = compare_runs(run_a, run_b, resamples=resamples, seed=seed)
    except (FileNotFoundError, ValueError) as error:
        _fail(error)
    typer.echo(comparison_table(rows, run_a, run_b))


@app.command("list")
def list_tasks() -> None:
    """List the registered tasks."""
    from vlmrl.evals.tasks import task_descriptions

    for name, description in task_descriptions().items():
        typer.echo(f"{name:16s} {description}")


@app.command("export-lmms")
def export_lmms(
    tasks: str = typer.Option(
        "shapes-qa,charts-qa,spy-vote", help="Comma-separated single-turn tasks to export."
    ),
    out: str = typer.Option("lmms_tasks", help="Folder for the task YAMLs and data (use as --include_path)."),
    limit: int | None = typer.Option(None, help="Export at most this many documents per task."),
) -> None:
    """Export tasks as lmms-eval task YAMLs + HF datasets, usable with lmms-eval --include_path."""
    from vlmrl.evals.lmms_export import export_tasks
    from vlmrl.evals.tasks import TaskError

    try:
        paths = export_tasks(tasks, out, limit)
    except TaskError as error:
        _fail(error)
    for path in paths:
        typer.echo(f"{path.stem:24s} {path}")
    typer.echo(f"run: lmms-eval --model vlmrl --model_args pretrained=tiny --include_path {out} --tasks ...")


@app.command("lmms")
def lmms(
    model: str = typer.Option(
        "tiny", help="Model for --model_args pretrained=...: 'tiny' or a checkpoint dir."
    ),
    tasks: str = typer.Option(
        "shapes-qa",
        help="Comma-separated: our task names (exported on the fly) and/or lmms-eval task names.",
    ),
    include_path: str | None = typer.Option(None, help="Extra folder of lmms-eval task YAMLs."),
    limit: int | None = typer.Option(None, help="Documents per task (lmms-eval --limit)."),
    batch_size: int = typer.Option(1, help="Requests per generate call."),
    out: str = typer.Option("runs/lmms", help="Folder for exported tasks and lmms_results.json."),
    device: str = typer.Option("auto", help="Device for the model."),
    response: str = typer.Option(
        "answer",
        help="What tasks score: 'answer' (last <answer>, else last \\boxed{}, else the text) or "
        "'raw' (the whole response); for stock lmms-eval tasks and exported jsonl:/hf: tasks.",
    ),
) -> None:
    """Run lmms-eval with the `vlmrl` model class (offline; our tasks are exported first)."""
    from pathlib import Path

    from vlmrl.evals.lmms_adapter import RESPONSE_MODES
    from vlmrl.evals.lmms_export import export_task, run_lmms
    from vlmrl.evals.tasks import TaskError, task_names

    if response not in RESPONSE_MODES:
        _fail(ValueError(f"--response {response!r}: expected one of {list(RESPONSE_MODES)}"))
    ours = set(task_names())
    names, exported = [], Path(out) / "lmms_tasks"
    try:
        for spec in [s.strip() for s in tasks.split(",") if s.strip()]:
            if spec.startswith(USER_TASK_PREFIXES):
                names.append(export_task(spec, exported, limit, options={"response": response}).stem)
            elif spec in ours:
                names.append(export_task(spec, exported, limit).stem)
            else:
                names.append(spec)
    except TaskError as error:
        _fail(error)
    include = [str(exported)] if exported.exists() else []
    if include_path:
        include.append(include_path)
    results = run_lmms(
        model,
        names,
        include_path=include or None,
        limit=limit,
        batch_size=batch_size,
        output_path=out,
        device=device,
        response=response,
    )
    typer.echo("| task | metric | value |\n|---|---|---:|")
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in key:
                typer.echo(f"| {task} | {key.split(',')[0]} | {value:.4f} |")
    written = results["written"]
    typer.echo(f"lmms-eval results: {written['results']}")
    for task, path in written["samples"].items():
        typer.echo(f"lmms-eval samples ({task}): {path}")
    typer.echo(f"summary: {written['summary']}")
