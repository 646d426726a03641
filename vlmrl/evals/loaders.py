"""Loaders that turn a user's own data into tasks: JSONL + image files, HF datasets on disk,
multiple choice with options.

Row format (JSONL line or dataset row):
    {"id": "q1", "image": "images/q1.png" | ["a.png", "b.png"], "question": "...",
     "answer": "...", "options": ["red", "blue"] (multiple choice), "question_type": "..."}
Image paths are relative to the JSONL file. "id" defaults to the line/row number; "image" may
be absent (text-only). With options, "answer" is a letter or the text of one option.

Options of both loaders (also `vlmrl eval run --response/--pre-prompt/--post-prompt`):
- `response="answer"` (default) scores the final answer of the output: the last `<answer>`
  block, else the last `\\boxed{}`, else the whole text (`vlmrl.model.formats.
  extract_final_answer`), so checkpoints that reason in the suite's formats are scored on their
  answer against plain references; `response="raw"` scores the whole output text as it is.
- `pre_prompt` / `post_prompt`: text put before / after the question (after the options of a
  multiple-choice row), as lmms-eval tasks do, so both harnesses send the same prompt.

A malformed row or a missing image file stops loading with an error naming the file, the line
and what was expected; a corrupt image (present but undecodable) skips its row, reported with a
count, so one bad file does not sink a thousand-question benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from vlmrl.evals.metrics import choice_match, exact_match, numeric_match, option_letters, parse_option_letter
from vlmrl.evals.tasks import Docs, Task, TaskError
from vlmrl.model.formats import FormatFailure, extract_final_answer, parse_answer, parse_number

RESPONSE_MODES = ("answer", "raw")


class DataError(TaskError):
    """A user's dataset does not have the expected shape."""


class CorruptImage(Exception):
    """An image file exists but cannot be decoded."""


def open_image(value: Any, where: str, base: Path | None = None) -> Image.Image:
    """RGB image from a path (relative to `base`), bytes, an HF image dict or a PIL image.

    Raises DataError for a missing file or an unusable value, CorruptImage for undecodable data.
    """
    from vlmrl.model.encoding import ConversationError, load_image

    if isinstance(value, dict) and ("bytes" in value or "path" in value):  # HF Image feature, undecoded
        value = value.get("bytes") or value.get("path")
    if isinstance(value, str):
        path = Path(value)
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise DataError(f"{where}: image file {path} does not exist")
        value = path
    if not isinstance(value, (Path, bytes, bytearray, Image.Image)):
        raise DataError(
            f"{where}: 'image' must be a path, a list of paths or image data, got {type(value).__name__}"
        )
    try:
        return load_image(value, where)
    except ConversationError as error:
        raise CorruptImage(str(error)) from error


def extract_answer(text: str, response: str = "answer") -> tuple[str, bool]:
    """(answer, formatted): the final answer (`extract_final_answer`: the <answer> block, else a
    \\boxed{}, else the text), stripped, or with `response="raw"` the whole stripped text;
    `formatted` says whether the output has a well-formed <answer> block, in either mode."""
    formatted = not isinstance(parse_answer(text), FormatFailure)
    if not isinstance(text, str):
        return "", False
    if response == "raw":
        return text.strip(), formatted
    return extract_final_answer(text).text.strip(), formatted


def check_response_mode(response: Any, where: str = "response") -> str:
    if response not in RESPONSE_MODES:
        raise TaskError(f"{where} must be one of {list(RESPONSE_MODES)}, got {response!r}")
    return response


def multiple_choice_prompt(question: str, options: list[str]) -> str:
    lines = [f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options)]
    return f"{question}\nOptions:\n" + "\n".join(lines) + "\nAnswer with the option's letter."


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if key not in row:
            raise DataError(f"{where}: missing '{key}' (rows need 'question' and 'answer')")
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise DataError(f"{where}: 'question' must be a non-empty string")
    if isinstance(row["answer"], (int, float)) and not isinstance(row["answer"], bool):
        row["answer"] = str(row["answer"])
    if not isinstance(row["answer"], str):
        raise DataError(f"{where}: 'answer' must be a string or a number, got {type(row['answer']).__name__}")
    options = row.get("options")
    if options is not None:
        if (
            not isinstance(options, list)
            or not 2 <= len(options) <= 26
            or not all(isinstance(o, str) for o in options)
        ):
            raise DataError(f"{where}: 'options' must be a list of 2..26 strings")
        letter = parse_option_letter(row["answer"], options)
        if isinstance(letter, FormatFailure):
            raise DataError(
                f"{where}: answer {row['answer']!r} is neither an option letter nor one option's text"
            )
        row["answer_letter"] = letter
    return row


def _row_images(row: dict[str, Any], where: str, base: Path | None) -> list[Image.Image]:
    value = row.get("image", row.get("images"))
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [open_image(v, f"{where} image {i}", base) for i, v in enumerate(values)]


def _build_docs(rows: Iterable[tuple[str, dict[str, Any]]], base: Path | None, limit: int | None) -> Docs:
    from rich.console import Console

    docs = Docs([])
    for where, row in rows:
        if limit is not None and len(docs.items) >= limit:
            break
        row = _check_row(row, where)
        try:
            images = _row_images(row, where, base)
        except CorruptImage as error:
            docs.skipped.append(str(error))
            continue
        docs.items.append({**row, "images": images})
    if docs.skipped:
        Console(stderr=True).print(
            f"[yellow]skipped {len(docs.skipped)} row(s) with corrupt images[/yellow]; first: {docs.skipped[0]}"
        )
    return docs


