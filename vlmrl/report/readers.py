"""Reading a run directory back for the report, tolerating runs that are still being written.

A run directory (`runs/NAME/`, DESIGN 4) holds `config.yaml`, `metrics.jsonl`, `samples/*.jsonl`
(episodes written by `vlmrl.rl.episode.save_episodes`, images beside them), `results.json` and
evaluations under `eval/NAME/` written by `vlmrl.evals.evaluate`. The report may be built while a
command is still writing, so a torn last line or a missing file is skipped and counted, never
raised: the page then says what it could not read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

STEP_IN_NAME = re.compile(r"step-(\d+)")


@dataclass
class Sample:
    """One saved episode as stored (a JSON record), with where its images lie for the page."""

    record: dict[str, Any]
    source: str  # the JSONL file, relative to the run directory
    line: int
    step: int | None
    images: list[str | None]  # per image in order of appearance: URL relative to the run, or None

    @property
    def info(self) -> dict[str, Any]:
        info = self.record.get("info")
        return info if isinstance(info, dict) else {}

    @property
    def replay(self) -> dict[str, Any] | None:
        replay = self.info.get("replay")
        return replay if isinstance(replay, dict) else None

    @property
    def outcome(self) -> str:
        """'correct', 'wrong' or 'unknown', from the fields methods use to record an outcome."""
        for value in (
            self.info.get("correct"),
            (self.replay or {}).get("correct"),
            (self.replay or {}).get("success"),
        ):
            if isinstance(value, bool):
                return "correct" if value else "wrong"
        # RLVR-style episodes carry an accuracy reward of 0 or 1 instead of a flag.
        components = self.record.get("reward_components")
        if isinstance(components, dict) and components.get("accuracy") in (0, 0.0, 1, 1.0):
            return "correct" if components["accuracy"] == 1 else "wrong"
        return "unknown"

    @property
    def role(self) -> str:
        role = self.record.get("role")
        return str(role) if role else ""


@dataclass
class RunContents:
    directory: Path
    config_files: dict[str, str] = field(default_factory=dict)  # name -> YAML text
    metrics: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    samples_total: int = 0  # episodes on disk, before the per-file cap
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)  # eval name -> results.json
    comparison: list[dict[str, Any]] | None = None  # before -> after rows (paired bootstrap)
    results: dict[str, Any] | None = None  # the command's own results.json
    data_previews: list[tuple[str, str]] = field(default_factory=list)  # (label, URL of a contact sheet)
    problems: list[str] = field(default_factory=list)


def relative_url(path: Path, root: Path) -> str | None:
    """A URL for `path` relative to `root`, or None when the file is missing or lies outside it.

    Image paths come from files a run wrote (and a hand-edited or hostile file could hold
    anything), so the page only ever links to files inside the run directory.
    """
    try:
        resolved = path.resolve()
        relative = resolved.relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    if not resolved.is_file():
        return None
    return quote(relative.as_posix())


def read_config_files(directory: Path) -> dict[str, str]:
    files = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            files[path.name] = path.read_text(errors="replace")
        except OSError:
            continue
    return files


def read_metrics(directory: Path, problems: list[str]) -> list[dict[str, Any]]:
    path = directory / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"metrics.jsonl line {number} is not JSON (a write in progress?); skipped")
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
    return records


def _message_images(record: dict[str, Any], jsonl: Path, root: Path) -> list[str | None]:
    images: list[str | None] = []
    messages = record.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image":
                value = part.get("image")
                images.append(relative_url(jsonl.parent / str(value), root) if value else None)
    return images


def _select(records: list[dict[str, Any]], limit: int) -> list[tuple[int, dict[str, Any]]]:
    """The first `limit` episodes of a file, cut at a group boundary when that keeps some.

    Keeping whole groups keeps a GRPO group (or one game's players) together in the browser.
    """
    numbered = list(enumerate(records, start=1))
    if len(numbered) <= limit:
        return numbered
    chosen = numbered[:limit]
    last_group = chosen[-1][1].get("group")
    whole = [item for item in chosen if item[1].get("group") != last_group]
    if whole and numbered[limit][1].get("group") == last_group:
        return whole
    return chosen


def read_samples(
    directory: Path, per_file: int, problems: list[str], max_files: int = 40
) -> tuple[list[Sample], int]:
    samples_directory = directory / "samples"
    if not samples_directory.is_dir():
        return [], 0
    files = sorted(
        samples_directory.rglob("*.jsonl"),
        key=lambda p: (int(m.group(1)) if (m := STEP_IN_NAME.search(p.stem)) else -1, p.as_posix()),
    )
    if len(files) > max_files:
        # Long runs save many steps: keep the first, the last and evenly spaced ones between.
        chosen = sorted({round(i * (len(files) - 1) / (max_files - 1)) for i in range(max_files)})
        problems.append(f"{len(files)} samples files: showing {len(chosen)} spread over the run")
        files = [files[i] for i in chosen]
    samples: list[Sample] = []
    total = 0
    for path in files:
        relative = path.relative_to(directory).as_posix()
        records = []
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{relative} line {number} is not JSON; skipped")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                problems.append(f"{relative} line {number} is not an episode record; skipped")
                continue
            records.append(record)
        total += len(records)
        match = STEP_IN_NAME.search(path.stem)
        step = int(match.group(1)) if match else None
        for number, record in _select(records, per_file):
            samples.append(
                Sample(
                    record=record,
                    source=relative,
                    line=number,
                    step=step,
                    images=_message_images(record, path, directory),
                )
            )
    return samples, total


def _read_json(path: Path, problems: list[str], where: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        problems.append(f"{where} could not be read ({error}); skipped")
        return None


def read_evaluations(directory: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    """`eval/NAME/results.json` files written by the harness (and `eval/results.json`)."""
    evaluations = {}
    root = directory / "eval"
    candidates = [root / "results.json", *sorted(root.glob("*/results.json"))]
    for path in candidates:
        if not path.is_file():
            continue
        name = "eval" if path.parent == root else path.parent.name
        results = _read_json(path, problems, path.relative_to(directory).as_posix())
        if isinstance(results, dict) and isinstance(results.get("tasks"), dict):
            evaluations[name] = results
    return evaluations


def read_comparison(directory: Path, evaluations: dict[str, Any], problems: list[str]) -> list | None:
    """Before -> after rows: `eval/comparison.json` when a command wrote it, else computed from
    `eval/before` and `eval/after` with the harness's paired bootstrap."""
    path = directory / "eval" / "comparison.json"
    if path.is_file():
        rows = _read_json(path, problems, "eval/comparison.json")
        return rows if isinstance(rows, list) else None
    if "before" in evaluations and "after" in evaluations:
        from vlmrl.evals.results import compare_runs

        try:
            return compare_runs(directory / "eval" / "before", directory / "eval" / "after")
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"eval/before vs eval/after could not be compared ({error})")
    return None


def read_run(directory: str | Path, samples_per_file: int = 32) -> RunContents:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory (expected a run directory, e.g. runs/NAME)")
    contents = RunContents(directory=directory)
    problems = contents.problems
    contents.config_files = read_config_files(directory)
    contents.metrics = read_metrics(directory, problems)
    contents.samples, contents.samples_total = read_samples(directory, samples_per_file, problems)
    contents.evaluations = read_evaluations(directory, problems)
    contents.comparison = read_comparison(directory, contents.evaluations, problems)
    if (directory / "results.json").is_file():
        results = _read_json(directory / "results.json", problems, "results.json")
        contents.results = results if isinstance(results, dict) else None
    for sheet in sorted(directory.glob("data/*/contact_sheet.png")):
        url = relative_url(sheet, directory)
        if url:
            contents.data_previews.append((sheet.parent.name, url))
    return contents
