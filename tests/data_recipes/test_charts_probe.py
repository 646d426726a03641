import json

import numpy as np
import pytest

from vlmrl.data_recipes.charts import KINDS, chart_qa_records
from vlmrl.data_recipes.probe import DIFFICULTY, probe_records


def expected_chart_answer(record):
    table = json.loads(record["table"])
    spec = json.loads(record["scene"])
    labels, values = table["labels"], table["values"]
    if spec["kind"] == "pie":
        values = [round(100 * v / sum(values)) for v in values]
    question, kind = record["question"], record["question_type"]
    if kind == "max":
        return labels[int(np.argmax(values))]
    if kind == "min":
        return labels[int(np.argmin(values))]
    if kind == "trend":
        slope = np.polyfit(np.arange(len(values)), values, 1)[0]
        return "increasing" if slope > 0 else "decreasing"
    if kind == "value_at":
        for label, value in zip(labels, values):
            if f"at {label}?" in question or f"at x = {label}?" in question or f"at {label} (" in question:
                return str(value)
    if kind == "difference":
        for a, va in zip(labels, values):
            for b, vb in zip(labels, values):
                if f"value of {a} exceed that of {b}?" in question:
                    return str(va - vb)
    raise AssertionError(f"not understood: {question}")


def test_chart_answers_are_computed_from_the_table():
    records = list(chart_qa_records(24, seed=0, resolution=160))
    assert {r["chart_kind"] for r in records} == set(KINDS)
    assert len({r["question_type"] for r in records}) == 5
    for record in records:
        assert record["image"].size == (160, 160)
        assert expected_chart_answer(record) == record["answer"], record["question"]
    again = list(chart_qa_records(2, seed=0, resolution=160, start=10))
    assert again[0]["image"].tobytes() == records[10]["image"].tobytes()


@pytest.mark.parametrize("difficulty", list(DIFFICULTY))
def test_probe_target_is_where_the_box_says(difficulty):
    sizes = []
    for record in probe_records(6, seed=3, canvas=256, difficulty=difficulty):
        scene = json.loads(record["scene"])
        target = scene["target"]
        x0, y0, x1, y1 = record["target_box"]
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256
        assert x0 <= target["center"][0] <= x1 and y0 <= target["center"][1] <= y1
        sizes.append(x1 - x0)
        pixels = np.asarray(record["image"])
        centre = pixels[int(target["center"][1]), int(target["center"][0])]
        from vlmrl.data_recipes.shapes import COLOR_RGB

        if target["shape"] != "ring":  # a ring's centre is its hole
            assert tuple(centre) == COLOR_RGB[target["color"]]
        if record["question_type"] == "target_color":
            assert record["answer"] == target["color"]
            assert all(d["shape"] != target["shape"] for d in scene["distractors"])
        else:
            assert record["answer"] == target["shape"]
            assert all(d["color"] != target["color"] for d in scene["distractors"])
    assert np.mean(sizes) == pytest.approx(DIFFICULTY[difficulty][0] * 256, abs=3)


def test_probe_rejects_unknown_difficulty():
    with pytest.raises(ValueError, match="difficulty"):
        next(probe_records(1, 0, difficulty="extreme"))
