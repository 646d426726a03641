"""The `Task` record and the task registry.

A task is data plus three functions, not a class to subclass:
- `docs(limit)`: the documents (dicts with a unique string "id"), from a recipe with a seed,
  JSONL + images, or an HF dataset on disk (see `loaders`).
- single-turn: `to_messages(doc)` -> conversation, `score(doc, output_text)` -> dict of numbers;
- interactive (tool loops, games, environments): `interact(vlm, docs, sampling)` -> one
  `Interaction` per doc, driving `vlm.generate` itself (batched across docs).
- `aggregate(scores)` -> metrics (default: the mean of every numeric score key).
- `parse(doc, output)` -> the answer an output gives, in a canonical form (an option letter, a
  number, normalised text) or a FormatFailure, WITHOUT reading the label: what voting methods
  (self-consistency, TTRV) count. `label_keys` names the document fields that hold the label,
  so `unlabeled(doc)` can hand label-free documents to methods that must not see answers.

Methods add tasks with `register_task(name, factory)`; a factory builds the Task on demand so
registering costs nothing and building reads options such as the doc count or a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlmrl.evals.metrics import mean_metrics
from vlmrl.model.types import Conversation, SamplingParams


class TaskError(ValueError):
    """A task name, definition or its documents are not usable."""


@dataclass
class Docs:
    """Documents of a task, and the ones dropped on the way (corrupt images), with why."""

    items: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)


@dataclass
class Interaction:
    """What an interactive task returns per document: a transcript to cache and its score."""

    output: str
    score: dict[str, Any]


@dataclass
class Task:
    name: str
    docs: Callable[[int | None], Docs | list[dict[str, Any]]]
    to_messages: Callable[[dict[str, Any]], Conversation] | None = None
    score: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    aggregate: Callable[[list[dict[str, Any]]], dict[str, float]] = mean_metrics
    interact: Callable[[Any, list[dict[str, Any]], SamplingParams], list[Interaction]] | None = None
    max_new_tokens: int = 32
    primary_metric: str = "accuracy"
    description: str = ""
    # Stored with each cached prediction so a rerun of the same run directory reuses them only
    # if the task's settings did not change.
    settings: dict[str, Any] = field(default_factory=dict)
    # Label-free answer extraction (see the module docstring); None: the QA default
    # (`vlmrl.evals.voting.qa_answer`: option letter, number or normalised text).
    parse: Callable[[dict[str, Any], str], Any] | None = None
    label_keys: tuple[str, ...] = ("answer", "answer_letter")

    def __post_init__(self) -> None:
        single = self.to_messages is not None and self.score is not None
        if single == (self.interact is not None):
            raise TaskError(
                f"task '{self.name}': give either to_messages and score (single-turn) or interact "
                "(interactive), not both and not neither"
            )

    @property
    def interactive(self) -> bool:
        return self.interact is not None

    def unlabeled(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A shallow copy of `doc` without its label fields: what label-free methods receive."""
        return {key: value for key, value in doc.items() if key not in self.label_keys}

    def load_docs(self, limit: int | None = None) -> Docs:
        loaded = self.docs(limit)
        docs = loaded if isinstance(loaded, Docs) else Docs(list(loaded))
        if limit is not None:
            docs.items = docs.items[:limit]
        seen: set[str] = set()
        for position, doc in enumerate(docs.items):
            if not isinstance(doc, dict) or "id" not in doc:
                raise TaskError(
                    f"task '{self.name}': document {position} has no 'id' (expected a dict with 'id')"
                )
            doc["id"] = str(doc["id"])
            if doc["id"] in seen:
                raise TaskError(
                    f"task '{self.name}': document id '{doc['id']}' appears twice; ids must be unique"
                )
            seen.add(doc["id"])
        return docs


TaskFactory = Callable[..., Task]
_REGISTRY: dict[str, tuple[TaskFactory, str]] = {}


def register_task(
    name: str, factory: TaskFactory | Task, description: str = "", overwrite: bool = False
) -> None:
    """Make `name` usable in `evaluate` and `vlmrl eval run --tasks`.

    `factory(**options)` builds the Task (a ready Task is accepted too).
    """
    if not name or any(c in name for c in ",: "):
        raise TaskError(f"task name {name!r} must be non-empty without commas, colons or spaces")
    if name in _REGISTRY and not overwrite:
        raise TaskError(f"task '{name}' is already registered (pass overwrite=True to replace it)")
    if isinstance(factory, Task):
        ready = factory
        _REGISTRY[name] = (lambda **_: ready, description or ready.description)
    else:
        _REGISTRY[name] = (factory, description)


def task_names() -> list[str]:
    _ensure_builtins()
    return sorted(_REGISTRY)


def task_descriptions() -> dict[str, str]:
    _ensure_builtins()
    return {name: description for name, (_, description) in sorted(_REGISTRY.items())}


def get_task(spec: str | Task, **options: Any) -> Task:
    """A Task from a registered name, 'jsonl:PATH' or 'hf:PATH[@SPLIT]' (user data), or a Task.

    `options` go to the registered task's factory, or for user data to `jsonl_task` / `hf_task`
    (response, pre_prompt, post_prompt, relative_tolerance, name)."""
    if isinstance(spec, Task):
        return spec
    _ensure_builtins()
    if spec.startswith("jsonl:"):
        from vlmrl.evals.loaders import jsonl_task

        return jsonl_task(spec.removeprefix("jsonl:"), **options)
    if spec.startswith("hf:"):
        from vlmrl.evals.loaders import hf_task

        path, _, split = spec.removeprefix("hf:").partition("@")
        return hf_task(path, split=split or None, **options)
    if spec not in _REGISTRY:
        raise TaskError(
            f"unknown task '{spec}'; registered tasks are {sorted(_REGISTRY)} "
            "(or use jsonl:FILE.jsonl / hf:DATASET_DIR for your own data)"
        )
    factory, _ = _REGISTRY[spec]
    task = factory(**options)
    if not isinstance(task, Task):
        raise TaskError(f"the factory of task '{spec}' returned {type(task).__name__}, expected a Task")
    return task


def get_tasks(specs: str | Sequence[str | Task], **options: Any) -> list[Task]:
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    if not specs:
        raise TaskError("no tasks given")
    return [get_task(spec, **options) for spec in specs]


def _ensure_builtins() -> None:
    import vlmrl.evals.builtin  # noqa: F401  (registers the built-in tasks on import)
