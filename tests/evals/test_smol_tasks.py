"""The shapes-box, text-read and text-kept tasks: box parsing and IoU, the scoring rules on
scripted outputs (metrics computed by hand), determinism by seed, and the text question list."""

import time

import numpy as np
import pytest

from vlmrl.evals import evaluate, get_task
from vlmrl.evals.builtin import (
    kept_answer_correct,
    last_number,
    shapes_box_score,
    shapes_box_task,
    text_kept_score,
    text_kept_task,
    text_read_score,
    text_read_task,
)
from vlmrl.evals.metrics import box_iou, mean_metrics
from vlmrl.evals.tasks import TaskError, task_names
from vlmrl.evals.text_questions import ANSWER_INSTRUCTION, TEXT_QUESTIONS
from vlmrl.model.formats import FormatFailure, format_answer, parse_box


def test_the_three_tasks_are_registered():
    assert {"shapes-box", "text-read", "text-kept"} <= set(task_names())
    assert get_task("text-kept").name == "text-kept"


# ----------------------------------------------------------------------------- boxes


def test_box_iou_by_hand():
    assert box_iou([10, 20, 30, 40], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert box_iou([0, 0, 2, 2], [5, 5, 8, 8]) == 0.0
    assert box_iou([0, 0, 2, 2], [2, 0, 4, 2]) == 0.0  # ends are exclusive: touching is no overlap
    # The top half of a 4x4 box: intersection 4*2 = 8, union 16.
    assert box_iou([0, 0, 4, 4], [0, 0, 4, 2]) == pytest.approx(0.5)
    # Shifted by half its width: intersection 2*2 = 4, union 8 + 8 - 4 = 12.
    assert box_iou([0, 0, 4, 2], [2, 0, 6, 2]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[10, 20, 30, 40]", (10, 20, 30, 40)),
        ("The box is [1,2,3,4].", (1, 2, 3, 4)),
        ("[ 1.5 , 2, 3.25, 4 ]", (1.5, 2, 3.25, 4)),
        ("[0, 0, 5, 5], no: [1, 1, 6, 6]", (1, 1, 6, 6)),  # the last box is the answer
        ('[{"bbox_2d": [5, 6, 70, 80], "label": "cube"}]', (5, 6, 70, 80)),  # Qwen2.5-VL's JSON
        ("[-3, 0, 4, 5]", (-3, 0, 4, 5)),  # partly outside the image: wrong, not malformed
    ],
)
def test_parse_box_reads_boxes(text, expected):
    assert parse_box(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no box here",
        "[1, 2, 3]",
        "[1, 2, 3, 4, 5]",
        "[a, b, c, d]",
        "(1, 2, 3, 4)",
        "[1 2 3 4]",
        "[5, 0, 2, 4]",  # flipped: x1 < x0
        "[0, 4, 4, 1]",  # flipped: y1 < y0
        "[0, 0, 0, 4]",  # empty: x0 == x1
        "[" + "9" * 400 + ", 0, 1, 1]",  # overflows a float
    ],
)
def test_parse_box_fails_on_malformed_text(text):
    assert isinstance(parse_box(text), FormatFailure)


def test_parse_box_is_total_and_fast_on_hostile_input():
    hostile = [
        None,
        42,
        b"[1, 2, 3, 4]",
        ["[1, 2, 3, 4]"],
        "[" * 100_000,
        "[1, " * 50_000,
        "[1" + " " * 100_000 + "x",
        "[" + "1" * 100_000,
        "\x00[\ud800, 1, 2, 3]",
    ]
    start = time.perf_counter()
    for value in hostile:
        assert isinstance(parse_box(value), FormatFailure)
    assert time.perf_counter() - start < 2.0


