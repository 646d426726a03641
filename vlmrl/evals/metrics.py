"""Metric functions: pure, total on model output, tested on hand-computed cases.

Per-document scores are small dicts of numbers (1.0/0.0 for right/wrong, IoU parts for masks);
a task's `aggregate` turns a list of them into metrics, and `bootstrap_intervals` resamples
documents to put a confidence interval on every metric the aggregate produces, whatever it is
(a mean, a cumulative IoU, an accuracy per question type).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vlmrl.model.formats import FormatFailure, parse_number

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation.replace("-", "").replace(".", ""))
_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}


# ----------------------------------------------------------------------------- answers


def normalize_answer(text: Any) -> str:
    """Lower case, no articles, no punctuation (keeping signs and decimal points), number words
    as digits, single spaces: 'The Red cube.' and 'red cube' compare equal."""
    if not isinstance(text, str):
        return ""
    text = text.lower().strip()
    text = text.translate(_PUNCTUATION)
    text = re.sub(r"\.(?!\d)", " ", text)  # a full stop, but not a decimal point
    text = _ARTICLES.sub(" ", text)
    words = [_NUMBER_WORDS.get(word, word) for word in text.split()]
    return " ".join(words)


def exact_match(prediction: Any, reference: Any) -> float:
    """1.0 when the normalised strings are equal (a FormatFailure never matches)."""
    if isinstance(prediction, FormatFailure) or not isinstance(prediction, str):
        return 0.0
    return float(normalize_answer(prediction) == normalize_answer(str(reference)))


def numeric_match(
    prediction: Any, reference: Any, relative_tolerance: float = 0.0, absolute_tolerance: float = 0.0
) -> float:
    """1.0 when both parse as numbers and |p - r| <= max(absolute, relative * |r|)."""
    if isinstance(prediction, FormatFailure):
        return 0.0
    predicted = parse_number(prediction)
    expected = parse_number(str(reference)) if not isinstance(reference, (int, float)) else float(reference)
    if isinstance(predicted, FormatFailure) or isinstance(expected, FormatFailure):
        return 0.0
    return float(abs(predicted - expected) <= max(absolute_tolerance, relative_tolerance * abs(expected)))


def option_letters(count: int) -> list[str]:
    if not 1 <= count <= 26:
        raise ValueError(f"multiple choice needs 1..26 options, got {count}")
    return [chr(ord("A") + index) for index in range(count)]


_LETTER_PATTERNS = (
    re.compile(r"^\(?([A-Za-z])\)?(?:[.:)\s]|$)"),  # "B", "(B)", "B.", "B) red", "b: red"
    re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Za-z])\)?(?:[.:)\s]|$)", re.IGNORECASE),
)


def parse_option_letter(text: Any, options: Sequence[str]) -> str | FormatFailure:
    """The option letter an answer names: a letter ('B', '(b)', 'Answer: B') or the text of
    exactly one option ('red'). Total: anything else is a FormatFailure."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    letters = option_letters(len(options))
    stripped = text.strip()
    for pattern in _LETTER_PATTERNS:
        found = pattern.search(stripped)
        if found and found.group(1).upper() in letters:
            # A lone word such as "a cube" must not read as option A: accept a bare letter only
            # when the rest is empty, punctuation or the option's own text.
            letter = found.group(1).upper()
            rest = normalize_answer(stripped[found.end() :])
            option_text = normalize_answer(options[letters.index(letter)])
            if pattern is _LETTER_PATTERNS[1] or not rest or rest == option_text:
                return letter
    normalized = normalize_answer(stripped)
    hits = [letter for letter, option in zip(letters, options) if normalize_answer(option) == normalized]
    if len(hits) == 1:
        return hits[0]
    return FormatFailure(f"{text!r} names none of the options {letters}")


def choice_match(prediction: Any, reference_letter: str, options: Sequence[str]) -> float:
    letter = parse_option_letter(prediction, options)
    return float(not isinstance(letter, FormatFailure) and letter == reference_letter.strip().upper())


def success_rate(outcomes: Sequence[Any]) -> float:
    """Fraction of episodes that succeeded (truthy outcomes); 0.0 for no episodes."""
    if len(outcomes) == 0:
        return 0.0
    return float(np.mean([bool(outcome) for outcome in outcomes]))


# ----------------------------------------------------------------------------- masks and boxes


