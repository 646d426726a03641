"""Data of the miniature: a VisualProbe-like search task, and cold-start trajectories.

Mini-probe canvases are a G x G mosaic of shapes-world tiles (each a full `render_scene` of
`tile` pixels): one tile holds the target, a lone object; some others hold one distractor of
another shape; the rest are empty floor. The question asks the target's colour or material,
naming it by its shape ("What color is the cube?"), so it has exactly one referent.

Why this shape for the tiny default: the model sees at most 168 x 168 pixels, so a 2x2 to 4x4
mosaic shrinks the target 2-4 times and mixes it with distractors, where the tiny cannot pick
out the named object; a crop of the target's tile is exactly a one-object scene at the
tiny's own resolution, the kind of image it reads colour and material from (its model card).
Difficulty sets the grid (target size relative to the canvas) and the distractor count, in
the spirit of VisualProbe's easy / medium / hard.

Cold start (the paper's diverse trajectories, written from each record's known target tile):
direct search (zoom on the target, answer), trial and error (a wrong tile first, then the
right one), depth-first refinement (a coarse region holding the target, then the target),
with the goal restated in every turn's `<think>` (goal maintenance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from vlmrl.data_recipes import shapes
from vlmrl.data_recipes.shapes import QUERY_TEMPLATES, record_rng
from vlmrl.toolloop.grounding import SEARCH_INSTRUCTION, GroundingTool, format_grounding

# difficulty -> (tiles per side, distractor objects)
DIFFICULTY = {"easy": (2, 0), "medium": (3, 1), "hard": (4, 3)}
QUESTION_ATTRIBUTES = ("color", "material")  # what the tiny reads off a one-object scene
PATTERNS = ("direct", "trial_and_error", "refinement")


def _tile_image(objects: list[shapes.SceneObject], tile: int) -> tuple[Image.Image, list[list[int]]]:
    scene = shapes.Scene(objects=objects)
    image, _, boxes = shapes.render_scene(scene, tile)
    return image, boxes


def probe_record(index: int, seed: int, difficulty: str = "easy", tile: int = 168) -> dict[str, Any]:
    """One mini-probe item: the canvas, question, answer and where the target is."""
    if difficulty not in DIFFICULTY:
        raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {tuple(DIFFICULTY)}")
    if tile < 56:
        raise ValueError(f"tile must be at least 56 pixels, got {tile}")
    grid, distractor_count = DIFFICULTY[difficulty]
    rng = record_rng(seed, index, stream=7)
    target = shapes.sample_scene(rng, 1, 1).objects[0]
    attribute = QUESTION_ATTRIBUTES[index % len(QUESTION_ATTRIBUTES)]
    cells = [int(c) for c in rng.permutation(grid * grid)]
    target_cell, distractor_cells = cells[0], cells[1 : 1 + distractor_count]
    canvas = Image.new("RGB", (grid * tile, grid * tile))
    other_shapes = [s for s in shapes.SHAPES if s != target.shape]
    distractors = []
    target_box = None
    for cell in range(grid * grid):
        row, column = divmod(cell, grid)
        if cell == target_cell:
            image, boxes = _tile_image([target], tile)
            x0, y0, x1, y1 = boxes[0]
            target_box = [column * tile + x0, row * tile + y0, column * tile + x1, row * tile + y1]
        elif cell in distractor_cells:
            scene = shapes.sample_scene(rng, 1, 1)
            obj = scene.objects[0]
            obj.shape = other_shapes[int(rng.integers(len(other_shapes)))]  # never the target's shape
            image, _ = _tile_image([obj], tile)
            distractors.append({"tile": [row, column], "object": shapes.describe(obj)})
        else:
            image, _ = _tile_image([], tile)
        canvas.paste(image, (column * tile, row * tile))
    row, column = divmod(target_cell, grid)
    return {
        "id": f"mini-probe-{difficulty}-{seed}-{index}",
        "image": canvas,
        "question": QUERY_TEMPLATES[attribute].format(target.shape),
        "answer": target.attribute(attribute),
        "question_type": attribute,
        "difficulty": difficulty,
        "grid": grid,
        "target": shapes.describe(target),
        "target_shape": target.shape,
        "target_tile": [row, column],
        "target_box": target_box,
        "distractors": distractors,
    }


def probe_records(
    n: int, seed: int, difficulties: tuple[str, ...] = ("easy", "medium", "hard"), tile: int = 168
) -> list[dict[str, Any]]:
    """n records, round robin over the difficulties (so small sets cover each)."""
    return [probe_record(i, seed, difficulties[i % len(difficulties)], tile) for i in range(n)]


def question_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The first user turn of a search episode: the canvas and the instruction."""
    text = SEARCH_INSTRUCTION.format(question=record["question"])
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": record["image"]}, {"type": "text", "text": text}],
        }
    ]


