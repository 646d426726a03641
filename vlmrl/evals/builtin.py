"""Built-in tasks on the suite's generated data (deterministic by seed), registered on import.

shapes-qa, charts-qa: single-turn QA with metrics per question type.
shapes-recognition, charts-choice: recognition as multiple choice A-D (answer a letter, or the
  option's text), as TTRV frames recognition benchmarks: one object per image (its shape,
  colour or material), and a multiple-choice view of charts-qa.
spy-vote: a civilian's view of a 'Who is the spy' round (its image and every player's clue);
  which player is the spy? Built from shapes image pairs.
visual-probe: interactive visual search with the zoom tool; accuracy by difficulty and by
  turn budget.
refseg: referring segmentation on shapes scenes; the answer is text with mask tokens that a
  pluggable mask decoder (SAMTok registers one) turns into a mask; cIoU and gIoU.
shapes-box: where is the named object? Its visible box as [x0, y0, x1, y1] in pixels; mean IoU
  and accuracy at IoU >= 0.5.
text-read: what is written in the image? Exact match up to case and whitespace.
text-kept: text-only questions with exact answers (arithmetic, comparisons, counts, facts), to
  check that a VLM kept its language model's text skills.
env-success tasks come from `interactive.environment_task` with a method's environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from vlmrl.evals.interactive import zoom_search
from vlmrl.evals.loaders import extract_answer, qa_aggregate, qa_messages, qa_score
from vlmrl.evals.metrics import (
    box_iou,
    cumulative_iou,
    generalized_iou,
    mask_intersection_union,
    mean_metrics,
    normalize_answer,
)
from vlmrl.evals.tasks import Interaction, Task, TaskError, register_task
from vlmrl.model.formats import (
    VOTE_INSTRUCTION,
    FormatFailure,
    format_clues,
    parse_box,
    parse_number,
    parse_vote,
)
from vlmrl.model.types import SamplingParams

DEFAULT_SEED = 1000  # evaluation streams start away from seed 0, the usual training seed


def _qa_doc(record: dict[str, Any], images: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": record["id"],
        "images": images if images is not None else [record["image"]],
        "question": record["question"],
        "answer": str(record["answer"]),
        "question_type": record["question_type"],
    }


# ----------------------------------------------------------------------------- shapes / charts QA


def shapes_qa_score(doc: dict[str, Any], output: str) -> dict[str, Any]:
    """qa_score, plus counting accuracy on questions whose answer is at most 6 (small counts)."""
    score = qa_score(doc, output)
    if doc.get("question_type") == "count" and doc["answer"].isdigit() and int(doc["answer"]) <= 6:
        score["accuracy_count_le6"] = score["accuracy"]
    return score


# 168 px is the tiny default's native pixel budget; real models' processors upscale as needed.
def shapes_qa_task(
    n: int = 200, seed: int = DEFAULT_SEED, resolution: int = 168, min_objects: int = 3, max_objects: int = 10
) -> Task:
    from vlmrl.data_recipes.shapes import shapes_qa_records

    def docs(limit: int | None) -> list[dict]:
        records = shapes_qa_records(min(n, limit or n), seed, resolution, min_objects, max_objects)
        return [_qa_doc(r) for r in records]

    return Task(
        name="shapes-qa",
        docs=docs,
        to_messages=qa_messages,
        score=shapes_qa_score,
        aggregate=qa_aggregate,
        max_new_tokens=16,
        description="questions about generated 3-D shape scenes (count, exist, query, compare, relation)",
        settings={
            "n": n,
            "seed": seed,
            "resolution": resolution,
            "min_objects": min_objects,
            "max_objects": max_objects,
        },
    )


CHART_RELATIVE_TOLERANCE = 0.05  # ChartQA's relaxed accuracy: numbers within 5% count as right


def chart_qa_task(n: int = 200, seed: int = DEFAULT_SEED, resolution: int = 224) -> Task:
    from vlmrl.data_recipes.charts import chart_qa_records

    return Task(
        name="charts-qa",
        docs=lambda limit: [_qa_doc(r) for r in chart_qa_records(min(n, limit or n), seed, resolution)],
        to_messages=qa_messages,
        score=lambda doc, output: qa_score(doc, output, CHART_RELATIVE_TOLERANCE),
        aggregate=qa_aggregate,
        max_new_tokens=16,
        description="questions about generated charts (max, min, difference, trend, value)",
        settings={"n": n, "seed": seed, "resolution": resolution, "tolerance": CHART_RELATIVE_TOLERANCE},
    )


# ----------------------------------------------------------------------------- multiple choice

RECOGNITION_QUESTIONS = {
    "shape": "What shape is the object?",
    "color": "What color is the object?",
    "material": "What material is the object made of?",
    "size": "What size is the object?",
}
# The shapes world has two materials and two sizes; the other choices never occur in it, so
# every question keeps four options (A-D) as recognition benchmarks do.
EXTRA_CHOICES = {"material": ("glass", "wood"), "size": ("tiny", "huge")}
RECOGNITION_ATTRIBUTES = ("shape", "color", "material")


def options_first_prompt(question: str, options: list[str]) -> str:
    """'Answer with the option's letter. Options: A. red, B. blue, C. gray, D. cyan. What color
    is the object?'

    The options come before the question: the tiny default, pretrained on plain questions,
    answers the question it reads last (with the letter or the option's text, both count); with
    the options after the question it answers "no".
    """
    from vlmrl.evals.metrics import option_letters

    listed = ", ".join(f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options))
    return f"Answer with the option's letter. Options: {listed}. {question}"


def choice_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in doc.get("images", [])]
    content.append({"type": "text", "text": options_first_prompt(doc["question"], doc["options"])})
    return [{"role": "user", "content": content}]


def _shuffled_options(answer: str, distractors: list[str], rng: np.random.Generator) -> tuple[list[str], str]:
    options = [answer, *distractors]
    options = [options[int(i)] for i in rng.permutation(len(options))]
    return options, "ABCD"[options.index(answer)]


def recognition_doc(index: int, seed: int, resolution: int, attributes: tuple[str, ...]) -> dict[str, Any]:
    """Document `index`: one object alone in the scene, one attribute of it as a 4-way choice."""
    from vlmrl.data_recipes.shapes import (
        COLORS,
        MATERIALS,
        SHAPES,
        SIZES,
        record_rng,
        render_scene,
        sample_scene,
    )

    rng = record_rng(seed, index, stream=11)
    scene = sample_scene(rng, 1, 1)
    image, _, _ = render_scene(scene, resolution)
    attribute = attributes[index % len(attributes)]
    choices = {"shape": SHAPES, "color": COLORS, "material": MATERIALS, "size": SIZES}[attribute]
    pool = [
        c for c in (*choices, *EXTRA_CHOICES.get(attribute, ())) if c != scene.objects[0].attribute(attribute)
    ]
    distractors = [str(c) for c in rng.choice(pool, size=3, replace=False)]
    options, letter = _shuffled_options(scene.objects[0].attribute(attribute), distractors, rng)
    return {
        "id": f"recognition-{seed}-{index}",
        "images": [image],
        "question": RECOGNITION_QUESTIONS[attribute],
        "options": options,
        "answer": letter,
        "answer_letter": letter,
        "question_type": attribute,
    }


def shapes_recognition_task(
    n: int = 300,
    seed: int = DEFAULT_SEED,
    resolution: int = 168,
    attributes: tuple[str, ...] = RECOGNITION_ATTRIBUTES,
) -> Task:
    unknown = [a for a in attributes if a not in RECOGNITION_QUESTIONS]
    if unknown or not attributes:
        raise TaskError(
            f"shapes-recognition attributes {list(attributes)}: expected some of {list(RECOGNITION_QUESTIONS)}"
        )
    attributes = tuple(attributes)
    return Task(
        name="shapes-recognition",
        docs=lambda limit: [
            recognition_doc(i, seed, resolution, attributes) for i in range(min(n, limit or n))
        ],
        to_messages=choice_messages,
        score=qa_score,
        aggregate=qa_aggregate,
        max_new_tokens=16,
        description="one object per image: its shape, colour or material as a choice among A-D",
        settings={"n": n, "seed": seed, "resolution": resolution, "attributes": list(attributes)},
    )


TREND_CHOICES = ("increasing", "decreasing", "constant", "oscillating")


def _chart_distractors(record: dict[str, Any], rng: np.random.Generator) -> list[str]:
    """Three wrong options of the chart question: other labels, other trends or nearby numbers."""
    from vlmrl.data_recipes.charts import CATEGORY_SETS

    answer = str(record["answer"])
    if record["question_type"] == "trend":
        pool = [t for t in TREND_CHOICES if t != answer]
    elif record["question_type"] in ("max", "min"):
        labels = json.loads(record["table"])["labels"]
        pool = [label for label in labels if label != answer]
        if len(pool) < 3:  # a 3-label chart: add labels it does not show
            if answer.isdigit():
                pool += [
                    str(int(answer) + step)
                    for step in (-30, -20, 20, 30)
                    if str(int(answer) + step) not in labels
                ]
            else:
                words = next((w for w in CATEGORY_SETS if answer in w), CATEGORY_SETS[0])
                pool += [w for w in words if w not in labels]
    else:  # a number: nearby integers, none within the relaxed tolerance of the answer
        value = int(float(answer))
        spread = max(4, abs(value) // 2)
        pool = [
            str(value + step) for step in range(-spread, spread + 1) if abs(step) > max(1, abs(value) * 0.05)
        ]
    return [str(c) for c in rng.choice(pool, size=3, replace=False)]


def chart_choice_task(n: int = 200, seed: int = DEFAULT_SEED, resolution: int = 224) -> Task:
    from vlmrl.data_recipes.charts import chart_qa_records
    from vlmrl.data_recipes.shapes import record_rng

    def docs(limit: int | None) -> list[dict[str, Any]]:
        found = []
        for record in chart_qa_records(min(n, limit or n), seed, resolution):
            index = int(record["id"].rsplit("-", 1)[1])
            rng = record_rng(seed, index, stream=12)
            options, letter = _shuffled_options(str(record["answer"]), _chart_distractors(record, rng), rng)
            found.append({**_qa_doc(record), "options": options, "answer": letter, "answer_letter": letter})
        return found

    return Task(
        name="charts-choice",
        docs=docs,
        to_messages=choice_messages,
        score=qa_score,
        aggregate=qa_aggregate,
        max_new_tokens=16,
        description="charts-qa as a choice among A-D (the true answer and three wrong ones)",
        settings={"n": n, "seed": seed, "resolution": resolution},
    )


# ----------------------------------------------------------------------------- spy vote


def _phrase(entry: dict[str, Any]) -> str:
    from vlmrl.data_recipes.shapes import ATTRIBUTES, phrase

    return phrase({a: entry[a] for a in ATTRIBUTES})


def _clue(entry: dict[str, Any]) -> str:
    from vlmrl.data_recipes.shapes import _article

    return f"I see {_article(_phrase(entry))}."


def spy_round(record: dict[str, Any], seed: int, index: int) -> dict[str, Any] | None:
    """A spy-vote doc from an image pair, or None when the edit leaves the spy nothing to give
    away (a removed or moved object: every description of the spy's image also fits the other).

    Civilians see image_a, the spy image_b; each civilian describes an object of image_a, the
    spy an object only its image has; the voter is a civilian.
    """
    edit = json.loads(record["edit"])
    civilian_objects = edit["scene_a"]["objects"]
    present = {_phrase(o) for o in civilian_objects}
    giveaways = [o for o in edit["scene_b"]["objects"] if _phrase(o) not in present]
    if not giveaways:
        return None
    rng = np.random.default_rng([seed, index, 7])
    players = int(rng.integers(3, 5))
    spy = int(rng.integers(1, players + 1))
    voter = int(rng.choice([p for p in range(1, players + 1) if p != spy]))
    clues = []
    for player in range(1, players + 1):
        if player == spy:
            clues.append((player, _clue(giveaways[0])))
        else:
            clues.append((player, _clue(civilian_objects[int(rng.integers(len(civilian_objects)))])))
    return {
        "id": record["id"],
        "images": [record["image_a"]],
        "question": VOTE_INSTRUCTION.format(player=voter, clues=format_clues(clues)),
        "answer": str(spy),
        "players": players,
        "question_type": f"{players}_players",
    }


def spy_vote_score(doc: dict[str, Any], output: str) -> dict[str, Any]:
    vote = parse_vote(output, int(doc["players"]))
    valid = not isinstance(vote, FormatFailure)
    return {
        "accuracy": float(valid and vote == int(doc["answer"])),
        "format": float(valid),
        "question_type": doc["question_type"],
    }


def spy_vote_task(n: int = 200, seed: int = DEFAULT_SEED, resolution: int = 112) -> Task:
    from vlmrl.data_recipes.pairs import pair_record

    def docs(limit: int | None) -> list[dict[str, Any]]:
        wanted, found, index = min(n, limit or n), [], 0
        while len(found) < wanted:
            doc = spy_round(pair_record(index, "shapes", seed, resolution), seed, index)
            if doc is not None:
                found.append(doc)
            index += 1
        return found

    return Task(
        name="spy-vote",
        docs=docs,
        to_messages=qa_messages,
        score=spy_vote_score,
        aggregate=qa_aggregate,
        max_new_tokens=16,
        description="'Who is the spy': from a civilian's image and all clues, name the spy",
        settings={"n": n, "seed": seed, "resolution": resolution},
    )


# ----------------------------------------------------------------------------- boxes

BOX_IOU_THRESHOLD = 0.5  # a box counts as found at IoU >= 0.5, as in RefCOCO grounding (Acc@0.5)


def shapes_box_score(doc: dict[str, Any], output: str) -> dict[str, Any]:
    """IoU of the answer's box (`parse_box` on the final answer) with the object's visible box,
    0.0 when no box parses; `accuracy_iou50` (also `accuracy`, the name recipes and reports read
    by default): IoU >= BOX_IOU_THRESHOLD; `format`: a box parsed."""
    answer, _ = extract_answer(output)
    box = parse_box(answer)
    parsed = not isinstance(box, FormatFailure)
    iou = box_iou(box, doc["box"]) if parsed else 0.0
    found = float(iou >= BOX_IOU_THRESHOLD)
    return {"iou": iou, "accuracy": found, "accuracy_iou50": found, "format": float(parsed)}


def shapes_box_task(
    n: int = 200, seed: int = DEFAULT_SEED, resolution: int = 168, min_objects: int = 1, max_objects: int = 4
) -> Task:
    from vlmrl.data_recipes.shapes import box_record

    def docs(limit: int | None) -> list[dict[str, Any]]:
        records = [
            box_record(i, seed, resolution, min_objects, max_objects) for i in range(min(n, limit or n))
        ]
        return [{**_qa_doc(r), "box": r["box"], "width": r["width"], "height": r["height"]} for r in records]

    return Task(
        name="shapes-box",
        docs=docs,
        to_messages=qa_messages,
        score=shapes_box_score,
        aggregate=mean_metrics,
        max_new_tokens=32,
        description="the visible box [x0, y0, x1, y1] of a named object in a shapes scene (IoU)",
        settings={
            "n": n,
            "seed": seed,
            "resolution": resolution,
            "min_objects": min_objects,
            "max_objects": max_objects,
        },
        label_keys=("answer", "box"),
    )


# ----------------------------------------------------------------------------- reading text


def whitespace_case_normalized(text: str) -> str:
    """Lower case, runs of whitespace (line breaks too) as one space, no outer spaces."""
    return " ".join(text.lower().split())


def text_read_score(doc: dict[str, Any], output: str) -> dict[str, Any]:
    """accuracy: the final answer equals the written text up to case and whitespace (lines may
    be joined by spaces or line breaks); nothing else is forgiven, since the words and digits
    are what is read (the text 'seven' is not read right as '7'). format: a well-formed <answer>
    block, as in qa_score."""
    answer, formatted = extract_answer(output)
    correct = whitespace_case_normalized(answer) == whitespace_case_normalized(doc["answer"])
    return {"accuracy": float(correct), "format": float(formatted), "question_type": doc["question_type"]}


def text_read_task(n: int = 200, seed: int = DEFAULT_SEED, resolution: int = 168) -> Task:
    from vlmrl.data_recipes.text_images import text_record

    return Task(
        name="text-read",
        docs=lambda limit: [_qa_doc(text_record(i, seed, resolution)) for i in range(min(n, limit or n))],
        to_messages=qa_messages,
        score=text_read_score,
        aggregate=qa_aggregate,
        max_new_tokens=32,
        description="read the words and numbers printed in an image (exact match)",
        settings={"n": n, "seed": seed, "resolution": resolution},
    )


# ----------------------------------------------------------------------------- kept text skills

# A number in digits, not inside a word or after a decimal point ("7-5=2" gives 7, 5, 2), with
# optional thousands commas ("1,000").
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")
_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS = {
    **{word: value for value, word in enumerate(_UNITS)},
    **{word: 20 + 10 * index for index, word in enumerate(_TENS)},
    "hundred": 100,
    "thousand": 1000,
}


def last_number(text: str) -> float | None:
    """The last number written in digits; if there are none, the last number word ('seven',
    'twenty-four'; a word alone, so 'three hundred' reads as 100); None if neither."""
    digits = _NUMBER_IN_TEXT.findall(text)
    if digits:
        return float(digits[-1].replace(",", ""))
    words = re.findall(r"[a-z]+", text.lower())
    values = []
    for index, word in enumerate(words):
        if word not in _NUMBER_WORDS:
            continue
        if index > 0 and words[index - 1] in _TENS and 1 <= _NUMBER_WORDS[word] <= 9:
            values[-1] += _NUMBER_WORDS[word]  # 'twenty-four', 'twenty four'
        else:
            values.append(_NUMBER_WORDS[word])
    return float(values[-1]) if values else None


def kept_answer_correct(answer: str, expected: str) -> bool:
    """The rule of text-kept, meant for the short free answers of a chat model.

    A numeric expected answer: the LAST number of the answer (`last_number`) equals it, so
    '7 + 5 = 12' and 'There are seven days' are right and '12 or 13' is not. A word expected
    answer: it appears as whole words in the answer, ignoring case, articles and punctuation
    (`normalize_answer`), so 'The capital of France is Paris.' is right and 'Parisian' is not.
    """
    number = parse_number(expected)
    if not isinstance(number, FormatFailure):
        found = last_number(answer)
        return found is not None and found == number
    wanted = normalize_answer(expected)
    return bool(wanted) and f" {wanted} " in f" {normalize_answer(answer)} "


def text_kept_score(doc: dict[str, Any], output: str) -> dict[str, Any]:
    """accuracy by `kept_answer_correct` on the final answer (the <answer> block or \\boxed{} if
    the model writes one, else its whole text)."""
    answer, _ = extract_answer(output)
    return {
        "accuracy": float(kept_answer_correct(answer, doc["answer"])),
        "question_type": doc["question_type"],
    }


def text_kept_task(ids: list[str] | None = None) -> Task:
    """Every question of `vlmrl.evals.text_questions`, or only those in `ids` (e.g. the ones a
    base model answers right, so a later score is the share of its text skills kept); the
    documents keep the list's order whatever the order of `ids`."""
    from vlmrl.evals.text_questions import TEXT_QUESTIONS

    questions = list(TEXT_QUESTIONS)
    if ids is not None:
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise TaskError(f"text-kept ids must be a list of question ids (strings), got {ids!r}")
        known = {q.id for q in TEXT_QUESTIONS}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise TaskError(
                f"text-kept ids {unknown[:5]} are not questions of vlmrl.evals.text_questions "
                f"(ids look like {TEXT_QUESTIONS[0].id!r}, {TEXT_QUESTIONS[-1].id!r})"
            )
        if not ids:
            raise TaskError("text-kept ids is empty: pass None for every question, or at least one id")
        wanted = set(ids)
        questions = [q for q in questions if q.id in wanted]
    selected = [
        {
            "id": q.id,
            "images": [],
            "question": q.question,
            "answer": q.answer,
            "question_type": q.question_type,
        }
        for q in questions
    ]
    return Task(
        name="text-kept",
        docs=lambda limit: [dict(doc) for doc in selected[:limit]],
        to_messages=qa_messages,
        score=text_kept_score,
        aggregate=qa_aggregate,
        max_new_tokens=24,
        description="text-only questions with exact answers: does the VLM keep its language model's skills?",
        settings={"ids": None if ids is None else [q.id for q in questions]},
    )


# ----------------------------------------------------------------------------- visual probe

PROBE_DIFFICULTIES = ("easy", "medium", "hard")


def visual_probe_task(
    n: int = 90,
    seed: int = DEFAULT_SEED,
    canvas: int = 448,
    max_turns: int = 4,
    budgets: tuple[int, ...] = (1, 2, 4),
    difficulties: tuple[str, ...] = PROBE_DIFFICULTIES,
) -> Task:
    from vlmrl.data_recipes.probe import probe_record

    budgets = tuple(b for b in budgets if b <= max_turns) or (max_turns,)

    def docs(limit: int | None) -> list[dict[str, Any]]:
        count = min(n, limit or n)
        # Round robin over difficulties so a small --limit still covers every difficulty.
        records = [
            probe_record(i // len(difficulties), seed, canvas, difficulties[i % len(difficulties)])
            for i in range(count)
        ]
        return [{**r, "question_type": r["difficulty"]} for r in records]

    def interact(vlm: Any, batch: list[dict[str, Any]], sampling: SamplingParams) -> list[Interaction]:
        return zoom_search(vlm, batch, sampling, max_turns, budgets)

    def aggregate(scores: list[dict[str, Any]]) -> dict[str, float]:
        grouped = ("accuracy", *(f"accuracy@{b}" for b in budgets))
        return mean_metrics(scores, group_key="difficulty", grouped=grouped)

    return Task(
        name="visual-probe",
        docs=docs,
        interact=interact,
        aggregate=aggregate,
        max_new_tokens=64,
        description="find a small target on a large cluttered canvas, zooming as needed",
        settings={"n": n, "seed": seed, "canvas": canvas, "max_turns": max_turns, "budgets": list(budgets)},
    )


# ----------------------------------------------------------------------------- refseg

MaskDecoder = Callable[[str, tuple[int, int]], "np.ndarray | FormatFailure"]
_MASK_DECODER: list[MaskDecoder] = []


def register_mask_decoder(decoder: MaskDecoder) -> None:
    """Install the decoder refseg uses by default: (model text, (width, height)) -> bool mask
    of shape (height, width), or a FormatFailure when the text holds no valid mask tokens.

    A decoder that needs the pixels (SAMTok's decoder is conditioned on the image) sets the
    attribute `uses_image = True` and is called as (model text, PIL image) instead."""
    _MASK_DECODER[:] = [decoder]


def refseg_docs(n: int, seed: int, resolution: int) -> list[dict[str, Any]]:
    from vlmrl.data_recipes.shapes import phrase, record_rng, render_scene, sample_scene, unique_description

    docs = []
    index = 0
    while len(docs) < n:
        rng = record_rng(seed, index, stream=5)
        scene = sample_scene(rng, 3, 8)
        image, masks, _ = render_scene(scene, resolution)
        target = int(rng.integers(len(scene.objects)))
        attributes = unique_description(scene, target, rng)
        if attributes is not None and masks[target].any():
            docs.append(
                {
                    "id": f"refseg-{seed}-{index}",
                    "images": [image],
                    "question": f"Segment the {phrase(attributes)}.",
                    "mask": masks[target],
                }
            )
        index += 1
    return docs


def refseg_score(doc: dict[str, Any], output: str, decoder: MaskDecoder) -> dict[str, Any]:
    image = doc["images"][0]
    reference = np.asarray(doc["mask"], dtype=bool)
    answer, _ = extract_answer(output)
    if getattr(decoder, "uses_image", False):
        predicted = decoder(answer, image)
    else:
        predicted = decoder(answer, (image.width, image.height))
    formatted = not isinstance(predicted, FormatFailure)
    if not formatted:
        predicted = np.zeros_like(reference)
    predicted = np.asarray(predicted, dtype=bool)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"refseg doc {doc['id']}: the mask decoder returned shape {predicted.shape}, "
            f"expected (height, width) = {reference.shape}"
        )
    intersection, union = mask_intersection_union(predicted, reference)
    score = {
        "intersection": float(intersection),
        "union": float(union),
        "iou": 1.0 if union == 0 else intersection / union,
        "format": float(formatted),
    }
    if not reference.any():  # a no-target expression (GRES): right only if nothing is predicted
        score["no_target_correct"] = float(formatted and not predicted.any())
        # An unparseable answer is not a correct "nothing here", though its empty mask matches.
        score["iou"] = score["no_target_correct"]
    return score


def refseg_aggregate(scores: list[dict[str, Any]]) -> dict[str, float]:
    """cIoU, gIoU and format rate; N-acc (GRES) over no-target docs when there are any."""
    metrics = {
        "cIoU": cumulative_iou([(s["intersection"], s["union"]) for s in scores]),
        "gIoU": generalized_iou([s["iou"] for s in scores]),
        "format": float(np.mean([s["format"] for s in scores])) if scores else 0.0,
    }
    no_target = [s["no_target_correct"] for s in scores if "no_target_correct" in s]
    if no_target:
        metrics["N-acc"] = float(np.mean(no_target))
    return metrics


def refseg_task(
    mask_decoder: MaskDecoder | None = None, n: int = 100, seed: int = DEFAULT_SEED, resolution: int = 112
) -> Task:
    decoder = mask_decoder or (_MASK_DECODER[0] if _MASK_DECODER else None)
    if decoder is None:
        raise TaskError(
            "task 'refseg' needs a mask decoder (model text -> mask): pass mask_decoder= to refseg_task, "
            "or import the method that registers one (vlmrl.masktok) before evaluating"
        )
    return Task(
        name="refseg",
        docs=lambda limit: refseg_docs(min(n, limit or n), seed, resolution),
        to_messages=qa_messages,
        score=lambda doc, output: refseg_score(doc, output, decoder),
        aggregate=refseg_aggregate,
        max_new_tokens=16,
        primary_metric="cIoU",
        description="referring segmentation on shapes scenes via mask tokens (cIoU, gIoU)",
        settings={"n": n, "seed": seed, "resolution": resolution},
    )


register_task("shapes-qa", shapes_qa_task, "QA on generated shape scenes, accuracy per question type")
register_task("charts-qa", chart_qa_task, "QA on generated charts, relaxed numeric accuracy")
register_task(
    "shapes-recognition", shapes_recognition_task, "one object per image: shape/colour/material, choice A-D"
)
register_task("charts-choice", chart_choice_task, "charts-qa as multiple choice A-D")
register_task("spy-vote", spy_vote_task, "'Who is the spy' vote from a transcript of clues and the image")
register_task("visual-probe", visual_probe_task, "zoom-tool visual search, by difficulty and turn budget")
register_task("shapes-box", shapes_box_task, "box of a named object in a shapes scene, IoU and Acc@0.5")
register_task("text-read", text_read_task, "read the text printed in an image, exact match")
register_task("text-kept", text_kept_task, "text-only questions: arithmetic, comparisons, counts, facts")
register_task("refseg", refseg_task, "referring segmentation through mask tokens (needs a mask decoder)")