def _rle(mask: np.ndarray):
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be a 2-D array, got shape {mask.shape}")
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def mask_intersection_union(prediction: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    """(|P ∩ R|, |P ∪ R|) in pixels, computed on COCO RLE with pycocotools."""
    from pycocotools import mask as mask_utils

    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(f"mask shapes differ: prediction {prediction.shape}, reference {reference.shape}")
    first, second = _rle(prediction), _rle(reference)
    intersection = int(mask_utils.area(mask_utils.merge([first, second], intersect=True)))
    union = int(mask_utils.area(mask_utils.merge([first, second], intersect=False)))
    return intersection, union


def mask_iou(prediction: np.ndarray, reference: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree perfectly (1.0), as in gRefCOCO."""
    intersection, union = mask_intersection_union(prediction, reference)
    return 1.0 if union == 0 else intersection / union


def _box_xywh(box: Sequence[float], name: str) -> list[float]:
    if len(box) != 4:
        raise ValueError(f"{name} box must be [x0, y0, x1, y1], got {list(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)]


def box_iou(prediction: Sequence[float], reference: Sequence[float]) -> float:
    """IoU of two [x0, y0, x1, y1] boxes (pycocotools' box IoU)."""
    from pycocotools import mask as mask_utils

    first = _box_xywh(prediction, "predicted")
    second = _box_xywh(reference, "reference")
    if first[2] * first[3] == 0 and second[2] * second[3] == 0:
        return 1.0 if first == second else 0.0
    return float(mask_utils.iou([first], [second], [0])[0][0])


def box_intersection_union(prediction: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    first = _box_xywh(prediction, "predicted")
    second = _box_xywh(reference, "reference")
    width = max(0.0, min(first[0] + first[2], second[0] + second[2]) - max(first[0], second[0]))
    height = max(0.0, min(first[1] + first[3], second[1] + second[3]) - max(first[1], second[1]))
    intersection = width * height
    return intersection, first[2] * first[3] + second[2] * second[3] - intersection


def cumulative_iou(pairs: Sequence[tuple[float, float]]) -> float:
    """cIoU: total intersection over total union across a set ((intersection, union) pairs);
    large objects weigh more. 0.0 for an empty set, 1.0 when every union is empty."""
    if len(pairs) == 0:
        return 0.0
    intersection = sum(float(i) for i, _ in pairs)
    union = sum(float(u) for _, u in pairs)
    return 1.0 if union == 0 else intersection / union


def generalized_iou(ious: Sequence[float]) -> float:
    """gIoU as used in referring segmentation (GRES): the mean of per-sample IoUs."""
    return float(np.mean(ious)) if len(ious) else 0.0


# ----------------------------------------------------------------------------- aggregation


def mean_metrics(
    scores: Sequence[dict[str, Any]], group_key: str | None = None, grouped: Sequence[str] | None = None
) -> dict[str, float]:
    """The mean of every numeric score key; with `group_key`, also 'key/group' per value of the
    score's `group_key` field, for the keys in `grouped` (default: all)."""
    totals: dict[str, list[float]] = {}  # key -> [sum, count]
    for score in scores:
        group = str(score[group_key]) if group_key is not None and group_key in score else None
        for key, value in score.items():
            if not _is_number(value):
                continue
            split = group is not None and (grouped is None or key in grouped)
            for name in (key, f"{key}/{group}") if split else (key,):
                entry = totals.setdefault(name, [0.0, 0])
                entry[0] += float(value)
                entry[1] += 1
    return {name: total / count for name, (total, count) in sorted(totals.items())}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _percentile_intervals(
    samples: list[dict[str, float]], confidence: float
) -> dict[str, tuple[float, float]]:
    low, high = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    keys = sorted({k for sample in samples for k in sample})
    intervals = {}
    for key in keys:
        values = np.array([sample[key] for sample in samples if key in sample], dtype=float)
        if len(values):
            intervals[key] = (float(np.percentile(values, low)), float(np.percentile(values, high)))
    return intervals


def bootstrap_intervals(
    scores: Sequence[dict[str, Any]],
    aggregate: Callable[[list[dict[str, Any]]], dict[str, float]],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric `aggregate` returns, resampling documents
    with replacement (seeded, so the same scores always give the same intervals)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scores = list(scores)
    if not scores:
        return {}
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        indices = rng.integers(0, len(scores), size=len(scores))
        samples.append(aggregate([scores[i] for i in indices]))
    return _percentile_intervals(samples, confidence)


def paired_bootstrap_delta(
    scores_a: Sequence[dict[str, Any]],
    scores_b: Sequence[dict[str, Any]],
    aggregate: Callable[[list[dict[str, Any]]], dict[str, float]],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, tuple[float, float]]]:
    """For each metric: (B - A, interval) from resampling the same documents in both runs.

    `scores_a[i]` and `scores_b[i]` must belong to the same document; pairing removes the
    variance shared by the two runs (hard documents stay hard), so intervals are tighter than
    two independent ones.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"paired scores differ in length: {len(scores_a)} vs {len(scores_b)}")
    if not scores_a:
        return {}
    metrics_a, metrics_b = aggregate(list(scores_a)), aggregate(list(scores_b))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        indices = rng.integers(0, len(scores_a), size=len(scores_a))
        first = aggregate([scores_a[i] for i in indices])
        second = aggregate([scores_b[i] for i in indices])
        samples.append({k: second[k] - first[k] for k in second if k in first})
    intervals = _percentile_intervals(samples, confidence)
    return {
        key: (metrics_b[key] - metrics_a[key], intervals.get(key, (float("nan"), float("nan"))))
        for key in metrics_b
        if key in metrics_a
    }
