import numpy as np
import pytest

from vlmrl.evals import metrics
from vlmrl.model.formats import FormatFailure


def test_normalize_answer_strips_case_articles_punctuation_and_number_words():
    assert metrics.normalize_answer("The Red cube.") == "red cube"
    assert metrics.normalize_answer("  Three! ") == "3"
    assert metrics.normalize_answer("-2.5") == "-2.5"
    assert metrics.normalize_answer("1,204") == "1204"
    assert metrics.normalize_answer(None) == ""


def test_exact_match():
    assert metrics.exact_match("A red Cube", "red cube") == 1.0
    assert metrics.exact_match("blue", "red") == 0.0
    assert metrics.exact_match(FormatFailure("x"), "red") == 0.0
    assert metrics.exact_match("three", "3") == 1.0


def test_numeric_match_with_tolerances():
    assert metrics.numeric_match("42%", "42") == 1.0
    assert metrics.numeric_match("104", "100", relative_tolerance=0.05) == 1.0  # |4| <= 5
    assert metrics.numeric_match("106", "100", relative_tolerance=0.05) == 0.0  # |6| > 5
    assert metrics.numeric_match("0.4", "0", absolute_tolerance=0.5) == 1.0
    assert metrics.numeric_match("many", "3") == 0.0
    assert metrics.numeric_match("3", "three") == 0.0  # the reference is not a number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", "B"),
        ("(b)", "B"),
        ("B.", "B"),
        ("B) blue", "B"),
        ("Answer: C", "C"),
        ("blue", "B"),
        ("The Green", "C"),
    ],
)
def test_parse_option_letter(text, expected):
    assert metrics.parse_option_letter(text, ["red", "blue", "green"]) == expected


@pytest.mark.parametrize("text", ["a cube", "D", "purple", "", "B) red"])
def test_parse_option_letter_failures(text):
    assert isinstance(metrics.parse_option_letter(text, ["red", "blue", "green"]), FormatFailure)


def test_choice_match_and_success_rate():
    assert metrics.choice_match("(a)", "A", ["x", "y"]) == 1.0
    assert metrics.choice_match("y", "A", ["x", "y"]) == 0.0
    assert metrics.success_rate([True, False, 1, 0]) == 0.5
    assert metrics.success_rate([]) == 0.0


def test_mask_iou_hand_computed():
    prediction = np.zeros((4, 4), bool)
    prediction[0:2, 0:2] = True  # 4 pixels
    reference = np.zeros((4, 4), bool)
    reference[1:3, 1:3] = True  # 4 pixels, overlap 1
    assert metrics.mask_intersection_union(prediction, reference) == (1, 7)
    assert metrics.mask_iou(prediction, reference) == pytest.approx(1 / 7)
    empty = np.zeros((4, 4), bool)
    assert metrics.mask_iou(empty, empty) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mask_iou(prediction, np.zeros((3, 4), bool))


def test_box_iou_hand_computed():
    assert metrics.box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert metrics.box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == pytest.approx(1.0)
    assert metrics.box_iou([0, 0, 1, 1], [5, 5, 6, 6]) == 0.0
    assert metrics.box_intersection_union([0, 0, 2, 2], [1, 1, 3, 3]) == (1.0, 7.0)


def test_cumulative_and_generalized_iou_differ_as_defined():
    # A large object segmented well and a small one missed: cIoU weighs by area, gIoU does not.
    pairs = [(90, 100), (0, 10)]
    assert metrics.cumulative_iou(pairs) == pytest.approx(90 / 110)
    assert metrics.generalized_iou([0.9, 0.0]) == pytest.approx(0.45)
    assert metrics.cumulative_iou([]) == 0.0


def test_mean_metrics_groups():
    scores = [
        {"accuracy": 1.0, "format": 1.0, "question_type": "count"},
        {"accuracy": 0.0, "format": 1.0, "question_type": "count"},
        {"accuracy": 1.0, "format": 0.0, "question_type": "exist"},
    ]
    result = metrics.mean_metrics(scores, group_key="question_type", grouped=("accuracy",))
    assert result == {
        "accuracy": pytest.approx(2 / 3),
        "accuracy/count": 0.5,
        "accuracy/exist": 1.0,
        "format": pytest.approx(2 / 3),
    }


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    scores = [{"accuracy": float(v)} for v in rng.random(200) < 0.3]
    first = metrics.bootstrap_intervals(scores, metrics.mean_metrics, resamples=300, seed=1)
    second = metrics.bootstrap_intervals(scores, metrics.mean_metrics, resamples=300, seed=1)
    assert first == second
    low, high = first["accuracy"]
    mean = metrics.mean_metrics(scores)["accuracy"]
    assert low < mean < high
    # Binomial standard error sqrt(p(1-p)/n) ~ 0.032: a 95% interval is about 0.13 wide.
    assert 0.08 < high - low < 0.18


def test_paired_bootstrap_delta():
    a = [{"accuracy": 0.0}] * 50 + [{"accuracy": 1.0}] * 50
    b = [{"accuracy": 1.0}] * 100
    deltas = metrics.paired_bootstrap_delta(a, b, metrics.mean_metrics, resamples=200, seed=0)
    delta, (low, high) = deltas["accuracy"]
    assert delta == pytest.approx(0.5)
    assert 0.3 < low <= 0.5 <= high < 0.7
    with pytest.raises(ValueError, match="differ in length"):
        metrics.paired_bootstrap_delta(a, b[:3], metrics.mean_metrics)
