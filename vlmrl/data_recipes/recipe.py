"""The machinery every recipe shares: sharded, resumable, deterministic generation.

A recipe is a pure function `record(index, config) -> dict` plus the HF `datasets` features of
its records. `build(recipe, config)` cuts the index range into shards, writes each shard as an
Arrow stream file (atomically, with a sha256 sidecar), skips shards a killed run already
finished (after re-checking their checksum), then concatenates the shards into a `datasets`
dataset saved to `OUT/dataset`, writes `OUT/manifest.json` atomically and a contact sheet
`OUT/contact_sheet.png`. Because a record depends only on (seed, index), the same arguments
give byte-identical shards however many workers ran them and however often the run was killed.

Layout of OUT:
    shards/run.json                 what the shards were made with (checked on resume)
    shards/shard-00000.arrow        records [0, shard_size)
    shards/shard-00000.json         {"sha256": ..., "records": [start, end]}
    dataset/                        `datasets.load_from_disk` directory (all shards, in order)
    manifest.json                   recipe, version, seed, n, counts, parameters, shard checksums
    contact_sheet.png               a few samples
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmrl.config import option, to_dict
from vlmrl.runs import atomic_directory, atomic_write_bytes, atomic_write_json, read_json

MANIFEST = "manifest.json"
DATASET_DIRECTORY = "dataset"
SHARD_DIRECTORY = "shards"
CONTACT_SHEET = "contact_sheet.png"
# Options that say where/how to run, not what to make: they never change a byte of the output.
RUN_OPTIONS = ("out", "workers", "overwrite")


class RecipeError(ValueError):
    """A recipe's input or output directory is not what was expected."""


@dataclass
class RecipeConfig:
    """Options every recipe has."""

    out: str = option("data/out", help="Output directory (dataset/, manifest.json, contact_sheet.png).")
    n: int = option(1000, help="Number of records to generate.")
    seed: int = option(0, help="Seed; record i depends only on (seed, i).")
    workers: int = option(1, help="Worker processes generating shards in parallel.")
    shard_size: int = option(500, help="Records per shard (the unit of resume and of checksums).")
    overwrite: bool = option(False, help="Delete an existing output made with other parameters.")


@dataclass
class Recipe:
    name: str
    version: str
    record: Callable[[int, Any], dict[str, Any]]  # (index, config) -> record; pure in (config, index)
    features: Callable[[Any], Any]  # config -> datasets.Features
    tile: Callable[[dict[str, Any]], tuple[Any, str]]  # record -> (PIL image, label) for the contact sheet
    count_columns: tuple[str, ...] = ()  # columns whose value counts go into the manifest
    # config -> (config with derived values such as n filled in, extra manifest facts); run once
    prepare: Callable[[Any], tuple[Any, dict[str, Any]]] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parameters(config: Any) -> dict[str, Any]:
    """The options that determine the output (everything but where and how fast)."""
    return {k: v for k, v in to_dict(config).items() if k not in RUN_OPTIONS}


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    if n < 1:
        raise RecipeError(f"--n must be at least 1, got {n}")
    if shard_size < 1:
        raise RecipeError(f"--shard-size must be at least 1, got {shard_size}")
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def shard_path(out: Path, shard: int) -> Path:
    return out / SHARD_DIRECTORY / f"shard-{shard:05d}.arrow"


def encode_shard(recipe: Recipe, config: Any, start: int, end: int, progress: Any = None) -> bytes:
    """Arrow stream bytes of records [start, end) (HF features in the schema metadata)."""
    import pyarrow as pa

    features = recipe.features(config)
    rows = []
    for index in range(start, end):
        rows.append(features.encode_example(recipe.record(index, config)))
        if progress is not None:
            with progress.get_lock():
                progress.value += 1
    columns = {name: [row[name] for row in rows] for name in features}
    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def shard_is_complete(out: Path, shard: int, start: int, end: int) -> bool:
    """True when the shard and its sidecar exist and the file still has the recorded checksum."""
    path = shard_path(out, shard)
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        return False
    try:
        info = read_json(sidecar)
    except ValueError:
        return False
    return info.get("records") == [start, end] and info.get("sha256") == sha256_file(path)


def write_shard(
    recipe: Recipe, config: Any, out: Path, shard: int, start: int, end: int, progress=None
) -> str:
    data = encode_shard(recipe, config, start, end, progress)
    path = shard_path(out, shard)
    atomic_write_bytes(path, data)
    checksum = hashlib.sha256(data).hexdigest()
    # The sidecar is written last: a shard without one is unfinished and gets regenerated.
    atomic_write_json(path.with_suffix(".json"), {"sha256": checksum, "records": [start, end]})
    return checksum


