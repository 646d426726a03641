"""Near-duplicate removal and hard-pair mining over image embeddings with a faiss index.

An embedder is any callable `list[PIL.Image] -> float array [count, dim]`. The built-in one
(`color_histogram_embedder`) needs no model: a joint colour histogram plus a downsampled
grey thumbnail. A model-based embedder (the VLM's pooled vision tower) is registered with
`register_embedder(name, factory)` and chosen by name on the command line.

Cosine similarity on L2-normalised vectors (inner-product index): two images at or above
`threshold` are duplicates, and the first one (in sorted file order) is kept. Hard pairs are
nearest neighbours that are similar (>= `hard_low`) but not duplicates: good spy-game pairs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmrl.config import option
from vlmrl.data_recipes.recipe import Recipe, RecipeConfig, RecipeError
from vlmrl.runs import atomic_write_json, read_json

Embedder = Callable[[list[Image.Image]], np.ndarray]


def color_histogram_embedder(images: list[Image.Image], bins: int = 8, thumbnail: int = 8) -> np.ndarray:
    """Joint RGB histogram (bins^3, normalised) concatenated with a thumbnail x thumbnail grey image."""
    vectors = []
    for image in images:
        rgb = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR))
        quantised = (rgb // (256 // bins)).reshape(-1, 3).astype(np.int64)
        codes = quantised[:, 0] * bins * bins + quantised[:, 1] * bins + quantised[:, 2]
        histogram = np.bincount(codes, minlength=bins**3).astype(np.float32)
        histogram /= np.linalg.norm(histogram) + 1e-9
        grey = np.asarray(image.convert("L").resize((thumbnail, thumbnail), Image.BILINEAR), dtype=np.float32)
        grey = grey - grey.mean()
        grey /= np.linalg.norm(grey) + 1e-9
        vectors.append(np.concatenate([histogram, grey.ravel()]))
    return np.stack(vectors).astype(np.float32)


EMBEDDERS: dict[str, Callable[[], Embedder]] = {"histogram": lambda: color_histogram_embedder}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make an embedder available by name (e.g. the VLM's pooled vision tower)."""
    EMBEDDERS[name] = factory


def embedder_by_name(name: str) -> Embedder:
    if name not in EMBEDDERS:
        raise RecipeError(f"unknown embedder {name!r}; registered: {sorted(EMBEDDERS)}")
    return EMBEDDERS[name]()


