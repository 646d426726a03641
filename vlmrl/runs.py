"""Run directories, atomic writes and metric logging shared by every command.

Nothing the suite writes may be lost or half-written: every JSON, YAML and checkpoint goes
through a temporary sibling and an atomic rename, so a killed process leaves either the old
file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _default_mode(directory: bool = False) -> int:
    """The permissions a plain open()/mkdir() would give under the current umask.

    mkstemp/mkdtemp create private (0600/0700) entries; results and checkpoints are meant to be
    read like any other file, so they get the usual permissions before the rename.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _default_mode())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_default(value: Any) -> Any:
    # tolist() first: it turns numpy/torch scalars into numbers and arrays into lists, while
    # item() fails on arrays of more than one element.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def atomic_write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=indent, default=json_default) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a JSON file)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `path` only if the block finishes.

    An existing `path` is replaced as a whole (moved aside, then deleted) so readers never
    see a mix of old and new files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield temporary
        os.chmod(temporary, _default_mode(directory=True))
        for file in temporary.rglob("*"):
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
                os.chmod(file, _default_mode())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(path, old)
        os.replace(temporary, path)
        _fsync_directory(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


class MetricsLogger:
    """Appends one JSON line per step to metrics.jsonl and mirrors scalars to TensorBoard.

    On resume from step N, lines for steps after N (written by the killed run after its last
    checkpoint) are dropped so the file describes exactly one history.
    """

    def __init__(self, directory: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.directory), purge_step=resume_step)
            except Exception:  # TensorBoard is a convenience; metrics.jsonl is the record
                self._writer = None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, "time": time.time(), **metrics}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record, default=json_default) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_directory(name: str | None, root: str | Path = "runs", prefix: str = "run") -> Path:
    """`runs/NAME`, created; a timestamped name when none is given."""
    if not name:
        name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_run_config(directory: str | Path, config: Any) -> Path:
    from vlmrl.config import to_yaml

    return atomic_write_text(Path(directory) / "config.yaml", to_yaml(config))
