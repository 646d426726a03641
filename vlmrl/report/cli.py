"""`vlmrl report RUN_DIR [--open]`: write RUN_DIR/report.html and print its path.

The command is the sub-app's callback, so the run directory follows `vlmrl report` directly.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

# A callback app is a click group, which stops reading options at the first argument; the
# run directory comes first, so options after it must still be read as options.
app = typer.Typer(
    help="Render a run directory as an HTML report.", context_settings={"allow_interspersed_args": True}
)


def open_in_browser(path: Path) -> bool:
    """Open the page in the user's browser when one is registered; False when there is none."""
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    return bool(browser.open(path.resolve().as_uri()))


@app.callback(invoke_without_command=True)
def report(
    run_directory: Path = typer.Argument(
        ..., help="A run directory (runs/NAME) written by any vlmrl command."
    ),
    open_page: bool = typer.Option(
        False, "--open", help="Open the report in a browser when one is available."
    ),
    samples_per_file: int = typer.Option(
        32, help="Most episodes shown per samples/*.jsonl file (whole groups are kept together)."
    ),
    watch: float = typer.Option(
        0.0, help="Rebuild every this many seconds until interrupted (follow a run in progress); 0: once."
    ),
) -> None:
    """Write RUN_DIR/report.html: evaluation tables, training curves, replays of saved episodes."""
    from vlmrl.report.page import build_report

    if not run_directory.is_dir():
        raise typer.BadParameter(
            f"{run_directory} is not a directory (expected a run directory such as runs/NAME)",
            param_hint="'RUN_DIR'",
        )
    if samples_per_file < 1:
        raise typer.BadParameter(
            f"must be at least 1, got {samples_per_file}", param_hint="'--samples-per-file'"
        )
    path = build_report(run_directory, samples_per_file=samples_per_file)
    typer.echo(f"report: {path}")
    if open_page and not open_in_browser(path):
        typer.echo(f"no browser found; open file://{path.resolve()} yourself")
    try:
        while watch > 0:
            time.sleep(watch)
            build_report(run_directory, samples_per_file=samples_per_file)
    except KeyboardInterrupt:
        pass
