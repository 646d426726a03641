"""The `vlmrl` command: a typer root that mounts each package's sub-app.

Each package that offers commands has a `cli.py` with a typer `app`; mounting is by name so
adding a method touches only this table. Packages whose commands are not built yet are still
listed and say so, exiting non-zero instead of pretending to work.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="Train and evaluate vision-language models with reinforcement learning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (command name, module holding a typer `app`, one-line help)
SUB_APPS = [
    ("data", "vlmrl.data_recipes.cli", "Generate datasets: shapes, pairs, charts, probe, masks, dedup."),
    ("pretrain", "vlmrl.pretrain", "Pretrain the embedded tiny default model on the shapes world."),
    ("eval", "vlmrl.evals.cli", "Evaluate a model on built-in or user tasks; lmms-eval runs."),
    ("rlvr", "vlmrl.rl.cli", "GRPO with verifiable rewards on any prompt dataset with answers."),
    ("samtok", "vlmrl.masktok.cli", "SAMTok: masks as two tokens; mask tokenizer training and RL."),
    ("vision-zero", "vlmrl.games.cli", "Vision-Zero: 'Who is the spy' self-play with Iterative-SPO."),
    ("ttrv", "vlmrl.ttrv.cli", "TTRV: test-time RL on unlabeled data."),
    ("mini-o3", "vlmrl.toolloop.cli", "Mini-o3: multi-turn visual search with a zoom tool."),
    ("vl-dac", "vlmrl.vldac.cli", "VL-DAC: token PPO with a step-level critic in synthetic worlds."),
    ("masters", "vlmrl.masters.cli", "Masters: masked-teacher progressive distillation and offline RL."),
    ("report", "vlmrl.report.cli", "Render a run directory as an HTML report."),
]


def _not_built(name: str, help_text: str) -> typer.Typer:
    stub = typer.Typer(help=f"{help_text} (not built yet)", invoke_without_command=True)

    @stub.callback()
    def _explain(context: typer.Context) -> None:
        typer.secho(f"'vlmrl {name}' is not built yet in this version of vlmrl.", fg="red", err=True)
        raise typer.Exit(code=2)

    return stub


for _name, _module, _help in SUB_APPS:
    try:
        _sub_app = importlib.import_module(_module).app
    except ModuleNotFoundError as _error:
        if _error.name is None or not _module.startswith(_error.name):
            raise
        _sub_app = _not_built(_name, _help)
    app.add_typer(_sub_app, name=_name, help=_help)


@app.command()
def info() -> None:
    """Print versions, the compute device and which optional backends are usable."""
    import importlib.metadata as metadata

    from rich.console import Console
    from rich.table import Table

    import vlmrl

    table = Table(title="vlmrl environment")
    table.add_column("component")
    table.add_column("status")
    table.add_row("vlmrl", vlmrl.__version__)
    for package in ("torch", "torchvision", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            table.add_row(package, metadata.version(package))
        except metadata.PackageNotFoundError:
            table.add_row(package, "[red]missing[/red]")
    import torch

    gpu = torch.cuda.is_available()
    table.add_row(
        "device", torch.cuda.get_device_name(0) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    )
    from vlmrl.model import precision

    facts = precision.describe("cuda" if gpu else "cpu")
    table.add_row("CPU capability", str(facts["cpu_capability"]))
    table.add_row(
        "native CPU bf16",
        ("yes" if facts["native_bf16"] else "no (bf16 would be emulated, about 100x slower)")
        + f" (by {facts['detected_by']}; ONEDNN_MAX_CPU_ISA {facts['onednn_max_cpu_isa']})",
    )
    table.add_row("training dtype (auto)", str(facts["training_dtype"]))
    for package, label in (("lmms_eval", "lmms-eval"), ("vllm", "vLLM")):
        usable = importlib.util.find_spec(package) is not None
        note = "usable" if usable else "not installed"
        if package == "vllm" and usable and not gpu:
            note = "installed, but needs a GPU (HF generate is used)"
        table.add_row(label, note)
    Console().print(table)


@app.command()
def demo(
    model: str = typer.Option("tiny", help="Model: 'tiny', a local directory or a hub id."),
    questions: int = typer.Option(4, help="How many generated scenes to ask about."),
    seed: int = typer.Option(0, help="Seed for the scenes and the sampler."),
    out: str = typer.Option("runs/demo", help="Directory for the demo's images and answers."),
) -> None:
    """Load a model and answer questions about freshly generated scenes."""
    from vlmrl.demo import run_demo

    run_demo(model=model, questions=questions, seed=seed, out=out)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
