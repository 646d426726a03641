"""`evaluate`: run tasks on a model, batched, deterministic and resumable.

Run directory layout:
    run.json                    what was evaluated (model, sampling, task settings): a rerun into
                                the same directory must match it, so cached predictions are
                                never mixed across models or settings
    predictions/TASK.jsonl      one line per document {"id", "output", "score"}, appended and
                                fsync'ed after every batch: a killed run loses at most one batch
    results.json                metrics, bootstrap intervals, counts (written atomically)
    results.md                  the same as a markdown table

Documents are cut into fixed batches over the full document list, and a batch only generates its
uncached documents; so a resumed run forms the same batches (greedy outputs do not depend on
what ran before) and sampled runs draw with the same per-batch seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmrl.evals.metrics import bootstrap_intervals
from vlmrl.evals.tasks import Task, get_tasks
from vlmrl.model.types import SamplingParams
from vlmrl.runs import atomic_write_json, atomic_write_text, read_json


class EvalError(ValueError):
    """An evaluation cannot run as asked (mismatched resume, bad options)."""


def greedy(max_new_tokens: int | None = None) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens or 32, temperature=0.0)


def read_predictions(path: Path, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Cached predictions by doc id. A torn last line (a kill during a write) is dropped, and
    with `repair` cut from the file so appends continue on a clean line."""
    if not path.is_file():
        return {}
    predictions: dict[str, dict[str, Any]] = {}
    good_bytes = 0
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                line = json.loads(raw)
                if not raw.endswith(b"\n"):
                    raise ValueError("unterminated line")
            except ValueError:
                break
            predictions[str(line["id"])] = line
            good_bytes += len(raw)
    if repair and good_bytes < path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return predictions


def _append(path: Path, lines: list[dict[str, Any]]) -> None:
    with open(path, "a") as handle:
        for line in lines:
            handle.write(json.dumps(line, default=_plain) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a prediction line")


def _run_manifest(vlm: Any, tasks: list[Task], sampling: SamplingParams | None, seed: int) -> dict[str, Any]:
    return {
        "model": str(getattr(vlm, "name", type(vlm).__name__)),
        "sampling": dataclasses.asdict(sampling) if sampling is not None else "greedy",
        "seed": seed,
        "tasks": {task.name: json.loads(json.dumps(task.settings, default=str)) for task in tasks},
    }


def _check_resume(out_dir: Path, manifest: dict[str, Any]) -> None:
    path = out_dir / "run.json"
    if not path.exists():
        atomic_write_json(path, manifest)
        return
    previous = read_json(path)
    for key in ("model", "sampling", "seed"):
        if previous.get(key) != manifest[key]:
            raise EvalError(
                f"{out_dir} holds a run with {key}={previous.get(key)!r}, not {manifest[key]!r}; "
                "its cached predictions do not apply: use another output directory or delete it"
            )
    for name, settings in manifest["tasks"].items():
        old = previous.get("tasks", {}).get(name)
        if old is not None and old != settings:
            raise EvalError(
                f"{out_dir}: task '{name}' was run with settings {old}, now {settings}; "
                "use another output directory or delete predictions/{name}.jsonl"
            )
    previous.setdefault("tasks", {}).update(manifest["tasks"])
    atomic_write_json(path, previous)


def _sampling_for(task: Task, sampling: SamplingParams | None, batch_index: int) -> SamplingParams:
    if sampling is None:
        return greedy(task.max_new_tokens)
    chosen = dataclasses.replace(sampling)
    if chosen.temperature > 0:
        chosen.seed = (sampling.seed or 0) + batch_index
    return chosen


def run_task(
    vlm: Any,
    task: Task,
    out_dir: Path,
    *,
    limit: int | None,
    batch_size: int,
    sampling: SamplingParams | None,
    progress: Any = None,
) -> dict[str, Any]:
    """Predict every uncached doc of one task, then score and aggregate all of them."""
    started = time.perf_counter()
    docs = task.load_docs(limit)
    path = out_dir / "predictions" / f"{task.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    cached = read_predictions(path, repair=True)
    bar = progress.add_task(task.name, total=len(docs.items)) if progress is not None else None
    generated = 0
    for batch_index, start in enumerate(range(0, len(docs.items), batch_size)):
        batch = docs.items[start : start + batch_size]
        todo = [doc for doc in batch if doc["id"] not in cached]
        if todo:
            chosen = _sampling_for(task, sampling, batch_index)
            if task.interact is not None:
                interactions = task.interact(vlm, todo, chosen)
                lines = [
                    {"id": doc["id"], "output": i.output, "score": i.score}
                    for doc, i in zip(todo, interactions)
                ]
            else:
                generations = vlm.generate([task.to_messages(doc) for doc in todo], chosen)
                lines = [
                    {"id": doc["id"], "output": g.text, "score": task.score(doc, g.text)}
                    for doc, g in zip(todo, generations)
                ]
            _append(path, lines)
            cached.update({line["id"]: line for line in lines})
            generated += len(todo)
        if bar is not None:
            progress.advance(bar, len(batch))
    scores = []
    for doc in docs.items:
        line = cached[doc["id"]]
        # Single-turn outputs are re-scored, so a fixed metric applies to cached predictions too.
        scores.append(line["score"] if task.interact is not None else task.score(doc, line["output"]))
    return {
        "scores": scores,
        "ids": [doc["id"] for doc in docs.items],
        "count": len(docs.items),
        "skipped": len(docs.skipped),
        "generated": generated,
        "cached": len(docs.items) - generated,
        "seconds": time.perf_counter() - started,
    }


def evaluate(
    vlm: Any,
    tasks: str | Sequence[str | Task],
    *,
    limit: int | None = None,
    batch_size: int = 16,
    out_dir: str | Path,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    resamples: int = 1000,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `vlm` on `tasks` (names, 'jsonl:PATH', 'hf:PATH' or Task objects).

    `sampling=None` is greedy decoding with each task's own max_new_tokens. Predictions already
    cached in `out_dir` are reused. Returns the results dict also written to results.json.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if batch_size < 1:
        raise EvalError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise EvalError(f"limit must be >= 1, got {limit}")
    task_list = get_tasks(tasks)
    names = [task.name for task in task_list]
    if len(set(names)) != len(names):
        raise EvalError(f"task names must be unique in one run, got {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _run_manifest(vlm, task_list, sampling, seed)
    _check_resume(out_dir, manifest)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    results: dict[str, Any] = {**manifest, "limit": limit, "batch_size": batch_size, "tasks": {}}
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        for task in task_list:
            outcome = run_task(
                vlm, task, out_dir, limit=limit, batch_size=batch_size, sampling=sampling, progress=progress
            )
            scores = outcome.pop("scores")
            outcome.pop("ids")
            results["tasks"][task.name] = {
                "metrics": task.aggregate(scores),
                "intervals": bootstrap_intervals(scores, task.aggregate, resamples=resamples, seed=seed),
                "primary_metric": task.primary_metric,
                "settings": manifest["tasks"][task.name],
                **outcome,
                "samples_per_second": outcome["generated"] / outcome["seconds"]
                if outcome["generated"]
                else None,
            }
    from vlmrl.evals.results import markdown_table

    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", markdown_table(results))
    return results
