"""What every method's short `vlmrl demo` run must leave behind, checked in one place.

Each method's demo test calls `check_demo_run` for the shared part (the before/after row of its
metric, both evaluations' predictions, one metrics row per step, the report) and then checks
what is its own: replay kinds, starting models, extra metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class DemoRun:
    rows: list[dict[str, Any]]  # eval/comparison.json
    row: dict[str, Any]  # the row of the metric asked for
    samples: list[dict[str, Any]]  # every saved episode record under samples/
    page: str  # report.html


def check_demo_run(out: Path, task: str, metric: str, items: int, steps: int) -> DemoRun:
    """Assert the demo in `out` compared `metric` of `task` over `items` held-out items, both
    evaluations predicted every item, and training logged steps 1..`steps`."""
    rows = json.loads((out / "eval" / "comparison.json").read_text())
    row = next(r for r in rows if r["metric"] == metric)
    assert row["task"] == task and row["n"] == items, row
    for stage in ("before", "after"):
        assert len(read_lines(out / "eval" / stage / "predictions" / f"{task}.jsonl")) == items, stage
    assert [m["step"] for m in read_lines(out / "metrics.jsonl")] == list(range(1, steps + 1))
    samples = [record for path in sorted((out / "samples").glob("*.jsonl")) for record in read_lines(path)]
    assert samples, f"no episodes saved under {out / 'samples'}"
    return DemoRun(rows=rows, row=row, samples=samples, page=(out / "report.html").read_text())
