import json
import re

import numpy as np
import pytest

from vlmrl.data_recipes import shapes
from vlmrl.data_recipes.shapes import (
    COLORS,
    MATERIALS,
    QUESTION_TYPES,
    SIZES,
    Scene,
    SceneObject,
    render_scene,
    sample_scene,
    shapes_qa_records,
)

SINGULAR = {
    "spheres": "sphere",
    "cubes": "cube",
    "cylinders": "cylinder",
    "cones": "cone",
    "objects": "object",
}


def parse_phrase(text: str) -> dict[str, str]:
    """Independent reading of 'large red metal cubes' back into attributes."""
    words = text.split()
    noun = SINGULAR.get(words[-1], words[-1])
    attributes = {} if noun == "object" else {"shape": noun}
    for word in words[:-1]:
        for name, domain in (("color", COLORS), ("size", SIZES), ("material", MATERIALS)):
            if word in domain:
                attributes[name] = word
    assert len(attributes) == len(words) - (noun == "object"), text
    return attributes


def select(objects, attributes):
    return [o for o in objects if all(o[k] == v for k, v in attributes.items())]


def the(objects, text):
    found = select(objects, parse_phrase(text))
    assert len(found) == 1, f"'{text}' must name exactly one object, names {len(found)}"
    return found[0]


def expected_answer(question: str, objects: list[dict]) -> str:
    yes_no = lambda value: "yes" if value else "no"  # noqa: E731
    if m := re.fullmatch(r"How many (.+) are there\?", question):
        return str(len(select(objects, parse_phrase(m[1]))))
    if m := re.fullmatch(r"Is there an? (.+)\?", question):
        return yes_no(select(objects, parse_phrase(m[1])))
    if m := re.fullmatch(r"What (color|shape|size) is the (.+)\?", question):
        return the(objects, m[2])[m[1]]
    if m := re.fullmatch(r"What material is the (.+) made of\?", question):
        return the(objects, m[1])["material"]
    if m := re.fullmatch(r"Are there (more|fewer) (.+) than (.+)\?", question):
        a, b = len(select(objects, parse_phrase(m[2]))), len(select(objects, parse_phrase(m[3])))
        return yes_no(a > b if m[1] == "more" else a < b)
    if m := re.fullmatch(r"Are there the same number of (.+) and (.+)\?", question):
        return yes_no(len(select(objects, parse_phrase(m[1]))) == len(select(objects, parse_phrase(m[2]))))
    if m := re.fullmatch(
        r"Is the (.+?) (to the left of|to the right of|in front of|behind) the (.+)\?", question
    ):
        first, second = the(objects, m[1]), the(objects, m[3])
        if m[2] == "to the left of":
            return yes_no(first["x"] < second["x"])
        if m[2] == "to the right of":
            return yes_no(first["x"] > second["x"])
        if m[2] == "in front of":
            return yes_no(first["depth"] < second["depth"])
        return yes_no(first["depth"] > second["depth"])
    raise AssertionError(f"question not understood: {question}")


def test_answers_match_the_scene_graph():
    records = list(shapes_qa_records(160, seed=3, resolution=64))
    assert {r["question_type"] for r in records} == set(QUESTION_TYPES)
    for record in records:
        objects = json.loads(record["scene"])["objects"]
        assert expected_answer(record["question"], objects) == record["answer"], record["question"]
        assert record["caption"].startswith(f"{len(objects)} object")


def test_generate_questions_covers_types_and_answers_are_right():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = sample_scene(rng)
        objects = scene.to_dict()["objects"]
        questions = shapes.generate_questions(scene, rng)
        assert len(questions) >= 6
        for q in questions:
            assert expected_answer(q["question"], objects) == q["answer"]