def test_shapes_box_score_by_hand():
    doc = {"box": [0, 0, 4, 4]}
    half = shapes_box_score(doc, format_answer("[0, 0, 4, 2]"))
    assert half == {"iou": pytest.approx(0.5), "accuracy": 1.0, "accuracy_iou50": 1.0, "format": 1.0}
    # Raw text (no <answer> block) is read too; intersection 2*2 = 4, union 16 + 8 - 4 = 20.
    low = shapes_box_score(doc, "[2, 0, 6, 2]")
    assert low == {"iou": pytest.approx(0.2), "accuracy": 0.0, "accuracy_iou50": 0.0, "format": 1.0}
    missing = shapes_box_score(doc, "<answer>the cube</answer>")
    assert missing == {"iou": 0.0, "accuracy": 0.0, "accuracy_iou50": 0.0, "format": 0.0}
    metrics = mean_metrics([half, low, missing])
    assert metrics["iou"] == pytest.approx((0.5 + 0.2 + 0.0) / 3)
    assert metrics["accuracy_iou50"] == metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["format"] == pytest.approx(2 / 3)


def test_shapes_box_docs_are_deterministic_by_seed_and_hide_the_box():
    task = shapes_box_task(n=3)
    first, second = task.load_docs().items, task.load_docs().items
    assert [d["id"] for d in first] == [d["id"] for d in second]
    assert [d["box"] for d in first] == [d["box"] for d in second]
    assert all(
        np.array_equal(np.asarray(a["images"][0]), np.asarray(b["images"][0])) for a, b in zip(first, second)
    )
    other = shapes_box_task(n=3, seed=7).load_docs().items
    assert [d["answer"] for d in other] != [d["answer"] for d in first]
    for doc in first:
        x0, y0, x1, y1 = doc["box"]
        assert 0 <= x0 < x1 <= doc["width"] and 0 <= y0 < y1 <= doc["height"]
        assert parse_box(doc["answer"]) == tuple(doc["box"])
        assert task.score(doc, format_answer(doc["answer"]))["iou"] == pytest.approx(1.0)
        assert "box" not in task.unlabeled(doc) and "answer" not in task.unlabeled(doc)


# ----------------------------------------------------------------------------- text-read


def test_text_read_score_by_hand():
    doc = {"answer": "blue moon 42", "question_type": "read"}
    assert text_read_score(doc, "<answer>Blue  Moon\n42</answer>") == {
        "accuracy": 1.0,
        "format": 1.0,
        "question_type": "read",
    }
    assert text_read_score(doc, "blue moon 42") == {"accuracy": 1.0, "format": 0.0, "question_type": "read"}
    for wrong in ("blue moon 42.", "blue moon forty-two", "moon blue 42", "blue moon", ""):
        assert text_read_score(doc, wrong)["accuracy"] == 0.0
    assert text_read_score({"answer": "seven", "question_type": "read"}, "7")["accuracy"] == 0.0


def test_text_read_docs_are_deterministic_by_seed():
    first, second = text_read_task(n=3).load_docs().items, text_read_task(n=3).load_docs().items
    assert [(d["id"], d["answer"]) for d in first] == [(d["id"], d["answer"]) for d in second]
    assert np.array_equal(np.asarray(first[0]["images"][0]), np.asarray(second[0]["images"][0]))
    assert [d["answer"] for d in text_read_task(n=3, seed=7).load_docs().items] != [
        d["answer"] for d in first
    ]
    assert text_read_task(n=3).score(first[0], format_answer(first[0]["answer"].upper()))["accuracy"] == 1.0


# ----------------------------------------------------------------------------- text-kept


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("12", 12.0),
        ("7 + 5 = 12", 12.0),
        ("7-5=2", 2.0),
        ("1,000 grams", 1000.0),
        ("23 is the larger one", 23.0),  # digits first: the word 'one' is not read
        ("There are seven days in a week.", 7.0),
        ("Twenty-four hours", 24.0),
        ("no number", None),
    ],
)
def test_last_number(answer, expected):
    assert last_number(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected", "correct"),
    [
        ("12", "12", True),
        ("The answer is 12.", "12", True),
        ("12.0", "12", True),
        ("twelve", "12", True),
        ("12 or 13", "12", False),
        ("-4", "4", False),
        ("", "7", False),
        ("Paris", "paris", True),
        ("The capital of France is Paris.", "paris", True),
        ("PARIS", "paris", True),
        ("Parisian", "paris", False),
        ("Washington, D.C.", "washington", True),
        ("bluish", "blue", False),
        ("", "blue", False),
    ],
)
def test_kept_answer_correct(answer, expected, correct):
    assert kept_answer_correct(answer, expected) is correct


