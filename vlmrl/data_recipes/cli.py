"""`vlmrl data ...`: one command per recipe, each built from its config dataclass."""

from __future__ import annotations

import typer

from vlmrl.config import command
from vlmrl.data_recipes.charts import CHARTS_RECIPE, ChartsConfig
from vlmrl.data_recipes.dedup import DEDUP_RECIPE, DedupConfig
from vlmrl.data_recipes.masks import MASKS_RECIPE, MasksConfig
from vlmrl.data_recipes.pairs import PAIRS_RECIPE, PairsConfig
from vlmrl.data_recipes.probe import PROBE_RECIPE, ProbeConfig
from vlmrl.data_recipes.shapes import SHAPES_RECIPE, ShapesConfig

app = typer.Typer(help="Generate datasets: shapes, pairs, charts, probe, masks, dedup.", no_args_is_help=True)


def _build(recipe, config) -> None:
    from vlmrl.data_recipes.masks import CocoError
    from vlmrl.data_recipes.recipe import RecipeError, build

    try:
        build(recipe, config)
    except (RecipeError, CocoError) as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(code=2) from error


@command(app, ShapesConfig, name="shapes")
def shapes(config: ShapesConfig) -> None:
    """CLEVR-like scenes: images, scene graphs with COCO RLE masks, captions and verifiable QA."""
    _build(SHAPES_RECIPE, config)


@command(app, ChartsConfig, name="charts")
def charts(config: ChartsConfig) -> None:
    """Bar/line/pie/scatter charts of random tables with QA computed from the table."""
    _build(CHARTS_RECIPE, config)


@command(app, ProbeConfig, name="probe")
def probe(config: ProbeConfig) -> None:
    """Visual search: a large cluttered canvas with one small target whose attribute is asked."""
    _build(PROBE_RECIPE, config)


@command(app, PairsConfig, name="pairs")
def pairs(config: PairsConfig) -> None:
    """Image pairs differing by one recorded edit, from shapes, charts or a folder of your images."""
    _build(PAIRS_RECIPE, config)


@command(app, MasksConfig, name="masks")
def masks(config: MasksConfig) -> None:
    """Per-object masks (COCO RLE) from shapes scenes or a COCO instance file."""
    _build(MASKS_RECIPE, config)


@command(app, DedupConfig, name="dedup")
def dedup(config: DedupConfig) -> None:
    """Drop near-duplicate images from a folder (faiss) and mine hard pairs."""
    _build(DEDUP_RECIPE, config)
