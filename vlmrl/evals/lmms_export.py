"""Export our single-turn tasks as lmms-eval tasks (YAML + an HF dataset on disk).

    vlmrl eval export-lmms --tasks shapes-qa,charts-qa --out lmms_tasks
    lmms-eval --model vlmrl --tasks vlmrl_shapes_qa --include_path lmms_tasks ...

Each task becomes `OUT/vlmrl_NAME/vlmrl_NAME.yaml` and `OUT/vlmrl_NAME/data/` (images, question,
answer and the fields our scorer needs). The YAML points at the functions below, which rebuild
our doc from the row and score it with the task's own `score`: both harnesses then agree on the
score of every document by construction, and any disagreement is a difference in predictions.
The dataset path in the YAML is absolute: export again after moving the folder.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vlmrl.evals.tasks import Task, TaskError, get_task

PREFIX = "vlmrl_"
# Generation stops at the end-of-turn token; this stop string never appears in decoded text, so
# lmms-eval's default stop ("\n\n") does not cut answers our harness would keep.
NEVER_STOP = "<|im_end|>"
_RESERVED = {"id", "images", "question", "answer", "question_type"}


def lmms_task_name(name: str) -> str:
    return PREFIX + name.replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=32)
def _task(spec: str, options: str = "{}") -> Task:
    return get_task(spec, **json.loads(options))


def _row_task(row: dict[str, Any]) -> Task:
    # Rows exported before task options existed have no options column.
    return _task(row["vlmrl_task"], row.get("vlmrl_options") or "{}")


def _our_doc(row: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "id": row["id"],
        "images": [
            image.convert("RGB") if image.mode != "RGB" else image for image in row.get("images") or []
        ],
        "question": row["question"],
        "answer": row["answer"],
        "question_type": row["question_type"],
    }
    doc.update(json.loads(row.get("extra") or "{}"))
    return doc


def doc_to_visual(row: dict[str, Any]) -> list[Any]:
    return _our_doc(row)["images"]


def doc_to_text(row: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The text part of our own prompt for the doc (images are passed separately)."""
    messages = _row_task(row).to_messages(_our_doc(row))
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content if part.get("type") == "text")


def process_results(row: dict[str, Any], results: list[str]) -> dict[str, float]:
    score = _row_task(row).score(_our_doc(row), results[0] if results else "")
    return {key: float(value) for key, value in score.items() if isinstance(value, (int, float))}


def _check_exportable(task: Task, doc: dict[str, Any]) -> None:
    if task.interactive:
        raise TaskError(f"task '{task.name}' is interactive; only single-turn tasks export to lmms-eval")
    messages = task.to_messages(doc)
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise TaskError(f"task '{task.name}': only single-user-turn prompts export to lmms-eval")
    content = messages[0]["content"]
    if not isinstance(content, str):
        images = [part for part in content if part.get("type") == "image"]
        if content[: len(images)] != images:
            raise TaskError(f"task '{task.name}': images must precede the text to export to lmms-eval")


def export_task(
    spec: str, out_dir: str | Path, limit: int | None = None, options: dict[str, Any] | None = None
) -> Path:
    """Write one task as an lmms-eval task folder; returns the YAML path. `options` (JSON data)
    go to `get_task(spec, **options)` here and wherever lmms-eval rebuilds the task, e.g.
    {"response": "raw"} for a jsonl:/hf: task."""
    import datasets

    options_text = json.dumps(options or {}, sort_keys=True)
    task = get_task(spec, **(options or {}))
    docs = task.load_docs(limit).items
    if not docs:
        raise TaskError(f"task '{task.name}' has no documents to export")
    _check_exportable(task, docs[0])
    extras = []
    for doc in docs:
        extra = {key: value for key, value in doc.items() if key not in _RESERVED}
        try:
            extras.append(json.dumps(extra, sort_keys=True))
        except TypeError as error:
            raise TaskError(
                f"task '{task.name}': doc field(s) {sorted(extra)} are not JSON data, so it cannot be exported"
            ) from error
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "images": datasets.Sequence(datasets.Image()),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "question_type": datasets.Value("string"),
            "extra": datasets.Value("string"),
            "vlmrl_task": datasets.Value("string"),
            "vlmrl_options": datasets.Value("string"),
        }
    )
    columns = {
        "id": [doc["id"] for doc in docs],
        "images": [list(doc.get("images", [])) for doc in docs],
        "question": [doc.get("question", "") for doc in docs],
        "answer": [str(doc.get("answer", "")) for doc in docs],
        "question_type": [str(doc.get("question_type", "")) for doc in docs],
        "extra": extras,
        "vlmrl_task": [spec] * len(docs),
        "vlmrl_options": [options_text] * len(docs),
    }
    name = lmms_task_name(task.name)
    folder = Path(out_dir).resolve() / name
    folder.mkdir(parents=True, exist_ok=True)
    dataset = datasets.DatasetDict({"test": datasets.Dataset.from_dict(columns, features=features)})
    dataset.save_to_disk(str(folder / "data"))

    metric_keys = [k for k, v in task.score(docs[0], "").items() if isinstance(v, (int, float))]
    module = __name__
    config = {
        "task": name,
        "dataset_path": str(folder / "data"),
        "dataset_kwargs": {"load_from_disk": True},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_visual": f"!function {module}.doc_to_visual",
        "doc_to_text": f"!function {module}.doc_to_text",
        "doc_to_target": "answer",
        "process_results": f"!function {module}.process_results",
        "generation_kwargs": {
            "max_new_tokens": task.max_new_tokens,
            "temperature": 0,
            "do_sample": False,
            "until": [NEVER_STOP],
        },
        "metric_list": [
            {"metric": key, "aggregation": "mean", "higher_is_better": True} for key in metric_keys
        ],
        "metadata": {"version": 1, "source": f"vlmrl task {spec}", "documents": len(docs)},
    }
    text = yaml.safe_dump(config, sort_keys=False)
    # `!function` is a YAML tag lmms-eval resolves; safe_dump would quote it as a string.
    text = text.replace("'!function ", "!function ").replace(".doc_to_visual'", ".doc_to_visual")
    text = text.replace(".doc_to_text'", ".doc_to_text").replace(".process_results'", ".process_results")
    from vlmrl.runs import atomic_write_text

    path = folder / f"{name}.yaml"
    atomic_write_text(path, text)
    return path