def test_text_kept_score_by_hand():
    doc = {"answer": "12", "question_type": "arithmetic"}
    assert text_kept_score(doc, "7 + 5 = 12") == {"accuracy": 1.0, "question_type": "arithmetic"}
    assert text_kept_score(doc, "<think>7 + 5 = 13? no</think><answer>12</answer>")["accuracy"] == 1.0
    assert text_kept_score(doc, "<answer>13</answer> (12 was wrong)")["accuracy"] == 0.0


def test_text_questions_are_many_unique_and_self_consistent():
    assert len(TEXT_QUESTIONS) >= 150
    assert len({q.id for q in TEXT_QUESTIONS}) == len(TEXT_QUESTIONS)
    assert len({q.question for q in TEXT_QUESTIONS}) == len(TEXT_QUESTIONS)
    assert {q.question_type for q in TEXT_QUESTIONS} == {"arithmetic", "comparison", "count", "fact"}
    echoes_passing = {"comparison": 0}
    for question in TEXT_QUESTIONS:
        assert question.question.endswith(f" {ANSWER_INSTRUCTION}")
        assert kept_answer_correct(question.answer, question.answer), question.id
        echo = question.question.removesuffix(f" {ANSWER_INSTRUCTION}")
        if question.question_type == "comparison":
            echoes_passing["comparison"] += kept_answer_correct(echo, question.answer)
        else:
            assert not kept_answer_correct(echo, question.answer), question.id
    comparisons = sum(q.question_type == "comparison" for q in TEXT_QUESTIONS)
    assert echoes_passing["comparison"] == comparisons // 2  # the answer is on each side equally often


def test_text_kept_ids_select_questions_in_list_order():
    everything = text_kept_task().load_docs().items
    assert [d["id"] for d in everything] == [q.id for q in TEXT_QUESTIONS]
    assert all(d["images"] == [] for d in everything)
    subset = text_kept_task(ids=["capital-france", "add-7-5"])
    assert [d["id"] for d in subset.load_docs().items] == ["add-7-5", "capital-france"]
    assert subset.settings == {"ids": ["add-7-5", "capital-france"]}
    assert subset.max_new_tokens == 24
    content = subset.to_messages(subset.load_docs().items[0])[0]["content"]
    assert content == [{"type": "text", "text": f"What is 7 + 5? {ANSWER_INSTRUCTION}"}]
    with pytest.raises(TaskError, match="no-such-question"):
        text_kept_task(ids=["add-7-5", "no-such-question"])
    with pytest.raises(TaskError, match="list of question ids"):
        text_kept_task(ids="add-7-5")
    with pytest.raises(TaskError, match="empty"):
        text_kept_task(ids=[])


def test_text_kept_through_the_harness(tmp_path, scripted):
    answers = {q.question: q.answer for q in TEXT_QUESTIONS}
    docs = text_kept_task().load_docs(6).items
    right = {d["question"] for d in docs[:4]}

    def reply(conversation):
        text = scripted.last_text(conversation)
        return f"The answer is {answers[text]}." if text in right else "I do not know."

    results = evaluate(
        scripted(reply), ["text-kept"], limit=6, out_dir=tmp_path, resamples=10, show_progress=False
    )
    metrics = results["tasks"]["text-kept"]["metrics"]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["accuracy/arithmetic"] == pytest.approx(4 / 6)  # the first six are sums