def read_jsonl_rows(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (expected a JSONL file of questions)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error})") from error
        if isinstance(row, dict):
            row.setdefault("id", str(number))
        rows.append((where, row))
    if not rows:
        raise DataError(f"{path} has no rows")
    return rows


def qa_messages(doc: dict[str, Any], pre_prompt: str = "", post_prompt: str = "") -> list[dict[str, Any]]:
    text = doc["question"]
    if doc.get("options"):
        text = multiple_choice_prompt(text, doc["options"])
    text = f"{pre_prompt}{text}{post_prompt}"
    content = [{"type": "image", "image": image} for image in doc.get("images", [])]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def qa_score(
    doc: dict[str, Any], output: str, relative_tolerance: float = 0.0, response: str = "answer"
) -> dict[str, Any]:
    """accuracy by option letter (with options), by number (numeric answers) or by exact match,
    of the output's final answer (`response="answer"`) or of its whole text (`"raw"`)."""
    answer, formatted = extract_answer(output, response)
    if doc.get("options"):
        correct = choice_match(answer, doc["answer_letter"], doc["options"])
    elif not isinstance(parse_number(doc["answer"]), FormatFailure):
        correct = numeric_match(answer, doc["answer"], relative_tolerance=relative_tolerance)
    else:
        correct = exact_match(answer, doc["answer"])
    score: dict[str, Any] = {"accuracy": correct, "format": float(formatted)}
    if "question_type" in doc:
        score["question_type"] = str(doc["question_type"])
    return score


def qa_aggregate(scores: list[dict[str, Any]]) -> dict[str, float]:
    from vlmrl.evals.metrics import mean_metrics

    return mean_metrics(scores, group_key="question_type", grouped=("accuracy",))


def _user_task_parts(
    relative_tolerance: float, response: str, pre_prompt: str, post_prompt: str
) -> dict[str, Any]:
    """The prompt, scoring and settings shared by the JSONL and HF loaders."""
    check_response_mode(response)
    for label, value in (("pre_prompt", pre_prompt), ("post_prompt", post_prompt)):
        if not isinstance(value, str):
            raise TaskError(f"{label} must be text, got {type(value).__name__}")
    return {
        "to_messages": lambda doc: qa_messages(doc, pre_prompt, post_prompt),
        "score": lambda doc, output: qa_score(doc, output, relative_tolerance, response),
        "aggregate": qa_aggregate,
        "settings": {
            "relative_tolerance": relative_tolerance,
            "response": response,
            "pre_prompt": pre_prompt,
            "post_prompt": post_prompt,
        },
    }


def jsonl_task(
    path: str | Path,
    name: str | None = None,
    relative_tolerance: float = 0.0,
    response: str = "answer",
    pre_prompt: str = "",
    post_prompt: str = "",
) -> Task:
    """A question-answering task over a JSONL file with image paths relative to it."""
    path = Path(path)
    parts = _user_task_parts(relative_tolerance, response, pre_prompt, post_prompt)
    rows = read_jsonl_rows(path)  # validated eagerly: a bad file fails before any model runs
    parts["settings"] = {"source": str(path.resolve()), **parts["settings"]}
    return Task(
        name=name or path.stem,
        docs=lambda limit: _build_docs(rows, path.parent, limit),
        **parts,
        description=f"questions from {path}",
    )


def hf_task(
    path: str | Path,
    split: str | None = None,
    name: str | None = None,
    relative_tolerance: float = 0.0,
    response: str = "answer",
    pre_prompt: str = "",
    post_prompt: str = "",
) -> Task:
    """A question-answering task over an HF dataset saved with `save_to_disk` (or a recipe's output)."""
    path = Path(path)
    parts = _user_task_parts(relative_tolerance, response, pre_prompt, post_prompt)
    parts["settings"] = {"source": str(path.resolve()), "split": split, **parts["settings"]}
    if not path.is_dir():
        raise DataError(f"{path} is not a directory (expected an HF dataset saved with save_to_disk)")

    def load(limit: int | None) -> Docs:
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as error:
            raise DataError(f"{path}: cannot load an HF dataset from disk ({error})") from error
        if isinstance(loaded, datasets.DatasetDict):
            chosen = split or ("test" if "test" in loaded else next(iter(loaded)))
            if chosen not in loaded:
                raise DataError(f"{path}: no split '{chosen}'; splits are {list(loaded)}")
            loaded = loaded[chosen]
        # Decode images ourselves so one corrupt image skips its row instead of failing the batch.
        for column, feature in loaded.features.items():
            if isinstance(feature, datasets.Image):
                loaded = loaded.cast_column(column, datasets.Image(decode=False))

        def rows():
            for index in range(len(loaded)):
                row = dict(loaded[index])
                row.setdefault("id", str(index))
                yield f"{path} row {index}", row

        return _build_docs(rows(), path, limit)

    return Task(name=name or path.name, docs=load, description=f"questions from the dataset {path}", **parts)
