"""Reading run directories back: the markdown table and the comparison of two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmrl.evals.metrics import mean_metrics, paired_bootstrap_delta
from vlmrl.evals.runner import read_predictions
from vlmrl.runs import read_json


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per (task, metric): value, 95% bootstrap interval, documents."""
    lines = [
        f"Model: `{results.get('model', '?')}`",
        "",
        "| task | metric | value | 95% CI | n |",
        "|---|---|---:|---|---:|",
    ]
    for name, task in results["tasks"].items():
        metrics = task["metrics"]
        primary = task.get("primary_metric")
        order = sorted(metrics, key=lambda k: (k != primary, "/" in k, k))
        for metric in order:
            low, high = task["intervals"].get(metric, (None, None))
            interval = "-" if low is None else f"[{low:.4f}, {high:.4f}]"
            label = f"**{metric}**" if metric == primary else metric
            lines.append(f"| {name} | {label} | {metrics[metric]:.4f} | {interval} | {task['count']} |")
        if task.get("skipped"):
            lines.append(f"| {name} | skipped (corrupt images) | {task['skipped']} | | |")
    return "\n".join(lines) + "\n"


def _aggregate_for(name: str, scores: list[dict[str, Any]]):
    from vlmrl.evals.tasks import TaskError, get_task

    try:
        return get_task(name).aggregate
    except (TaskError, OSError, ValueError):
        # A task this process cannot build (user data moved, a method's decoder not imported):
        # means per question type are still the right summary of accuracy-like scores.
        group = "question_type" if any("question_type" in s for s in scores) else None
        return lambda values: mean_metrics(values, group_key=group)


def compare_runs(
    run_a: str | Path, run_b: str | Path, resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """Per (task, metric): A, B, B - A and its paired-bootstrap 95% interval over shared docs."""
    run_a, run_b = Path(run_a), Path(run_b)
    results_a, results_b = read_json(run_a / "results.json"), read_json(run_b / "results.json")
    shared_tasks = [name for name in results_a["tasks"] if name in results_b["tasks"]]
    if not shared_tasks:
        raise ValueError(
            f"{run_a} and {run_b} share no task ({list(results_a['tasks'])} vs {list(results_b['tasks'])})"
        )
    rows = []
    for name in shared_tasks:
        predictions_a = read_predictions(run_a / "predictions" / f"{name}.jsonl")
        predictions_b = read_predictions(run_b / "predictions" / f"{name}.jsonl")
        ids = [doc_id for doc_id in predictions_a if doc_id in predictions_b]
        scores_a, scores_b = (
            _scores(name, run_a, ids, predictions_a),
            _scores(name, run_b, ids, predictions_b),
        )
        aggregate = _aggregate_for(name, scores_a)
        deltas = paired_bootstrap_delta(scores_a, scores_b, aggregate, resamples=resamples, seed=seed)
        metrics_a, metrics_b = aggregate(scores_a), aggregate(scores_b)
        for metric, (delta, (low, high)) in deltas.items():
            rows.append(
                {
                    "task": name,
                    "metric": metric,
                    "a": metrics_a[metric],
                    "b": metrics_b[metric],
                    "delta": delta,
                    "low": low,
                    "high": high,
                    "n": len(ids),
                }
            )
    return rows


def _scores(
    name: str, run: Path, ids: list[str], predictions: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    missing = [i for i in ids if not isinstance(predictions[i].get("score"), dict)]
    if missing:
        raise ValueError(f"{run}: predictions of task '{name}' for {missing[:3]} hold no score")
    return [predictions[i]["score"] for i in ids]


def comparison_table(rows: list[dict[str, Any]], label_a: str, label_b: str) -> str:
    lines = [
        f"A = `{label_a}`, B = `{label_b}`",
        "",
        "| task | metric | A | B | B - A | 95% CI | n |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        significant = row["low"] > 0 or row["high"] < 0
        delta = f"{row['delta']:+.4f}" + (" *" if significant else "")
        lines.append(
            f"| {row['task']} | {row['metric']} | {row['a']:.4f} | {row['b']:.4f} | {delta} | "
            f"[{row['low']:+.4f}, {row['high']:+.4f}] | {row['n']} |"
        )
    lines.append("")
    lines.append("`*`: the 95% interval of the difference excludes 0.")
    return "\n".join(lines) + "\n"