_worker_progress = None


def _initialise_worker(progress) -> None:
    global _worker_progress
    _worker_progress = progress


def _worker(task: tuple[Recipe, Any, str, int, int, int]) -> int:
    recipe, config, out, shard, start, end = task
    write_shard(recipe, config, Path(out), shard, start, end, _worker_progress)
    return shard


def _check_previous_run(recipe: Recipe, config: Any, out: Path) -> None:
    """Refuse to mix shards made with other parameters (unless --overwrite clears them)."""
    import shutil

    run_file = out / SHARD_DIRECTORY / "run.json"
    expected = {"recipe": recipe.name, "version": recipe.version, "parameters": parameters(config)}
    if run_file.is_file():
        try:
            previous = read_json(run_file)
        except ValueError:
            previous = None
        if previous != expected:
            if not config.overwrite:
                raise RecipeError(
                    f"{out} holds shards made with other parameters ({run_file}: {previous}); "
                    f"pass --overwrite to replace them or choose another --out"
                )
            shutil.rmtree(out / SHARD_DIRECTORY)
    elif (out / MANIFEST).exists() and not config.overwrite:
        raise RecipeError(
            f"{out} holds a dataset without shards/run.json; pass --overwrite or choose another --out"
        )
    atomic_write_json(run_file, expected)


