"""Visual probe: a large cluttered canvas with one small target whose attribute is asked.

In the spirit of the Visual Probe dataset: answering needs finding the target first (a zoom
helps), so the target's box is recorded and a zoom trajectory can be checked against it.
The target is the only glyph of its shape (when its colour is asked) or the only one of its
colour (when its shape is asked), so the question has exactly one referent. Difficulty sets
the target size relative to the canvas and how many distractors crowd it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vlmrl.config import option
from vlmrl.data_recipes.recipe import Recipe, RecipeConfig
from vlmrl.data_recipes.shapes import COLOR_RGB, record_rng

DISTRACTOR_SHAPES = ("circle", "square", "triangle")
TARGET_SHAPES = ("star", "cross", "diamond", "ring")
GLYPH_COLORS = ("red", "blue", "green", "yellow", "purple", "cyan", "brown", "gray")
# (target side as a fraction of the canvas, number of distractors)
DIFFICULTY = {"easy": (0.08, 12), "medium": (0.045, 40), "hard": (0.025, 90)}
QUESTION_TYPES = ("target_color", "target_shape")


def _polygon(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [
            (cx - half, cy - half),
            (cx + half, cy - half),
            (cx + half, cy + half),
            (cx - half, cy + half),
        ]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "diamond":
        return [(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = half if k % 2 == 0 else half * 0.45
            angle = -np.pi / 2 + k * np.pi / 5
            points.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle)))
        return points
    if shape == "cross":
        t = half * 0.36
        return [
            (cx - t, cy - half), (cx + t, cy - half), (cx + t, cy - t), (cx + half, cy - t),
            (cx + half, cy + t), (cx + t, cy + t), (cx + t, cy + half), (cx - t, cy + half),
            (cx - t, cy + t), (cx - half, cy + t), (cx - half, cy - t), (cx - t, cy - t),
        ]  # fmt: skip
    return None


def draw_glyph(draw: ImageDraw.ImageDraw, shape: str, color: str, cx: float, cy: float, half: float) -> None:
    fill = COLOR_RGB[color]
    outline = tuple(int(c * 0.55) for c in fill)
    if shape == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill, outline=outline)
    elif shape == "ring":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill, outline=outline)
        inner = half * 0.5
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=(235, 232, 225))
    else:
        polygon = _polygon(shape, cx, cy, half)
        if polygon is None:
            raise ValueError(f"unknown glyph shape {shape!r}")
        draw.polygon(polygon, fill=fill, outline=outline)


def _cluttered_background(rng: np.random.Generator, canvas: int) -> Image.Image:
    """Smooth coloured noise: texture a search has to ignore."""
    coarse = rng.uniform(185, 245, size=(6, 6, 3)).astype(np.uint8)
    background = Image.fromarray(coarse, "RGB").resize((canvas, canvas), Image.BICUBIC)
    grain = rng.normal(0, 6, size=(canvas, canvas, 1))
    return Image.fromarray(np.clip(np.asarray(background, dtype=np.float64) + grain, 0, 255).astype(np.uint8))


def probe_record(index: int, seed: int, canvas: int = 448, difficulty: str = "easy") -> dict[str, Any]:
    if difficulty not in DIFFICULTY:
        raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {tuple(DIFFICULTY)}")
    if canvas < 64:
        raise ValueError(f"canvas must be at least 64 pixels, got {canvas}")
    rng = record_rng(seed, index, stream=2)
    fraction, distractor_count = DIFFICULTY[difficulty]
    question_type = QUESTION_TYPES[index % len(QUESTION_TYPES)]
    target_shape = TARGET_SHAPES[int(rng.integers(len(TARGET_SHAPES)))]
    target_color = GLYPH_COLORS[int(rng.integers(len(GLYPH_COLORS)))]
    half = max(3.0, fraction * canvas / 2)
    margin = half + 2
    cx, cy = rng.uniform(margin, canvas - margin, size=2)
    target_box = [
        int(np.floor(cx - half)),
        int(np.floor(cy - half)),
        int(np.ceil(cx + half)) + 1,
        int(np.ceil(cy + half)) + 1,
    ]

    image = _cluttered_background(rng, canvas)
    draw = ImageDraw.Draw(image)
    distractors = []
    other_colors = [c for c in GLYPH_COLORS if c != target_color]
    for _ in range(distractor_count):
        size = half * rng.uniform(0.8, 1.6)
        for _attempt in range(20):
            x, y = rng.uniform(size + 1, canvas - size - 1, size=2)
            # Distractors keep clear of the target so the target is whole and unambiguous.
            if abs(x - cx) > size + half + 2 or abs(y - cy) > size + half + 2:
                break
        else:
            continue
        if question_type == "target_color":
            # The target is the only one of its shape; distractor colours are free.
            shape, color = DISTRACTOR_SHAPES[int(rng.integers(3))], GLYPH_COLORS[int(rng.integers(8))]
        else:
            # The target is the only one of its colour; distractors may share its shape.
            shape = (DISTRACTOR_SHAPES + TARGET_SHAPES)[int(rng.integers(7))]
            color = other_colors[int(rng.integers(len(other_colors)))]
        draw_glyph(draw, shape, color, x, y, size)
        distractors.append(
            {
                "shape": shape,
                "color": color,
                "center": [round(float(x), 2), round(float(y), 2)],
                "half_size": round(float(size), 2),
            }
        )
    draw_glyph(draw, target_shape, target_color, cx, cy, half)

    if question_type == "target_color":
        question, answer = f"What color is the {target_shape}?", target_color
    else:
        question, answer = f"What shape is the {target_color} object?", target_shape
    target = {
        "shape": target_shape,
        "color": target_color,
        "center": [round(float(cx), 2), round(float(cy), 2)],
        "half_size": round(float(half), 2),
    }
    return {
        "id": f"probe-{difficulty}-{seed}-{index}",
        "image": image,
        "question": question,
        "answer": answer,
        "question_type": question_type,
        "caption": f"A cluttered canvas with {len(distractors)} distractors and one {target_color} {target_shape}.",
        "scene": json.dumps({"target": target, "distractors": distractors, "canvas": canvas}, sort_keys=True),
        "target_box": target_box,
        "difficulty": difficulty,
    }


def probe_records(
    n: int, seed: int, canvas: int = 448, difficulty: str = "easy", start: int = 0
) -> Iterator[dict[str, Any]]:
    """Records start..start+n-1: id, image, question, answer, question_type, caption, scene,
    target_box [x0, y0, x1, y1] in pixels (exclusive ends), difficulty."""
    for index in range(start, start + n):
        yield probe_record(index, seed, canvas, difficulty)


@dataclass
class ProbeConfig(RecipeConfig):
    """`vlmrl data probe`: large cluttered canvases with one small target (visual search)."""

    out: str = option("data/probe", help="Output directory.")
    canvas: int = option(448, help="Canvas side in pixels (448 for the tiny model, 2048 for real ones).")
    difficulty: str = option("easy", help="easy | medium | hard: target size and clutter.")


def _probe_record(index: int, config: ProbeConfig) -> dict[str, Any]:
    return probe_record(index, config.seed, config.canvas, config.difficulty)


def _probe_features(config: ProbeConfig):
    from datasets import Features, Image, Sequence, Value

    text = Value("string")
    names = ("id", "question", "answer", "question_type", "caption", "scene", "difficulty")
    return Features(
        {"image": Image(), "target_box": Sequence(Value("int32"), length=4), **{k: text for k in names}}
    )


def _probe_tile(record: dict[str, Any]) -> tuple[Image.Image, str]:
    image = record["image"].copy()
    ImageDraw.Draw(image).rectangle(
        record["target_box"], outline=(255, 0, 0), width=max(1, image.width // 200)
    )
    return image, f"{record['question']} -> {record['answer']}"


def _probe_prepare(config: ProbeConfig):
    if config.difficulty not in DIFFICULTY:
        from vlmrl.data_recipes.recipe import RecipeError

        raise RecipeError(f"--difficulty must be one of {tuple(DIFFICULTY)}, got {config.difficulty!r}")
    return config, {}


PROBE_RECIPE = Recipe(
    name="probe",
    version="1",
    record=_probe_record,
    features=_probe_features,
    tile=_probe_tile,
    count_columns=("question_type", "answer"),
    prepare=_probe_prepare,
)
