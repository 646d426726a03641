"""Run files: atomic writes (never torn, no temporary leftovers), JSON helpers, metrics logging."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmrl import runs
from vlmrl.config import load_yaml, option
from vlmrl.runs import (
    MetricsLogger,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_default,
    read_json,
    read_metrics,
    run_directory,
    save_run_config,
)


def expected_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# --------------------------------------------------------------------------- atomic files


def test_atomic_writes_create_parents_and_leave_only_the_file(tmp_path):
    target = tmp_path / "a" / "b" / "result.json"
    atomic_write_json(target, {"accuracy": np.float32(0.5), "counts": np.arange(3), "path": Path("x")})
    assert json.loads(target.read_text()) == {"accuracy": 0.5, "counts": [0, 1, 2], "path": "x"}
    assert target.read_text().endswith("\n")
    atomic_write_text(tmp_path / "a" / "note.txt", "héllo")
    atomic_write_bytes(tmp_path / "a" / "blob.bin", b"\x00\x01")
    assert (tmp_path / "a" / "note.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "a" / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path / "a")) == ["b", "blob.bin", "note.txt"]
    assert os.listdir(tmp_path / "a" / "b") == ["result.json"]
    # readable like any other file (not mkstemp's private 0600)
    assert stat.S_IMODE(target.stat().st_mode) == expected_file_mode()
    # overwriting replaces the content
    atomic_write_json(target, [1, 2])
    assert read_json(target) == [1, 2]
    assert os.listdir(tmp_path / "a" / "b") == ["result.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    before = target.read_bytes()

    # the value cannot be serialised: nothing is touched
    with pytest.raises(TypeError, match="cannot serialise object to JSON"):
        atomic_write_json(target, {"step": object()})
    assert target.read_bytes() == before

    # the disk fails after the temporary file was written, before the rename
    def failing_fsync(descriptor):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(runs.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="injected"):
        atomic_write_json(target, {"step": 2})
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]

    # the rename itself fails
    def failing_replace(source, destination):
        raise OSError("rename refused (injected)")

    monkeypatch.setattr(runs.os, "replace", failing_replace)
    with pytest.raises(OSError, match="injected"):
        atomic_write_text(target, "{}")
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]


WRITER = textwrap.dedent(
    """
    import sys
    from vlmrl.runs import atomic_write_json
    path = sys.argv[1]
    payloads = [{"version": v, "data": [v] * 200_000} for v in range(2)]
    step = 0
    while True:
        atomic_write_json(path, payloads[step % 2], indent=None)
        step += 1
    """
)


def test_a_killed_writer_never_leaves_a_torn_file(tmp_path):
    """SIGKILL a process that rewrites a 1 MB JSON file in a loop: the file always parses
    and is one of the two versions, whole."""
    target = tmp_path / "checkpoint.json"
    for attempt in range(4):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=Path(__file__).parents[1])
        try:
            deadline = time.monotonic() + 30
            while not target.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert target.exists(), "the writer never wrote its first file"
            time.sleep(0.05 + 0.07 * attempt)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        value = json.loads(target.read_text())
        assert value["version"] in (0, 1)
        assert value["data"] == [value["version"]] * 200_000
    # a kill can strand a temporary sibling, but only a hidden one named after the file
    leftovers = [name for name in os.listdir(tmp_path) if name != "checkpoint.json"]
    assert all(name.startswith(".checkpoint.json.") and name.endswith(".tmp") for name in leftovers)


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "checkpoints" / "step-1"
    with atomic_directory(target) as temporary:
        assert not target.exists() and temporary.parent == target.parent
        (temporary / "weights.bin").write_bytes(b"w1")
        (temporary / "nested").mkdir()
        (temporary / "nested" / "state.json").write_text("{}")
    assert (target / "weights.bin").read_bytes() == b"w1"
    assert (target / "nested" / "state.json").is_file()
    assert stat.S_IMODE((target / "weights.bin").stat().st_mode) == expected_file_mode()
    assert os.listdir(target.parent) == ["step-1"]

    # a failure inside the block leaves the previous directory exactly as it was
    with pytest.raises(RuntimeError, match="killed"), atomic_directory(target) as temporary:
        (temporary / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed half way")
    assert (target / "weights.bin").read_bytes() == b"w1"
    assert os.listdir(target.parent) == ["step-1"]

    # a new version replaces the whole directory: no file of the old one survives
    with atomic_directory(target) as temporary:
        (temporary / "weights.safetensors").write_bytes(b"w2")
    assert sorted(os.listdir(target)) == ["weights.safetensors"]
    assert os.listdir(target.parent) == ["step-1"]

    # a failure on a fresh path leaves nothing behind
    with pytest.raises(ValueError), atomic_directory(tmp_path / "fresh"):
        raise ValueError("boom")
    assert sorted(os.listdir(tmp_path)) == ["checkpoints"]


def test_read_json_names_the_file_and_the_expectation(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.json does not exist \(expected a JSON file\)"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON"):
        read_json(bad)


def test_json_default_turns_arrays_tensors_and_paths_into_json():
    value = {
        "tensor": torch.tensor([1.5, 2.0]),
        "scalar": torch.tensor(3),
        "int": np.int64(4),
        "path": Path("/a"),
    }
    assert json.loads(json.dumps(value, default=json_default)) == {
        "tensor": [1.5, 2.0],
        "scalar": 3,
        "int": 4,
        "path": "/a",
    }
    with pytest.raises(TypeError, match="cannot serialise set"):
        json_default({1})


# --------------------------------------------------------------------------- metrics


def test_metrics_logger_appends_and_resume_truncates_later_steps(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log(step, {"loss": 1.0 / step, "reward": np.float32(step)})
    logger.close()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[1]["loss"] == 0.5 and records[4]["reward"] == 5.0 and "time" in records[0]

    # the run was checkpointed at step 3 and killed at step 5: resuming drops steps 4 and 5
    resumed = MetricsLogger(tmp_path, resume_step=3, tensorboard=False)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    resumed.log(4, {"loss": 0.2})
    resumed.close()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] == 0.2  # one history, the resumed one
    assert os.listdir(tmp_path) == ["metrics.jsonl"]

    # a fresh (not resumed) run in the same directory starts a new history
    fresh = MetricsLogger(tmp_path, tensorboard=False)
    fresh.log(1, {"loss": 9.0})
    fresh.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 9.0)]


def test_metrics_logger_mirrors_finite_scalars_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(tmp_path)
    logger.log(1, {"loss": 0.5, "note": "text", "broken": float("nan"), "flag": True})
    logger.log(2, {"loss": 0.25, "broken": 1.0})
    logger.close()
    assert any(name.startswith("events.") for name in os.listdir(tmp_path))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["broken", "loss"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 0.5), (2, 0.25)]
    assert [e.step for e in events.Scalars("broken")] == [2]  # the NaN was not mirrored
    assert read_metrics(tmp_path)[0]["note"] == "text"


# --------------------------------------------------------------------------- run directories


@dataclasses.dataclass
class SmallConfig:
    steps: int = option(3, help="Steps.")
    output: Path = option(Path("runs/x"), help="Where.")
    tags: list[str] = option(help="Labels.", factory=list)


def test_run_directory_and_saved_config(tmp_path):
    named = run_directory("experiment", root=tmp_path)
    assert named == tmp_path / "experiment" and named.is_dir()
    assert run_directory("experiment", root=tmp_path) == named  # reusing a name is fine (resume)
    stamped = run_directory(None, root=tmp_path, prefix="grpo")
    assert stamped.is_dir() and stamped.name.startswith("grpo-20")
    config = SmallConfig(steps=7, output=Path("runs/y"), tags=["a"])
    path = save_run_config(named, config)
    assert path == named / "config.yaml"
    assert load_yaml(SmallConfig, path) == config
    assert sorted(os.listdir(named)) == ["config.yaml"]
