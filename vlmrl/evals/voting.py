"""Answers without labels, and voting over samples: what self-consistency and TTRV count.

`task_answer(task, doc, output)` turns a model output into the answer it gives, in a canonical
form that equal answers share (an option letter, a number, normalised text), or a
`FormatFailure`. It reads the question side of a document only (its options), never the label,
so label-free methods can call it on `Task.unlabeled(doc)`.

`majority_vote` picks the most common parsed answer; `self_consistency_task` wraps any
single-turn task into one that samples N outputs per document, votes, and scores the winner
with the task's own scorer (the "self-consistency at N" baseline of test-time methods).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

from vlmrl.evals.loaders import extract_answer
from vlmrl.evals.metrics import normalize_answer, parse_option_letter
from vlmrl.evals.tasks import Interaction, Task, TaskError
from vlmrl.model.formats import FormatFailure, parse_answer, parse_number
from vlmrl.model.types import SamplingParams


def canonical_number(value: float) -> str:
    """'3' for 3.0, '2.5' for 2.5: one spelling per number, so '3', '3.0' and '03' vote together."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def qa_answer(doc: dict[str, Any], output: Any) -> str | FormatFailure:
    """The answer a QA output gives, label-free.

    Multiple choice (the doc has `options`): the option letter, read as `qa_score` reads it (from
    the <answer> block, or the bare text when there is none). Open questions: the <answer>
    block is required (bare text is not counted as a vote), then a number in canonical form or
    the normalised text.
    """
    if not isinstance(output, str):
        return FormatFailure(f"expected text, got {type(output).__name__}")
    options = doc.get("options")
    if options:
        answer, _ = extract_answer(output)
        return parse_option_letter(answer, options)
    parsed = parse_answer(output)
    if isinstance(parsed, FormatFailure):
        return parsed
    number = parse_number(parsed)
    if not isinstance(number, FormatFailure):
        return canonical_number(number)
    text = normalize_answer(parsed)
    return text if text else FormatFailure(f"answer {parsed!r} is empty once normalised")


def task_answer(task: Task, doc: dict[str, Any], output: Any) -> str | FormatFailure:
    """The task's own label-free parser (`Task.parse`), or `qa_answer` when it has none."""
    parser = task.parse or qa_answer
    answer = parser(doc, output)
    if not isinstance(answer, (str, FormatFailure)):
        return FormatFailure(f"task '{task.name}' parsed an answer of type {type(answer).__name__}")
    return answer


def majority_vote(answers: Sequence[Any]) -> str | None:
    """The most common answer among the parsed ones (FormatFailure and None are not votes).

    Ties go to the answer that appeared first, as `collections.Counter.most_common` orders
    them (TTRL's pseudo-label). None when nothing parsed.
    """
    counts: dict[str, int] = {}
    for answer in answers:
        if isinstance(answer, str):
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(answer for answer, count in counts.items() if count == best)


def self_consistency_task(task: Task, votes: int, temperature: float = 1.0, seed: int = 0) -> Task:
    """`task` answered by majority vote over `votes` samples per document (self-consistency).

    The document's output is the first sample that gives the winning answer (the first sample
    when none parsed), scored by the task's own scorer; `agreement` is the winner's share.
    """
    if task.interactive or task.to_messages is None or task.score is None:
        raise TaskError(f"self-consistency needs a single-turn task; '{task.name}' is interactive")
    if votes < 1:
        raise TaskError(f"self-consistency needs at least one vote, got {votes}")

    def interact(vlm: Any, docs: list[dict[str, Any]], sampling: SamplingParams) -> list[Interaction]:
        # Seeded by the batch's documents, so a resumed run draws the same samples.
        batch_seed = seed + zlib.crc32("\n".join(doc["id"] for doc in docs).encode())
        chosen = SamplingParams(
            max_new_tokens=sampling.max_new_tokens, temperature=temperature, n=votes, seed=batch_seed
        )
        generations = vlm.generate([task.to_messages(doc) for doc in docs], chosen)
        outputs: list[list[str]] = [[] for _ in docs]
        for generation in generations:
            outputs[generation.prompt_index].append(generation.text)
        interactions = []
        for doc, texts in zip(docs, outputs):
            answers = [task_answer(task, doc, text) for text in texts]
            winner = majority_vote(answers)
            chosen_text = next((t for t, a in zip(texts, answers) if a == winner), texts[0] if texts else "")
            score = dict(task.score(doc, chosen_text))
            score["agreement"] = sum(a == winner for a in answers) / max(1, len(answers)) if winner else 0.0
            interactions.append(Interaction(output=chosen_text, score=score))
        return interactions

    return dataclasses.replace(
        task,
        name=f"{task.name}-vote{votes}",
        to_messages=None,
        score=None,
        interact=interact,
        description=f"{task.description} (majority of {votes} samples)",
        settings={**task.settings, "votes": votes, "vote_temperature": temperature, "vote_seed": seed},
    )