def tile_box(row: int, column: int, grid: int, rows: int = 1, columns: int = 1) -> list[float]:
    """Normalised box of `rows` x `columns` tiles whose top-left tile is (row, column)."""
    return [column / grid, row / grid, (column + columns) / grid, (row + rows) / grid]


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _coarse_region(row: int, column: int, grid: int, rng: np.random.Generator) -> list[float]:
    """A box of about half the canvas's side that holds the target tile (depth-first start)."""
    span = max(1, (grid + 1) // 2)
    if span == 1:  # a 2x2 grid: the row or the column holding the target
        return tile_box(row, 0, grid, 1, grid) if rng.random() < 0.5 else tile_box(0, column, grid, grid, 1)
    top = int(rng.integers(max(0, row - span + 1), min(row, grid - span) + 1))
    left = int(rng.integers(max(0, column - span + 1), min(column, grid - span) + 1))
    return tile_box(top, left, grid, span, span)


def coldstart_conversation(
    record: dict[str, Any], pattern: str, rng: np.random.Generator, tool: GroundingTool
) -> list[dict[str, Any]]:
    """A multi-turn SFT trajectory of one of PATTERNS, with real crops from the grounding tool."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    grid, (row, column) = record["grid"], record["target_tile"]
    goal = f"Find the {record['target_shape']}."
    messages = question_messages(record)
    images = [record["image"]]

    def act(text: str, box: list[float]) -> None:
        call = text + format_grounding(box)
        messages.append(_assistant(call))
        outcome = tool.run(call, images, turn=len(images))
        messages.append(outcome.message)
        if outcome.image is not None:
            images.append(outcome.image)

    first = f"<think>{goal}</think>"
    if pattern == "trial_and_error":
        others = [(r, c) for r in range(grid) for c in range(grid) if (r, c) != (row, column)]
        decoys = [tuple(d["tile"]) for d in record["distractors"]]
        wrong = decoys[int(rng.integers(len(decoys)))] if decoys and rng.random() < 0.5 else None
        wrong = wrong or others[int(rng.integers(len(others)))]
        act(first, tile_box(*wrong, grid))
        first = f"<think>No {record['target_shape']} here. {goal}</think>"
    elif pattern == "refinement":
        act(first, _coarse_region(row, column, grid, rng))
        first = f"<think>It is in this part. {goal}</think>"
    act(first, tile_box(row, column, grid))
    messages.append(
        _assistant(f"<think>Found the {record['target_shape']}.</think><answer>{record['answer']}</answer>")
    )
    return messages


def coldstart_conversations(
    count: int,
    seed: int,
    difficulties: tuple[str, ...],
    tool: GroundingTool,
    tile: int = 168,
    weights: tuple[float, float, float] = (0.5, 0.25, 0.25),
    start: int = 0,
) -> list[list[dict[str, Any]]]:
    """Trajectories start..start+count-1 of the cold-start set (pure function of the seed)."""
    conversations = []
    for index in range(start, start + count):
        rng = record_rng(seed, index, stream=8)
        record = probe_record(index, seed, difficulties[index % len(difficulties)], tile)
        pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=np.asarray(weights) / sum(weights)))]
        conversations.append(coldstart_conversation(record, pattern, rng, tool))
    return conversations
