"""Charts: matplotlib bar/line/pie/scatter charts of random tables, with QA computed from the table.

Values are drawn distinct so "which is highest" has one answer, are printed on the chart
(bars, points, wedges) so every answer can be read off the image, and the y axis has a fixed
range so that changing one value moves only that bar (which the pairs recipe relies on).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlmrl.config import option
from vlmrl.data_recipes.recipe import Recipe, RecipeConfig
from vlmrl.data_recipes.shapes import record_rng

KINDS = ("bar", "line", "pie", "scatter")
QUESTION_TYPES = ("max", "min", "difference", "trend", "value_at")
CATEGORY_SETS = (
    ("apples", "pears", "plums", "grapes", "kiwis", "limes", "figs", "dates"),
    ("Oslo", "Rome", "Lima", "Cairo", "Tokyo", "Quito", "Delhi", "Paris"),
    ("cats", "dogs", "birds", "fish", "frogs", "mice", "bees", "owls"),
    ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"),
)
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
PALETTE_NAMES = ("red", "blue", "green", "orange", "purple", "brown", "pink", "cyan")
VALUE_LIMIT = 100  # values are integers in [1, VALUE_LIMIT); the y axis is fixed to [0, 1.15 * limit]
TITLES = {"bar": "Counts by {}", "line": "Yearly totals", "pie": "Share by {}", "scatter": "Measurements"}


def random_table(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    """A chart specification: kind, x labels, y values, colours, title (and trend for line/scatter)."""
    if kind not in KINDS:
        raise ValueError(f"unknown chart kind {kind!r}; expected one of {KINDS}")
    count = int(rng.integers(3, 7)) if kind != "scatter" else int(rng.integers(6, 11))
    if kind == "line":
        first_year = int(rng.integers(2000, 2016))
        labels = [str(first_year + i) for i in range(count)]
    elif kind == "scatter":
        labels = [str(x) for x in sorted(rng.choice(np.arange(1, 21), size=count, replace=False).tolist())]
    else:
        words = CATEGORY_SETS[int(rng.integers(len(CATEGORY_SETS)))]
        labels = [words[i] for i in sorted(rng.choice(len(words), size=count, replace=False).tolist())]
    trend = None
    if kind in ("line", "scatter"):
        # A clear trend: a slope well away from zero plus noise that cannot flip it.
        trend = "increasing" if rng.integers(2) else "decreasing"
        slope = rng.uniform(6.0, 12.0) * (1 if trend == "increasing" else -1)
        positions = np.arange(count) if kind == "line" else np.array([int(x) for x in labels]) / 2.0
        start = 50 - slope * positions.mean()
        raw = start + slope * positions + rng.normal(0.0, 3.0, size=count)
        values = _distinct_integers(raw, rng)
    else:
        values = [int(v) for v in rng.choice(np.arange(5, VALUE_LIMIT), size=count, replace=False)]
    colour_indices = (
        rng.permutation(len(PALETTE))[:count] if kind in ("bar", "pie") else [int(rng.integers(8))]
    )
    return {
        "kind": kind,
        "labels": labels,
        "values": values,
        "colors": [PALETTE_NAMES[int(i)] for i in colour_indices],
        "title": TITLES[kind].format(_category_name(labels)),
        "trend": trend,
    }


def _category_name(labels: list[str]) -> str:
    for words, name in zip(CATEGORY_SETS, ("fruit", "city", "animal", "team")):
        if labels[0] in words:
            return name
    return "item"


def _distinct_integers(raw: np.ndarray, rng: np.random.Generator) -> list[int]:
    values = np.clip(np.round(raw), 2, VALUE_LIMIT - 2).astype(int).tolist()
    seen: set[int] = set()
    for i, value in enumerate(values):
        while value in seen:
            value += 1 if value < VALUE_LIMIT - 2 else -1
        seen.add(value)
        values[i] = value
    return values


def render_chart(table: dict[str, Any], resolution: int = 224, with_extents: bool = False):
    """PIL image of the chart; with `with_extents`, also pixel boxes of each bar, value text and tick label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(resolution / 100, resolution / 100), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.14, 0.16, 0.82, 0.72))
    font = max(4.0, resolution / 40)
    colours = [PALETTE[PALETTE_NAMES.index(c)] for c in table["colors"]]
    labels, values, kind = table["labels"], table["values"], table["kind"]
    artists: dict[str, list] = {"element": [], "value": [], "label": []}
    if kind == "bar":
        positions = np.arange(len(labels))
        bars = axes.bar(positions, values, color=colours, width=0.7)
        axes.set_ylim(0, VALUE_LIMIT * 1.15)
        axes.set_xticks(positions, labels, fontsize=font)
        for bar, value in zip(bars, values):
            artists["element"].append(bar)
            artists["value"].append(
                axes.text(
                    bar.get_x() + bar.get_width() / 2, value + 1.5, str(value), ha="center", fontsize=font
                )
            )
    elif kind == "line":
        positions = np.arange(len(labels))
        axes.plot(positions, values, color=colours[0], marker="o", markersize=font / 2, linewidth=1.2)
        axes.set_ylim(0, VALUE_LIMIT * 1.15)
        axes.set_xticks(positions, labels, fontsize=font)
        for x, value in zip(positions, values):
            artists["value"].append(axes.text(x, value + 4, str(value), ha="center", fontsize=font))
    elif kind == "pie":
        total = sum(values)
        wedges, _ = axes.pie(values, colors=colours, startangle=90, counterclock=False)
        for wedge, label, value in zip(wedges, labels, values):
            angle = np.deg2rad((wedge.theta1 + wedge.theta2) / 2)
            share = round(100 * value / total)
            axes.text(0.62 * np.cos(angle), 0.62 * np.sin(angle), f"{share}%", ha="center", fontsize=font)
            axes.text(
                1.22 * np.cos(angle), 1.22 * np.sin(angle), label, ha="center", va="center", fontsize=font
            )
        axes.set_aspect("equal")
    elif kind == "scatter":
        xs = [int(x) for x in labels]
        axes.scatter(xs, values, color=colours[0], s=font * 3)
        axes.set_ylim(0, VALUE_LIMIT * 1.15)
        axes.set_xlim(0, 21)
        for x, value in zip(xs, values):
            axes.text(x, value + 4, str(value), ha="center", fontsize=font * 0.85)
    else:
        raise ValueError(f"unknown chart kind {kind!r}; expected one of {KINDS}")
    axes.set_title(table["title"], fontsize=font * 1.1)
    axes.tick_params(labelsize=font)
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    image = Image.fromarray(rgba[..., :3].copy(), "RGB")
    if not with_extents:
        return image
    renderer = figure.canvas.get_renderer()
    height = rgba.shape[0]

    def box(artist) -> list[int]:
        extent = artist.get_window_extent(renderer)
        return [
            int(np.floor(extent.x0)),
            int(np.floor(height - extent.y1)),
            int(np.ceil(extent.x1)) + 1,
            int(np.ceil(height - extent.y0)) + 1,
        ]

    if kind in ("bar", "line"):
        artists["label"] = list(axes.get_xticklabels())
    extents = {name: [box(a) for a in items] for name, items in artists.items()}
    return image, extents


