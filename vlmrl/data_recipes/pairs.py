"""Image pairs that differ by exactly one controlled edit (for the spy game and difference tasks).

Three sources:
- shapes: recolour, reshape, remove, add or move one object; both images are rendered from
  their scene graphs (never pasted), and the edit region is everything the object can touch
  (its silhouettes before and after and its blurred shadows).
- charts: change one bar's value, one label, or one bar's colour; re-rendered, the region is
  the union of the changed artists' pixel extents.
- folder: a user's own images with a local edit: recolour a region (hue rotation), remove a
  region (OpenCV inpainting), flip a small patch, shift the brightness of a patch.

Every record stores the edit as JSON: kind, a one-line description, box [x0, y0, x1, y1]
(exclusive ends) and the region mask as COCO RLE. Pixels outside the mask are identical in
the two images (tested).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmrl.config import option
from vlmrl.data_recipes import shapes as shapes_world
from vlmrl.data_recipes.charts import PALETTE_NAMES, random_table, render_chart
from vlmrl.data_recipes.masks import encode_rle
from vlmrl.data_recipes.recipe import Recipe, RecipeConfig, RecipeError
from vlmrl.data_recipes.shapes import mask_box, record_rng

SOURCES = ("shapes", "charts", "folder")
SHAPES_EDITS = ("recolor", "reshape", "remove", "add", "move")
# Not in the default cycle: two objects swapped for different ones at the same places, as in
# Vision-Zero's CLEVR pairs (ask for it with `shapes_pair(..., kinds=("replace",))`).
SHAPES_EXTRA_EDITS = ("replace",)
CHART_EDITS = ("value", "label", "color")
FOLDER_EDITS = ("recolor", "inpaint", "flip", "brightness")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _edit_record(
    kind: str,
    description: str,
    region: np.ndarray,
    source: str,
    image_a,
    image_b,
    index: int,
    seed: int,
    extra=None,
) -> dict[str, Any]:
    box = mask_box(region)
    edit = {"kind": kind, "description": description, "box": box, "mask": encode_rle(region), **(extra or {})}
    return {
        "id": f"pairs-{source}-{seed}-{index}",
        "image_a": image_a,
        "image_b": image_b,
        "source": source,
        "edit_kind": kind,
        "description": description,
        "box": box,
        "edit": json.dumps(edit, sort_keys=True),
    }


# --------------------------------------------------------------------------- shapes


def _shapes_edit(scene: shapes_world.Scene, rng: np.random.Generator, kind: str):
    """(edited scene, index of the edited object (a list of two for "replace"), description) or None.

    The index is into the edited scene, except for "remove" where it is into the original one.
    """
    edited = copy.deepcopy(scene)
    index = int(rng.integers(len(scene.objects)))
    obj = edited.objects[index]
    name = shapes_world.describe(scene.objects[index])
    if kind == "recolor":
        obj.color = _other(rng, shapes_world.COLORS, obj.color)
        return edited, index, f"the {name} became {obj.color}"
    if kind == "reshape":
        obj.shape = _other(rng, shapes_world.SHAPES, obj.shape)
        return edited, index, f"the {name} became a {obj.shape}"
    if kind == "remove":
        if len(edited.objects) < 2:
            return None
        del edited.objects[index]
        return edited, index, f"the {name} was removed"
    if kind == "add":
        new = shapes_world.random_object(rng)
        if not shapes_world.place(edited, new, rng):
            return None
        edited.objects.append(new)
        return edited, len(edited.objects) - 1, f"a {shapes_world.describe(new)} was added"
    if kind == "replace":
        indices = sorted(int(i) for i in rng.permutation(len(scene.objects))[:2])
        names = []
        for position in indices:
            old = edited.objects[position]
            new = shapes_world.random_object(rng)
            while (new.shape, new.color, new.material) == (old.shape, old.color, old.material):
                new = shapes_world.random_object(rng)
            new.size, new.x, new.depth = old.size, old.x, old.depth
            edited.objects[position] = new
            names.append(f"the {shapes_world.describe(old)} became a {shapes_world.describe(new)}")
        return edited, indices, " and ".join(names)
    if kind == "move":
        old_x = obj.x
        if not shapes_world.place(edited, obj, rng):
            return None
        direction = "right" if obj.x > old_x else "left"
        return edited, index, f"the {name} moved to the {direction}"
    raise ValueError(f"unknown shapes edit {kind!r}; expected one of {SHAPES_EDITS}")


def _other(rng: np.random.Generator, values: tuple[str, ...], current: str) -> str:
    choices = [v for v in values if v != current]
    return choices[int(rng.integers(len(choices)))]


def shapes_pair(
    index: int,
    seed: int,
    resolution: int = 112,
    min_objects: int = 3,
    max_objects: int = 8,
    kinds: tuple[str, ...] = SHAPES_EDITS,
):
    """Pair `index`: its edit kind cycles through `kinds` (any of SHAPES_EDITS + SHAPES_EXTRA_EDITS)."""
    unknown = [k for k in kinds if k not in SHAPES_EDITS + SHAPES_EXTRA_EDITS]
    if not kinds or unknown:
        raise ValueError(f"shapes edit kinds {kinds!r}: expected some of {SHAPES_EDITS + SHAPES_EXTRA_EDITS}")
    rng = record_rng(seed, index, stream=3)
    kind = kinds[index % len(kinds)]
    for _ in range(100):
        scene = shapes_world.sample_scene(rng, min_objects, max_objects)
        result = _shapes_edit(scene, rng, kind)
        if result is None:
            continue
        edited, edited_index, description = result
        # The edited object must stay visible, and no other object may be buried by the edit.
        if min(shapes_world.visible_fractions(edited)) >= shapes_world.MIN_VISIBLE_FRACTION:
            break
    else:  # pragma: no cover
        raise RuntimeError(f"no valid {kind} edit found for pair {index} (seed {seed})")
    touched = []
    if kind == "replace":
        touched = [o for i in edited_index for o in (scene.objects[i], edited.objects[i])]
    elif kind in ("recolor", "reshape", "move"):
        touched = [scene.objects[edited_index], edited.objects[edited_index]]
    elif kind == "remove":
        touched = [scene.objects[edited_index]]
    elif kind == "add":
        touched = [edited.objects[edited_index]]
    region = np.zeros((resolution, resolution), dtype=bool)
    for obj in touched:
        region |= shapes_world.influence_region(obj, resolution, resolution)
    image_a, _, boxes_a = shapes_world.render_scene(scene, resolution)
    image_b, _, boxes_b = shapes_world.render_scene(edited, resolution)
    extra = {
        "scene_a": shapes_world.scene_graph(scene, boxes_a),
        "scene_b": shapes_world.scene_graph(edited, boxes_b),
    }
    return _edit_record(kind, description, region, "shapes", image_a, image_b, index, seed, extra)


# --------------------------------------------------------------------------- charts

SPARE_LABELS = ("north", "south", "east", "west", "zinc", "iron", "jade", "ruby")


def charts_pair(index: int, seed: int, resolution: int = 224):
    rng = record_rng(seed, index, stream=4)
    kind = CHART_EDITS[index % len(CHART_EDITS)]
    table = random_table(rng, "bar")
    edited = copy.deepcopy(table)
    position = int(rng.integers(len(table["labels"])))
    label = table["labels"][position]
    if kind == "value":
        old = table["values"][position]
        new = old
        while new == old or new in table["values"]:
            new = int(rng.integers(5, 100))
        edited["values"][position] = new
        description = f"the {label} bar changed from {old} to {new}"
    elif kind == "label":
        new_label = _other(rng, tuple(s for s in SPARE_LABELS if s not in table["labels"]), "")
        edited["labels"][position] = new_label
        description = f"the label {label} became {new_label}"
    elif kind == "color":
        new_color = _other(rng, tuple(c for c in PALETTE_NAMES if c not in table["colors"]), "")
        edited["colors"][position] = new_color
        description = f"the {label} bar turned {new_color}"
    else:  # pragma: no cover
        raise ValueError(kind)
    image_a, extents_a = render_chart(table, resolution, with_extents=True)
    image_b, extents_b = render_chart(edited, resolution, with_extents=True)
    group = {"value": ("element", "value"), "label": ("label",), "color": ("element",)}[kind]
    region = np.zeros((image_a.height, image_a.width), dtype=bool)
    padding = 2  # anti-aliased edges spill a pixel past an artist's extent
    for extents in (extents_a, extents_b):
        for name in group:
            x0, y0, x1, y1 = extents[name][position]
            region[max(0, y0 - padding) : y1 + padding, max(0, x0 - padding) : x1 + padding] = True
    extra = {"table_a": table, "table_b": edited}
    return _edit_record(kind, description, region, "charts", image_a, image_b, index, seed, extra)


# --------------------------------------------------------------------------- folder


def scan_image_folder(folder: str | Path) -> tuple[list[Path], list[str]]:
    """Readable images under `folder` (sorted, recursive) and the unreadable ones as 'path: reason'.

    Raises RecipeError if the folder does not exist or holds no readable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RecipeError(f"image folder {folder} does not exist or is not a directory")
    candidates = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    readable, unreadable = [], []
    for path in candidates:
        try:
            with Image.open(path) as image:
                image.load()
                if image.width < 16 or image.height < 16:
                    raise ValueError(f"too small ({image.width}x{image.height}; need at least 16x16)")
            readable.append(path)
        except Exception as error:  # PIL raises many types for a corrupt file
            unreadable.append(f"{path}: {type(error).__name__}: {error}")
    if not readable:
        found = f"{len(candidates)} image files, all unreadable" if candidates else "no image files"
        raise RecipeError(f"image folder {folder} has {found} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return readable, unreadable


@functools.lru_cache(maxsize=4)
def _cached_scan(folder: str) -> tuple[list[Path], list[str]]:
    return scan_image_folder(folder)


def load_rgb(path: str | Path, max_side: int) -> Image.Image:
    with Image.open(path) as image:
        image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize(
            (max(16, round(image.width * scale)), max(16, round(image.height * scale))), Image.BILINEAR
        )
    return image


def _random_box(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    side = min(height, width)
    box_height = max(4, int(side * rng.uniform(0.12, 0.3)))
    box_width = max(4, int(side * rng.uniform(0.12, 0.3)))
    y0 = int(rng.integers(0, height - box_height + 1))
    x0 = int(rng.integers(0, width - box_width + 1))
    return x0, y0, x0 + box_width, y0 + box_height


def _ellipse_in_box(box, height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    ys = np.arange(height)[:, None] + 0.5
    xs = np.arange(width)[None, :] + 0.5
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


def edit_image(
    image: Image.Image, kind: str, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray, str]:
    """Apply one local edit of `kind`; returns (edited image, region mask, description)."""
    import cv2

    pixels = np.asarray(image.convert("RGB")).copy()
    height, width = pixels.shape[:2]
    box = _random_box(rng, height, width)
    x0, y0, x1, y1 = box
    where = f"in the box ({x0}, {y0})-({x1}, {y1})"
    if kind == "recolor":
        region = _ellipse_in_box(box, height, width)
        hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
        shift = int(rng.integers(40, 140))  # OpenCV hue runs 0..179
        hsv[..., 0] = np.where(region, (hsv[..., 0].astype(int) + shift) % 180, hsv[..., 0])
        # Grey regions have no hue to rotate: give them some saturation so the edit shows.
        hsv[..., 1] = np.where(region, np.maximum(hsv[..., 1], 90), hsv[..., 1])
        edited = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        edited[~region] = pixels[~region]
        description = f"a region {where} was recoloured"
    elif kind == "inpaint":
        region = _ellipse_in_box(box, height, width)
        edited = cv2.inpaint(pixels, region.astype(np.uint8), 5, cv2.INPAINT_TELEA)
        edited[~region] = pixels[~region]
        description = f"a region {where} was removed by inpainting"
    elif kind == "flip":
        region = np.zeros((height, width), dtype=bool)
        region[y0:y1, x0:x1] = True
        edited = pixels.copy()
        edited[y0:y1, x0:x1] = pixels[y0:y1, x0:x1][:, ::-1]
        description = f"the patch {where} was mirrored left to right"
    elif kind == "brightness":
        region = np.zeros((height, width), dtype=bool)
        region[y0:y1, x0:x1] = True
        factor = float(rng.choice([0.6, 0.7, 1.35, 1.5]))
        edited = pixels.copy()
        edited[y0:y1, x0:x1] = np.clip(
            pixels[y0:y1, x0:x1].astype(np.float64) * factor + (8 if factor > 1 else 0), 0, 255
        ).astype(np.uint8)
        description = f"the patch {where} was made {'brighter' if factor > 1 else 'darker'}"
    else:
        raise ValueError(f"unknown image edit {kind!r}; expected one of {FOLDER_EDITS}")
    return Image.fromarray(edited, "RGB"), region, description


def folder_pair(index: int, seed: int, folder: str | Path, max_side: int = 512):
    images, _ = _cached_scan(str(folder))
    rng = record_rng(seed, index, stream=5)
    # Consecutive records give one image each edit kind in turn, so kinds stay balanced.
    path = images[(index // len(FOLDER_EDITS)) % len(images)]
    kind = FOLDER_EDITS[index % len(FOLDER_EDITS)]
    image = load_rgb(path, max_side)
    pixels = np.asarray(image)
    for _ in range(10):
        edited, region, description = edit_image(image, kind, rng)
        changed = (np.asarray(edited) != pixels).any(axis=-1)
        # A flat patch may not change when flipped: try another spot so the pair differs visibly.
        if changed.sum() >= 0.05 * region.sum():
            break
    record = _edit_record(
        kind, description, region, "folder", image, edited, index, seed, {"file": path.name}
    )
    record["file"] = str(path.relative_to(Path(folder)))
    return record


# --------------------------------------------------------------------------- records


def pair_record(
    index: int, source: str, seed: int, resolution: int | None = None, folder=None, max_side: int = 512
):
    if source == "shapes":
        return shapes_pair(index, seed, resolution or 112)
    if source == "charts":
        return charts_pair(index, seed, resolution or 224)
    if source == "folder":
        if folder is None:
            raise RecipeError("pairs from source 'folder' need --folder DIR (a folder of your images)")
        return folder_pair(index, seed, folder, max_side)
    raise RecipeError(f"unknown pairs source {source!r}; expected one of {SOURCES}")


def pair_records(
    source: str,
    n: int,
    seed: int,
    resolution: int | None = None,
    folder: str | Path | None = None,
    max_side: int = 512,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """Records start..start+n-1 of pairs from `source` ('shapes', 'charts' or 'folder').

    Keys: id, image_a, image_b, source, edit_kind, description, box [x0, y0, x1, y1], edit (JSON
    with kind, description, box, mask as COCO RLE, and the scenes/tables or file name). Edit
    kinds cycle so each is equally common.
    """
    for index in range(start, start + n):
        yield pair_record(index, source, seed, resolution, folder, max_side)


@dataclass
class PairsConfig(RecipeConfig):
    """`vlmrl data pairs`: image pairs differing by one recorded edit (shapes, charts or your images)."""

    out: str = option("data/pairs", help="Output directory.")
    source: str = option("shapes", help="shapes | charts | folder.")
    folder: str = option("", help="Folder of your images (source 'folder'); searched recursively.")
    resolution: int = option(0, help="Image side for shapes/charts (0: 112 for shapes, 224 for charts).")
    max_side: int = option(512, help="Folder images are shrunk so their longer side is at most this.")


def _pairs_prepare(config: PairsConfig):
    if config.source not in SOURCES:
        raise RecipeError(f"--source must be one of {SOURCES}, got {config.source!r}")
    extra: dict[str, Any] = {}
    if config.source == "folder":
        if not config.folder:
            raise RecipeError("--source folder needs --folder DIR")
        readable, unreadable = scan_image_folder(config.folder)
        if unreadable:
            from rich.console import Console

            console = Console(stderr=True)
            console.print(f"[yellow]skipped {len(unreadable)} unreadable image(s):[/yellow]")
            for line in unreadable:
                console.print(f"  {line}", markup=False)
        extra = {"images": len(readable), "skipped_count": len(unreadable), "skipped": unreadable}
    return config, extra


def _pairs_record(index: int, config: PairsConfig) -> dict[str, Any]:
    return pair_record(
        index, config.source, config.seed, config.resolution or None, config.folder or None, config.max_side
    )


def _pairs_features(config: PairsConfig):
    from datasets import Features, Image, Sequence, Value

    text = Value("string")
    features = {
        "id": text,
        "image_a": Image(),
        "image_b": Image(),
        "source": text,
        "edit_kind": text,
        "description": text,
        "box": Sequence(Value("int32"), length=4),
        "edit": text,
    }
    if config.source == "folder":
        features["file"] = text
    return Features(features)


def _pairs_tile(record: dict[str, Any]):
    from PIL import ImageDraw

    a, b = record["image_a"].convert("RGB"), record["image_b"].convert("RGB")
    tile = Image.new("RGB", (a.width + b.width + 4, max(a.height, b.height)), "white")
    tile.paste(a, (0, 0))
    tile.paste(b, (a.width + 4, 0))
    x0, y0, x1, y1 = record["box"]
    ImageDraw.Draw(tile).rectangle((a.width + 4 + x0, y0, a.width + 4 + x1 - 1, y1 - 1), outline=(255, 0, 0))
    return tile, record["description"]


PAIRS_RECIPE = Recipe(
    name="pairs",
    version="1",
    record=_pairs_record,
    features=_pairs_features,
    tile=_pairs_tile,
    count_columns=("edit_kind",),
    prepare=_pairs_prepare,
)
