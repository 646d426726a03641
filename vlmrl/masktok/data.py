"""SAMTok-formatted examples on the shapes world: mask generation and mask understanding.

- Referring segmentation (mask generation): "Segment the red cube." -> an answer holding one
  mask string per object the expression names (several for "the cubes"), or "none" when the
  expression names nothing in the image (GRES's no-target expressions).
- Region captioning and region QA (mask understanding): the mask's tokens are in the prompt
  ("What is <|mt_start|>...<|mt_end|>?" -> "a large red metal cube").

Examples are a pure function of (seed, index). Their masks are exact renderer masks; the mask
strings come from a trained tokenizer (`encode`), so targets are what the tokenizer decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmrl.model.formats import format_answer

# Instructions in our own words, carrying the reference's tasks (SAMTok trains referring
# segmentation, region captioning and region VQA with masks as words in the text).
SEGMENT_INSTRUCTION = "Segment {expression}. Answer with its mask tokens, or none."
CAPTION_INSTRUCTION = "Describe the object {mask}."
REGION_QUESTION = "What is the {attribute} of the object {mask}?"
REGION_ATTRIBUTES = ("color", "material", "size", "shape")


@dataclass
class Example:
    """One scene and a question about it; `masks` are the target objects' exact masks."""

    id: str
    kind: str  # "refseg" | "caption" | "region_qa"
    image: Any
    expression: str
    masks: list[np.ndarray]
    answer_text: str = ""  # the answer for understanding tasks (captions, attributes)
    info: dict[str, Any] = field(default_factory=dict)


def _expression(scene: Any, rng: np.random.Generator, no_target_rate: float, multi_rate: float):
    """(expression, target indices) for a scene: unique, several, or no target."""
    from vlmrl.data_recipes.shapes import (
        ATTRIBUTES,
        COLORS,
        MATERIALS,
        SHAPES,
        SIZES,
        count_matching,
        matches,
        phrase,
        unique_description,
    )

    draw = rng.random()
    if draw < no_target_rate:
        values = {"shape": SHAPES, "color": COLORS, "size": SIZES, "material": MATERIALS}
        for _ in range(50):
            names = [ATTRIBUTES[i] for i in sorted(rng.choice(4, size=2, replace=False))]
            attributes = {n: values[n][int(rng.integers(len(values[n])))] for n in names}
            if count_matching(scene, attributes) == 0:
                return f"the {phrase(attributes)}", []
    if draw < no_target_rate + multi_rate:
        for name in ("shape", "color", "material", "size"):
            value = scene.objects[0].attribute(name)
            attributes = {name: value}
            if len(scene.objects) > 1 and count_matching(scene, attributes) == len(scene.objects):
                return f"all the {phrase(attributes, plural=True)}", list(range(len(scene.objects)))
    target = int(rng.integers(len(scene.objects)))
    attributes = unique_description(scene, target, rng)
    if attributes is None:  # twins: refer to both
        attributes = {a: scene.objects[target].attribute(a) for a in ATTRIBUTES}
        indices = [i for i, o in enumerate(scene.objects) if matches(o, attributes)]
        return f"all the {phrase(attributes, plural=True)}", indices
    return f"the {phrase(attributes)}", [target]


def refseg_example(
    index: int,
    seed: int,
    resolution: int = 128,
    min_objects: int = 1,
    max_objects: int = 2,
    no_target_rate: float = 0.1,
    multi_rate: float = 0.1,
) -> Example:
    """Referring segmentation example `index` (objects left to right in the answer)."""
    from vlmrl.data_recipes.shapes import record_rng, render_scene, sample_scene

    rng = record_rng(seed, index, stream=7)
    scene = sample_scene(rng, min_objects, max_objects)
    image, masks, _ = render_scene(scene, resolution)
    expression, targets = _expression(scene, rng, no_target_rate, multi_rate)
    targets = [t for t in sorted(targets, key=lambda t: scene.objects[t].x) if masks[t].any()]
    return Example(
        id=f"refseg-{seed}-{index}",
        kind="refseg",
        image=image,
        expression=expression,
        masks=[masks[t] for t in targets],
        info={"objects": len(scene.objects), "no_target": not targets},
    )


def understanding_example(
    index: int, seed: int, resolution: int = 128, min_objects: int = 1, max_objects: int = 2
) -> Example:
    """A region caption or region QA example: the question holds the object's mask tokens."""
    from vlmrl.data_recipes.shapes import describe, record_rng, render_scene, sample_scene

    rng = record_rng(seed, index, stream=8)
    scene = sample_scene(rng, min_objects, max_objects)
    image, masks, _ = render_scene(scene, resolution)
    visible = [i for i, m in enumerate(masks) if m.any()]
    target = visible[int(rng.integers(len(visible)))]
    obj = scene.objects[target]
    if rng.random() < 0.5:
        return Example(f"caption-{seed}-{index}", "caption", image, "", [masks[target]], describe(obj))
    attribute = REGION_ATTRIBUTES[int(rng.integers(len(REGION_ATTRIBUTES)))]
    return Example(
        f"region-{seed}-{index}",
        "region_qa",
        image,
        attribute,
        [masks[target]],
        obj.attribute(attribute),
        info={"attribute": attribute},
    )


def prompt_text(example: Example, mask_strings: list[str]) -> str:
    if example.kind == "refseg":
        return SEGMENT_INSTRUCTION.format(expression=example.expression)
    if example.kind == "caption":
        return CAPTION_INSTRUCTION.format(mask=mask_strings[0])
    return REGION_QUESTION.format(attribute=example.expression, mask=mask_strings[0])


def messages(example: Example, mask_strings: list[str]) -> list[dict[str, Any]]:
    """The user turn: the scene, then the instruction (with mask tokens for understanding)."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": example.image},
                {"type": "text", "text": prompt_text(example, mask_strings)},
            ],
        }
    ]


def target_text(example: Example, mask_strings: list[str]) -> str:
    """The assistant's answer: mask strings (or 'none') for refseg, words otherwise."""
    from vlmrl.masktok.tokens import NO_TARGET

    if example.kind == "refseg":
        return format_answer("".join(mask_strings) if mask_strings else NO_TARGET)
    return format_answer(example.answer_text)


def mask_strings_of(tokenizer: Any, examples: list[Example], batch_size: int = 64) -> list[list[str]]:
    """Each example's masks as token strings, encoded in batches by the tokenizer."""
    from vlmrl.masktok.tokens import mask_string

    pairs = [(i, example.image, mask) for i, example in enumerate(examples) for mask in example.masks]
    strings: list[list[str]] = [[] for _ in examples]
    size = tokenizer.config.codebook_size
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        codes = tokenizer.encode([p[1] for p in chunk], [p[2] for p in chunk]).tolist()
        for (owner, _, _), code in zip(chunk, codes):
            strings[owner].append(mask_string(code, size))
    return strings