def build(recipe: Recipe, config: Any, console: Any = None) -> dict[str, Any]:
    """Generate (or finish generating) the dataset; returns the manifest."""
    import datasets
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    datasets.disable_progress_bars()  # ours is the one progress bar the user sees
    console = console or Console(stderr=True)
    out = Path(config.out)
    if config.workers < 1:
        raise RecipeError(f"--workers must be at least 1, got {config.workers}")
    extra: dict[str, Any] = {}
    if recipe.prepare is not None:
        config, extra = recipe.prepare(config)
    ranges = shard_ranges(config.n, config.shard_size)
    _check_previous_run(recipe, config, out)
    started = time.perf_counter()

    todo = [
        (shard, start, end)
        for shard, (start, end) in enumerate(ranges)
        if not shard_is_complete(out, shard, start, end)
    ]
    kept = len(ranges) - len(todo)
    if kept:
        console.print(f"[green]resuming[/green]: {kept} of {len(ranges)} shards already done and verified")
    done_records = config.n - sum(end - start for _, start, end in todo)
    columns = (
        TextColumn(f"[bold]{recipe.name}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    if todo:
        if config.workers == 1 or len(todo) == 1:
            with Progress(*columns, console=console) as bar:
                task = bar.add_task(recipe.name, total=config.n, completed=done_records)
                counter = _LocalCounter()
                for shard, start, end in todo:
                    counter.value = 0
                    write_shard(recipe, config, out, shard, start, end, counter)
                    bar.advance(task, end - start)
        else:
            context = multiprocessing.get_context("spawn")
            progress_counter = context.Value("i", 0)
            tasks = [(recipe, config, str(out), shard, start, end) for shard, start, end in todo]
            # The pool starts before the progress bar's refresh thread exists.
            with context.Pool(
                min(config.workers, len(todo)), _initialise_worker, (progress_counter,)
            ) as pool:
                pending = pool.map_async(_worker, tasks, chunksize=1)
                with Progress(*columns, console=console) as bar:
                    task = bar.add_task(recipe.name, total=config.n, completed=done_records)
                    while not pending.ready():
                        pending.wait(0.2)
                        bar.update(task, completed=done_records + progress_counter.value)
                    pending.get()  # re-raises a worker's error
                    bar.update(task, completed=config.n)

    shards = []
    for shard, (start, end) in enumerate(ranges):
        path = shard_path(out, shard)
        info = read_json(path.with_suffix(".json"))
        shards.append(
            {"file": f"{SHARD_DIRECTORY}/{path.name}", "records": [start, end], "sha256": info["sha256"]}
        )
    dataset = _concatenate(out, len(ranges))
    counts: dict[str, Any] = {"records": len(dataset), "shards": len(ranges)}
    for column in recipe.count_columns:
        counts[column] = dict(sorted(Counter(dataset[column]).items()))
    with atomic_directory(out / DATASET_DIRECTORY) as temporary:
        dataset.save_to_disk(str(temporary))
    write_contact_sheet(recipe, dataset, out / CONTACT_SHEET)
    from vlmrl import __version__

    manifest = {
        "recipe": recipe.name,
        "version": recipe.version,
        "seed": config.seed,
        "n": config.n,
        "shard_size": config.shard_size,
        "counts": counts,
        "parameters": parameters(config),
        "columns": list(dataset.features),
        "shards": shards,
        "vlmrl_version": __version__,
        **extra,
    }
    atomic_write_json(out / MANIFEST, manifest)
    elapsed = time.perf_counter() - started
    console.print(f"wrote {len(dataset)} {recipe.name} records to {out} in {elapsed:.1f} s")
    return manifest


class _LocalCounter:
    """Same interface as multiprocessing.Value for the single-process path."""

    def __init__(self) -> None:
        self.value = 0

    def get_lock(self):
        import contextlib

        return contextlib.nullcontext()


def _concatenate(out: Path, shard_count: int):
    import datasets

    parts = [datasets.Dataset.from_file(str(shard_path(out, shard))) for shard in range(shard_count)]
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


# --------------------------------------------------------------------------- reading back

REQUIRED_MANIFEST_KEYS = ("recipe", "version", "seed", "n", "counts", "parameters", "shards")


def load_recipe_dataset(directory: str | Path, verify_checksums: bool = False):
    """The `datasets.Dataset` a recipe wrote to `directory`, after checking its manifest.

    Raises RecipeError naming the directory and what is wrong (no manifest, a manifest missing
    keys, a record count that disagrees, shards whose checksum changed when verifying).
    """
    import datasets

    directory = Path(directory)
    if not directory.is_dir():
        raise RecipeError(f"{directory} is not a directory (expected the --out of `vlmrl data ...`)")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise RecipeError(
            f"{directory} has no {MANIFEST}: not a finished `vlmrl data` output (rerun to finish it)"
        )
    try:
        manifest = read_json(manifest_path)
    except ValueError as error:
        raise RecipeError(str(error)) from error
    if not isinstance(manifest, dict):
        raise RecipeError(f"{manifest_path} must hold a JSON object")
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise RecipeError(f"{manifest_path} lacks {missing}; expected keys {list(REQUIRED_MANIFEST_KEYS)}")
    dataset_path = directory / DATASET_DIRECTORY
    if not dataset_path.is_dir():
        raise RecipeError(f"{directory} has a manifest but no {DATASET_DIRECTORY}/ directory")
    try:
        dataset = datasets.load_from_disk(str(dataset_path))
    except Exception as error:  # datasets raises several types for a damaged directory
        raise RecipeError(f"{dataset_path} is not a readable datasets directory: {error}") from error
    if len(dataset) != manifest["n"]:
        raise RecipeError(
            f"{dataset_path} holds {len(dataset)} records but {manifest_path} says n={manifest['n']}"
        )
    if verify_checksums:
        for shard in manifest["shards"]:
            path = directory / shard["file"]
            if not path.is_file() or sha256_file(path) != shard["sha256"]:
                raise RecipeError(f"shard {path} is missing or its sha256 differs from {manifest_path}")
    dataset.manifest = manifest  # type: ignore[attr-defined]
    return dataset


# --------------------------------------------------------------------------- contact sheet


def write_contact_sheet(recipe: Recipe, dataset: Any, path: Path, count: int = 12, columns: int = 4) -> Path:
    """A grid of the first records with a short label under each."""
    tiles = [recipe.tile(dataset[i]) for i in range(min(count, len(dataset)))]
    return atomic_write_bytes(path, contact_sheet_png(tiles, columns))


def contact_sheet_png(tiles: list[tuple[Any, str]], columns: int = 4, tile_size: int = 224) -> bytes:
    """Tiles scaled to fit tile_size x tile_size, each row as tall as its tallest tile, labels below."""
    import io
    import textwrap

    from PIL import Image, ImageDraw

    label_height = 44
    scaled = []
    for image, label in tiles:
        image = image.convert("RGB")
        scale = tile_size / max(image.size)
        scaled.append(
            (image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale)))), label)
        )
    rows = [scaled[i : i + columns] for i in range(0, max(1, len(scaled)), columns)]
    heights = [max((image.height for image, _ in row), default=tile_size) + label_height for row in rows]
    sheet = Image.new("RGB", (columns * tile_size, sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for row, height in zip(rows, heights):
        for column, (image, label) in enumerate(row):
            x = column * tile_size
            sheet.paste(image, (x, y))
            lines = textwrap.wrap(label, width=tile_size // 6)[:3]
            draw.multiline_text(
                (x + 2, y + height - label_height + 1), "\n".join(lines), fill="black", spacing=1
            )
        y += height
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
