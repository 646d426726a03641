"""Images of printed words and numbers, for teaching and testing a VLM to read text.

Each record is a pure function of (seed, index): a plain canvas with one to three short lines
(a number, a word, or a few words) in Pillow's built-in scalable font, and the question "What
is written in the image?" whose answer is the text, lines joined by spaces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmrl.data_recipes.shapes import record_rng

WORDS = (
    "red blue green yellow cat dog sun moon tree house river cloud apple stone light river bird "
    "fish book door window music paper glass water fire north south east west open close start "
    "stop left right large small seven twelve table chair road city train plane boat"
).split()
QUESTION = "What is written in the image?"


def random_text(rng: np.random.Generator) -> list[str]:
    """One to three lines: numbers of 1-4 digits, single words, or two-word phrases."""
    lines = []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(3))
        if kind == 0:
            lines.append(str(int(rng.integers(0, 10 ** int(rng.integers(1, 5))))))
        elif kind == 1:
            lines.append(str(WORDS[int(rng.integers(len(WORDS)))]))
        else:
            lines.append(" ".join(str(WORDS[int(i)]) for i in rng.integers(len(WORDS), size=2)))
    return lines


def render_text(lines: list[str], rng: np.random.Generator, resolution: int = 168) -> Image.Image:
    """Dark text on a light canvas (colours, size and place drawn from `rng`); every line fits."""
    background = tuple(int(v) for v in rng.integers(200, 256, size=3))
    ink = tuple(int(v) for v in rng.integers(0, 90, size=3))
    image = Image.new("RGB", (resolution, resolution), background)
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(resolution // 9, resolution // 6))
    while True:
        font = ImageFont.load_default(size=size)
        boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
        width = max(box[2] - box[0] for box in boxes)
        height = sum(box[3] - box[1] for box in boxes) + (len(lines) - 1) * size // 3
        if (width <= resolution - 8 and height <= resolution - 8) or size <= 8:
            break
        size -= 2
    x = int(rng.integers(4, max(5, resolution - width - 3)))
    y = int(rng.integers(4, max(5, resolution - height - 3)))
    for line, box in zip(lines, boxes):
        draw.text((x - box[0], y - box[1]), line, font=font, fill=ink)
        y += box[3] - box[1] + size // 3
    return image


def text_record(index: int, seed: int, resolution: int = 168) -> dict[str, Any]:
    rng = record_rng(seed, index, stream=3)
    lines = random_text(rng)
    return {
        "id": f"text-{seed}-{index}",
        "image": render_text(lines, rng, resolution),
        "question": QUESTION,
        "answer": " ".join(lines),
        "question_type": "read",
    }