def export_tasks(specs: str | Sequence[str], out_dir: str | Path, limit: int | None = None) -> list[Path]:
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    return [export_task(spec, out_dir, limit) for spec in specs]


def run_lmms(
    model: Any,
    tasks: Sequence[str],
    *,
    include_path: str | Path | Sequence[str | Path] | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    output_path: str | Path | None = None,
    device: str = "auto",
    model_args: str = "",
    response: str | None = None,
) -> dict[str, Any]:
    """lmms-eval's `simple_evaluate` with our model class; returns its results (with samples).

    `model` is a spec for `pretrained=` ('tiny', a checkpoint directory), or an already built
    lmms-eval model instance (any class), which is then used as is. `response` ('answer' or
    'raw', see `vlmrl.evals.lmms_adapter`) goes into the model args; None keeps the adapter's
    default. With `output_path`, lmms-eval's own files are written there as its CLI writes them
    (`MODEL/DATE_results.json`, `MODEL/DATE_samples_TASK.jsonl`), plus `lmms_results.json`;
    `results["written"]` then names them.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import get_datetime_str

    from vlmrl.evals.lmms_adapter import MODEL_ID, register

    register()
    extra = [part for part in (model_args, f"response={response}" if response else "") if part]
    arguments = ",".join([f"pretrained={model},device={device}", *extra])
    if not isinstance(model, str):
        arguments = ""
    if isinstance(include_path, (str, Path)):
        include_path = [include_path]
    paths = [str(Path(p).resolve()) for p in include_path] if include_path else None
    manager = TaskManager("WARNING", include_path=paths, model_name=MODEL_ID)
    tracker = EvaluationTracker(output_path=str(output_path)) if output_path is not None else None
    stamp = get_datetime_str(timezone="UTC")
    results = simple_evaluate(
        model=MODEL_ID if isinstance(model, str) else model,
        model_args=arguments,
        tasks=list(tasks),
        batch_size=batch_size,
        limit=limit,
        task_manager=manager,
        log_samples=True,
        bootstrap_iters=0,
        verbosity="WARNING",
        evaluation_tracker=tracker,
        datetime_str=stamp,
    )
    if results is None:
        raise RuntimeError("lmms-eval returned no results (is this process rank 0?)")
    if output_path is not None:
        results["written"] = _write_lmms_files(results, tracker, Path(output_path), stamp)
    return results


def _as_text(value: Any) -> Any:
    from vlmrl.runs import json_default

    try:
        return json_default(value)
    except TypeError:
        return getattr(value, "__qualname__", None) or str(value)


def _write_lmms_files(results: dict[str, Any], tracker: Any, output_path: Path, stamp: str) -> dict[str, Any]:
    """lmms-eval's result and sample files (through its own tracker), and our summary."""
    from vlmrl.runs import atomic_write_json

    summary = {key: results[key] for key in ("results", "configs", "versions") if key in results}
    # Stock task configs hold Python functions (`!function` aggregations): stored by name.
    atomic_write_json(output_path / "lmms_results.json", json.loads(json.dumps(summary, default=_as_text)))
    samples = results.get("samples") or {}
    aggregated = {key: value for key, value in results.items() if key != "samples"}
    # The tracker rewrites the sample dicts it saves (drops the doc, flattens responses): give it
    # shallow copies so the caller's results keep every field.
    copies = {task: [dict(sample) for sample in rows] for task, rows in samples.items()}
    tracker.save_results_aggregated(results=aggregated, samples=copies, datetime_str=stamp)
    for task, rows in copies.items():
        tracker.save_results_samples(task_name=task, samples=rows)
    folder = output_path / tracker.general_config_tracker.model_name_sanitized
    date_id = stamp.replace(":", "-")
    written = {
        "summary": str(output_path / "lmms_results.json"),
        "results": str(folder / f"{date_id}_results.json"),
        "samples": {task: str(folder / f"{date_id}_samples_{task}.jsonl") for task in samples},
    }
    # The tracker logs and swallows its own write errors; say so here instead of failing later.
    missing = [
        path for path in [written["results"], *written["samples"].values()] if not Path(path).is_file()
    ]
    if missing:
        raise RuntimeError(f"lmms-eval did not write {missing} (see its log above)")
    return written