def embed(images_or_paths: list, embedder: Embedder, batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 embeddings, batch by batch (paths are opened lazily)."""
    chunks = []
    for start in range(0, len(images_or_paths), batch_size):
        batch = []
        for item in images_or_paths[start : start + batch_size]:
            if isinstance(item, Image.Image):
                batch.append(item)
            else:
                with Image.open(item) as opened:
                    batch.append(opened.convert("RGB"))
        vectors = np.asarray(embedder(batch), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(batch):
            raise ValueError(
                f"embedder returned shape {vectors.shape} for {len(batch)} images; expected [count, dim]"
            )
        chunks.append(vectors)
    vectors = np.concatenate(chunks)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def _neighbours(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index.search(np.ascontiguousarray(embeddings, dtype=np.float32), min(k + 1, len(embeddings)))


def deduplicate(
    embeddings: np.ndarray, threshold: float = 0.97, k: int = 10
) -> tuple[list[int], dict[int, int]]:
    """(kept indices, {dropped index: the kept index it duplicates}); earlier items win."""
    similarities, neighbours = _neighbours(embeddings, k)
    kept: list[int] = []
    duplicate_of: dict[int, int] = {}
    kept_set: set[int] = set()
    for i in range(len(embeddings)):
        match = next(
            (
                int(j)
                for s, j in zip(similarities[i], neighbours[i])
                if j != i and j in kept_set and s >= threshold
            ),
            None,
        )
        if match is None:
            kept.append(i)
            kept_set.add(i)
        else:
            duplicate_of[i] = match
    return kept, duplicate_of


def hard_pairs(
    embeddings: np.ndarray, threshold: float = 0.97, hard_low: float = 0.8, k: int = 10
) -> list[tuple[int, int, float]]:
    """(i, j, similarity) with i < j nearest neighbours in [hard_low, threshold): similar, not duplicates."""
    similarities, neighbours = _neighbours(embeddings, k)
    pairs = {}
    for i in range(len(embeddings)):
        for s, j in zip(similarities[i], neighbours[i]):
            j = int(j)
            if j >= 0 and j != i and hard_low <= s < threshold:
                pairs[(min(i, j), max(i, j))] = round(float(s), 6)
    return sorted(((i, j, s) for (i, j), s in pairs.items()), key=lambda t: (-t[2], t[0], t[1]))


# --------------------------------------------------------------------------- recipe


@dataclass
class DedupConfig(RecipeConfig):
    """`vlmrl data dedup`: drop near-duplicates from an image folder and mine hard pairs."""

    out: str = option("data/dedup", help="Output directory (kept images as a dataset; dedup.json).")
    n: int = option(0, help="Ignored: the output holds every kept image.")
    folder: str = option("", help="Folder of images (searched recursively).")
    embedder: str = option("histogram", help="Embedder name (built in: histogram).")
    threshold: float = option(0.97, help="Cosine similarity at or above which two images are duplicates.")
    hard_low: float = option(0.8, help="Lowest similarity of a mined hard pair.")
    max_side: int = option(512, help="Kept images are shrunk so their longer side is at most this.")


def _dedup_prepare(config: DedupConfig):
    from vlmrl.data_recipes.pairs import scan_image_folder

    if not config.folder:
        raise RecipeError("dedup needs --folder DIR")
    readable, unreadable = scan_image_folder(config.folder)
    embeddings = embed(readable, embedder_by_name(config.embedder))
    kept, duplicate_of = deduplicate(embeddings, config.threshold)
    root = Path(config.folder)
    names = [str(p.relative_to(root)) for p in readable]
    pairs = hard_pairs(embeddings[kept], config.threshold, config.hard_low)
    result = {
        "kept": [names[i] for i in kept],
        "duplicates": {names[i]: names[j] for i, j in sorted(duplicate_of.items())},
        "hard_pairs": [[names[kept[i]], names[kept[j]], s] for i, j, s in pairs],
        "skipped": unreadable,
    }
    atomic_write_json(Path(config.out) / "dedup.json", result)
    facts = {
        "images": len(readable),
        "kept": len(kept),
        "duplicates": len(duplicate_of),
        "hard_pairs": len(pairs),
        "skipped_count": len(unreadable),
        "skipped": unreadable,
    }
    return dataclasses.replace(config, n=len(kept)), facts


def _dedup_record(index: int, config: DedupConfig) -> dict[str, Any]:
    from vlmrl.data_recipes.pairs import load_rgb

    name = read_json(Path(config.out) / "dedup.json")["kept"][index]
    return {
        "id": f"dedup-{index}",
        "image": load_rgb(Path(config.folder) / name, config.max_side),
        "file": name,
    }


def _dedup_features(config: DedupConfig):
    from datasets import Features, Image, Value

    return Features({"id": Value("string"), "image": Image(), "file": Value("string")})


def _dedup_tile(record: dict[str, Any]):
    return record["image"], record["file"]


DEDUP_RECIPE = Recipe(
    name="dedup",
    version="1",
    record=_dedup_record,
    features=_dedup_features,
    tile=_dedup_tile,
    prepare=_dedup_prepare,
)


def hard_pairs_from(directory: str | Path) -> list[tuple[str, str, float]]:
    """The hard pairs a dedup run mined, as (file, file, similarity)."""
    return [tuple(p) for p in json.loads((Path(directory) / "dedup.json").read_text())["hard_pairs"]]
