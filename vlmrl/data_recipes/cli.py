"""`vlmrl data ...`: one command per recipe, each built from its config dataclass."""

from __future__ import annotations

import typer

from vlmrl.config import command
from vlmrl.data_recipes.shapes import SHAPES_RECIPE, ShapesConfig

app = typer.Typer(help="Generate datasets: shapes, pairs, charts, probe, masks, dedup.", no_args_is_help=True)


def _build(recipe, config) -> None:
    from vlmrl.data_recipes.recipe import RecipeError, build

    try:
        build(recipe, config)
    except RecipeError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(code=2) from error


@command(app, ShapesConfig, name="shapes")
def shapes(config: ShapesConfig) -> None:
    """CLEVR-like scenes: images, scene graphs with COCO RLE masks, captions and verifiable QA."""
    _build(SHAPES_RECIPE, config)