def chart_question(
    table: dict[str, Any], question_type: str, rng: np.random.Generator
) -> dict[str, str] | None:
    """A question of `question_type` about the table, answered from the table; None if it does not apply."""
    labels, values, kind = table["labels"], table["values"], table["kind"]
    noun = {"line": "year", "scatter": "x value"}.get(kind, "category")
    if kind == "pie":
        total = sum(values)
        values = [round(100 * v / total) for v in values]
        if len(set(values)) < len(values):
            return None
    if question_type == "max":
        return {"question": f"Which {noun} has the highest value?", "answer": labels[int(np.argmax(values))]}
    if question_type == "min":
        return {"question": f"Which {noun} has the lowest value?", "answer": labels[int(np.argmin(values))]}
    if question_type == "difference":
        i, j = (int(k) for k in rng.choice(len(labels), size=2, replace=False))
        unit = " percentage points" if kind == "pie" else ""
        return {
            "question": f"By how much{unit} does the value of {labels[i]} exceed that of {labels[j]}? "
            "Answer with a number (negative if it is smaller).",
            "answer": str(values[i] - values[j]),
        }
    if question_type == "trend":
        if table.get("trend") is None:
            return None
        return {"question": "Is the overall trend increasing or decreasing?", "answer": table["trend"]}
    if question_type == "value_at":
        i = int(rng.integers(len(labels)))
        suffix = " (in percent)" if kind == "pie" else ""
        at = f"x = {labels[i]}" if kind == "scatter" else labels[i]
        return {"question": f"What is the value at {at}{suffix}?", "answer": str(values[i])}
    raise ValueError(f"unknown chart question type {question_type!r}; expected one of {QUESTION_TYPES}")


def chart_qa_record(index: int, seed: int, resolution: int = 224) -> dict[str, Any]:
    rng = record_rng(seed, index, stream=1)
    kind = KINDS[index % len(KINDS)]
    table = random_table(rng, kind)
    question = None
    while question is None:
        question_type = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
        question = chart_question(table, question_type, rng)
        if question is None and kind == "pie":  # rounding collided two shares: draw a new table
            table = random_table(rng, kind)
    image = render_chart(table, resolution)
    pairs = ", ".join(f"{label}: {value}" for label, value in zip(table["labels"], table["values"]))
    return {
        "id": f"charts-{seed}-{index}",
        "image": image,
        "question": question["question"],
        "answer": question["answer"],
        "question_type": question_type,
        "caption": f"A {kind} chart titled '{table['title']}' with values {pairs}.",
        "scene": json.dumps(table, sort_keys=True),
        "table": json.dumps({"labels": table["labels"], "values": table["values"]}),
        "chart_kind": kind,
    }


def chart_qa_records(n: int, seed: int, resolution: int = 224, start: int = 0) -> Iterator[dict[str, Any]]:
    """Records start..start+n-1 of the chart QA stream; chart kinds cycle bar, line, pie, scatter.

    Keys: id, image, question, answer, question_type, caption, scene (chart spec JSON), table
    (JSON {labels, values}), chart_kind.
    """
    for index in range(start, start + n):
        yield chart_qa_record(index, seed, resolution)


def image_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ChartsConfig(RecipeConfig):
    """`vlmrl data charts`: matplotlib charts of random tables with QA computed from the table."""

    out: str = option("data/charts", help="Output directory.")
    resolution: int = option(224, help="Image side in pixels (text needs >= 224 to be legible).")


def _charts_record(index: int, config: ChartsConfig) -> dict[str, Any]:
    return chart_qa_record(index, config.seed, config.resolution)


def _charts_features(config: ChartsConfig):
    from datasets import Features, Image, Value

    text = Value("string")
    names = ("id", "question", "answer", "question_type", "caption", "scene", "table", "chart_kind")
    return Features({"image": Image(), **{name: text for name in names}})


def _charts_tile(record: dict[str, Any]) -> tuple[Image.Image, str]:
    return record["image"], f"{record['question']} -> {record['answer']}"


CHARTS_RECIPE = Recipe(
    name="charts",
    version="1",
    record=_charts_record,
    features=_charts_features,
    tile=_charts_tile,
    count_columns=("question_type", "chart_kind"),
)