def test_answer_distribution_is_balanced():
    records = list(shapes_qa_records(8 * 60, seed=1, resolution=32))
    by_type: dict[str, list[str]] = {}
    for record in records:
        by_type.setdefault(record["question_type"], []).append(record["answer"])
    for question_type in ("exist", "compare_count", "relation"):
        answers = by_type[question_type]
        assert 0.3 < answers.count("yes") / len(answers) < 0.7, question_type
    counts = [int(a) for a in by_type["count"]]
    assert len(set(counts)) >= 8  # spread over 0..10, not piled on 0 and 1
    assert max(np.bincount(counts)) / len(counts) < 0.25
    colours = by_type["query_color"]
    assert len(set(colours)) >= 6


def test_masks_are_exactly_the_visible_pixels():
    rng = np.random.default_rng(7)
    for _ in range(10):
        scene = sample_scene(rng, 6, 10)
        image, masks, boxes = render_scene(scene, 96)
        assert image.size == (96, 96) and image.mode == "RGB"
        union = np.zeros((96, 96), dtype=bool)
        # Silhouettes rendered one object at a time: visible = own silhouette minus nearer ones.
        silhouettes = []
        for obj in scene.objects:
            _, alone, _ = render_scene(Scene([obj]), 96)
            silhouettes.append(alone[0])
        for index, obj in enumerate(scene.objects):
            nearer = np.zeros_like(union)
            for other_index, other in enumerate(scene.objects):
                if other.depth < obj.depth or (other.depth == obj.depth and other_index > index):
                    nearer |= silhouettes[other_index]
            expected = silhouettes[index] & ~nearer
            assert np.array_equal(masks[index], expected)
            assert masks[index].sum() >= shapes.MIN_VISIBLE_FRACTION * silhouettes[index].sum() - 8
            assert not (union & masks[index]).any(), "visible masks must not overlap"
            union |= masks[index]
            ys, xs = np.nonzero(masks[index])
            assert boxes[index] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_objects_change_the_pixels_they_own():
    obj = SceneObject("cube", "red", "large", "rubber", 0.0, 0.3)
    image, masks, _ = render_scene(Scene([obj]), 112)
    empty, _, _ = render_scene(Scene([]), 112)
    pixels, ground = np.asarray(image).astype(int), np.asarray(empty).astype(int)
    changed = np.abs(pixels - ground).sum(-1) > 0
    assert changed[masks[0]].all()
    red = pixels[masks[0]].mean(0)
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60


def test_records_depend_only_on_seed_and_index():
    whole = list(shapes_qa_records(6, seed=5, resolution=48))
    tail = list(shapes_qa_records(2, seed=5, resolution=48, start=4))
    for a, b in zip(whole[4:], tail):
        assert a["id"] == b["id"] and a["question"] == b["question"] and a["scene"] == b["scene"]
        assert a["image"].tobytes() == b["image"].tobytes()
    other = next(shapes_qa_records(1, seed=6, resolution=48))
    assert other["scene"] != whole[0]["scene"]


def test_every_object_is_mostly_visible_and_objects_not_tiny():
    rng = np.random.default_rng(11)
    for _ in range(20):
        scene = sample_scene(rng, 10, 10)
        assert len(scene.objects) == 10
        _, masks, _ = render_scene(scene, 112)
        assert min(m.sum() for m in masks) >= 40  # about 7x7 pixels at the smallest


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="min_objects"):
        sample_scene(np.random.default_rng(0), 5, 3)
    with pytest.raises(ValueError, match="unknown question type"):
        shapes.question_of_type(Scene([]), "colour", np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        Scene.from_dict({"objects": [{"color": "red"}]})


def test_small_scenes_give_every_question_type_or_say_why_not():
    # scenes of one or two objects (the pretraining curriculum's start): relations get two
    relation = shapes.QUESTION_TYPES.index("relation")
    records = [shapes.shapes_qa_record(i, 0, 56, min_objects=1, max_objects=2) for i in range(18)]
    assert {r["question_type"] for r in records} == set(shapes.QUESTION_TYPES)
    assert len(json.loads(records[relation]["scene"])["objects"]) == 2
    with pytest.raises(ValueError, match="relation questions need scenes of at least 2 objects"):
        shapes.shapes_qa_record(relation, 0, 56, min_objects=1, max_objects=1)
