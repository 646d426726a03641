"""`vlmrl rlvr`: GRPO with verifiable rewards on any prompt dataset with answers.

The command is the sub-app's callback, so options follow `vlmrl rlvr` directly
(`vlmrl rlvr --model tiny --data shapes-qa`), with no sub-command name in between.
"""

from __future__ import annotations

from typing import Any

import typer

from vlmrl.config import command
from vlmrl.rl.rlvr import RLVRConfig

app = typer.Typer(help="GRPO with verifiable rewards on any prompt dataset with answers.")


class _AsCallback:
    """Lets `config.command` register a function as the app's own callback."""

    def __init__(self, target: typer.Typer):
        self.target = target

    def command(self, name: str, help: str | None = None) -> Any:
        return self.target.callback(invoke_without_command=True, help=help)


@command(_AsCallback(app), RLVRConfig, name="rlvr")
def rlvr(config: RLVRConfig) -> None:
    """Train with GRPO on prompts with answers; held-out accuracy before and after."""
    from rich.console import Console

    from vlmrl.rl.rlvr import run_rlvr

    results = run_rlvr(config)
    if results["before"] is None or results["after"] is None:
        Console().print(
            f"trained {results['steps']} steps (no held-out measurement: --eval-size 0); run in {config.out}"
        )
        return
    Console().print(
        f"held-out accuracy {results['before']['accuracy']:.3f} -> {results['after']['accuracy']:.3f} "
        f"(format {results['before']['format_rate']:.2f} -> {results['after']['format_rate']:.2f}); "
        f"results in {config.out}/results.json"
    )
