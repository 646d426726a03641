"""COCO-format instance masks through pycocotools: read, write, convert, and export the shapes world.

A COCO instance file holds `images` (id, file_name, height, width), `categories` (id, name) and
`annotations` (id, image_id, category_id, segmentation, bbox [x, y, w, h], area, iscrowd), where
a segmentation is either polygons (lists of x, y coordinates) or RLE ({'size': [h, w],
'counts': ...}, compressed string or uncompressed list). Everything converts to per-object
boolean masks of the image's size; a mask that does not fit its image is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmrl.config import option
from vlmrl.data_recipes.recipe import Recipe, RecipeConfig, RecipeError
from vlmrl.runs import atomic_write_bytes, atomic_write_json


class CocoError(ValueError):
    """A COCO file or annotation is malformed or does not fit its image."""


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a 2-D boolean mask, JSON-ready ({'size': [h, w], 'counts': str})."""
    from pycocotools import mask as coco_mask

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Boolean mask from a COCO RLE (compressed string/bytes or uncompressed list counts)."""
    from pycocotools import mask as coco_mask

    try:
        height, width = (int(s) for s in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise CocoError(f"RLE must be {{'size': [h, w], 'counts': ...}}, got {str(rle)[:80]}") from error
    if isinstance(counts, list):
        if sum(counts) != height * width:
            raise CocoError(f"uncompressed RLE counts sum to {sum(counts)}, but the mask is {height}x{width}")
        counts = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return coco_mask.decode({"size": [height, width], "counts": counts}).astype(bool)


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ([[x0, y0, x1, y1, ...], ...]); points outside the image are an error."""
    from pycocotools import mask as coco_mask

    if not polygons or not all(
        isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0 for p in polygons
    ):
        raise CocoError("polygon segmentation must be a list of [x0, y0, x1, y1, ...] with at least 3 points")
    for polygon in polygons:
        xs, ys = np.asarray(polygon[0::2], dtype=float), np.asarray(polygon[1::2], dtype=float)
        if xs.min() < 0 or ys.min() < 0 or xs.max() > width or ys.max() > height:
            raise CocoError(
                f"polygon reaches ({xs.min():.1f}..{xs.max():.1f}, {ys.min():.1f}..{ys.max():.1f}), "
                f"outside its {width}x{height} image"
            )
    rles = coco_mask.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[list[float]]:
    """Outer contours of a mask as COCO polygons (lossy at the boundary; RLE is exact)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        if len(contour) >= 3:
            polygons.append([float(v) for point in contour[:, 0, :] for v in point])
    return polygons


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
        if mask.shape != (height, width):
            raise CocoError(f"RLE mask is {mask.shape[0]}x{mask.shape[1]} but its image is {height}x{width}")
        return mask
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    raise CocoError(f"segmentation must be polygons (list) or RLE (dict), got {type(segmentation).__name__}")


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO bbox [x, y, width, height] of a mask (zeros if empty)."""
    rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [
        float(columns[0]),
        float(rows[0]),
        float(columns[-1] - columns[0] + 1),
        float(rows[-1] - rows[0] + 1),
    ]


# --------------------------------------------------------------------------- files


@dataclass
class CocoImage:
    id: int
    file_name: str
    height: int
    width: int
    objects: list[dict[str, Any]]  # {"category": name, "mask": bool array, "bbox": [...], "iscrowd": int}


def read_coco(path: str | Path) -> list[CocoImage]:
    """Parse a COCO instance file into images with decoded per-object masks (validated)."""
    path = Path(path)
    if not path.is_file():
        raise CocoError(f"COCO file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoError(f"COCO file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise CocoError(f"COCO file {path} must be an object with 'images' and 'annotations' lists")
    categories = {}
    for category in data.get("categories", []):
        try:
            categories[category["id"]] = category["name"]
        except (KeyError, TypeError) as error:
            raise CocoError(f"{path}: every category needs 'id' and 'name', got {category}") from error
    images: dict[int, CocoImage] = {}
    for entry in data["images"]:
        try:
            images[entry["id"]] = CocoImage(
                entry["id"], entry["file_name"], int(entry["height"]), int(entry["width"]), []
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CocoError(f"{path}: every image needs id, file_name, height, width; got {entry}") from error
    for annotation in data["annotations"]:
        try:
            image = images[annotation["image_id"]]
            segmentation = annotation["segmentation"]
        except KeyError as error:
            raise CocoError(f"{path}: annotation {annotation.get('id')} lacks or misnames {error}") from error
        try:
            mask = segmentation_to_mask(segmentation, image.height, image.width)
        except CocoError as error:
            raise CocoError(
                f"{path}: annotation {annotation.get('id')} of image {image.file_name}: {error}"
            ) from error
        image.objects.append(
            {
                "id": annotation.get("id"),
                "category": categories.get(annotation.get("category_id"), str(annotation.get("category_id"))),
                "mask": mask,
                "bbox": annotation.get("bbox", mask_bbox(mask)),
                "iscrowd": int(annotation.get("iscrowd", 0)),
            }
        )
    return [images[k] for k in sorted(images)]


def coco_document(
    images: Iterable[tuple[str, int, int, list[tuple[str, np.ndarray]]]],
    categories: list[str],
    polygons: bool = False,
) -> dict[str, Any]:
    """A COCO instance document from (file_name, height, width, [(category, mask), ...]) entries."""
    category_ids = {name: i + 1 for i, name in enumerate(categories)}
    document: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i, "name": name} for name, i in category_ids.items()],
    }
    annotation_id = 1
    for image_id, (file_name, height, width, objects) in enumerate(images, start=1):
        document["images"].append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for category, mask in objects:
            if mask.shape != (height, width):
                raise CocoError(f"mask {mask.shape} does not match image {file_name} ({height}x{width})")
            if category not in category_ids:
                raise CocoError(f"category {category!r} is not in {categories}")
            segmentation = mask_to_polygons(mask) if polygons else encode_rle(mask)
            document["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": category_ids[category],
                    "segmentation": segmentation,
                    "area": int(mask.sum()),
                    "bbox": mask_bbox(mask),
                    "iscrowd": 0,
                }
            )
            annotation_id += 1
    return document


def write_coco(path: str | Path, document: dict[str, Any]) -> Path:
    return atomic_write_json(path, document, indent=None)


def export_shapes_coco(
    out: str | Path, n: int, seed: int, resolution: int = 112, polygons: bool = False
) -> Path:
    """Write n shapes scenes as images/ + annotations.json (one instance per object, category = shape)."""
    import io

    from vlmrl.data_recipes.shapes import SHAPES, record_rng, render_scene, sample_scene

    out = Path(out)
    entries = []
    for index in range(n):
        scene = sample_scene(record_rng(seed, index, stream=6))
        image, masks, _ = render_scene(scene, resolution)
        file_name = f"images/shapes-{seed}-{index:06d}.png"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(out / file_name, buffer.getvalue())
        objects = [(obj.shape, mask) for obj, mask in zip(scene.objects, masks) if mask.any()]
        entries.append((file_name, resolution, resolution, objects))
    return write_coco(out / "annotations.json", coco_document(entries, list(SHAPES), polygons=polygons))


# --------------------------------------------------------------------------- recipe


@dataclass
class MasksConfig(RecipeConfig):
    """`vlmrl data masks`: per-object masks (COCO RLE) from shapes scenes or your COCO file."""

    out: str = option("data/masks", help="Output directory.")
    source: str = option("shapes", help="shapes | coco.")
    coco: str = option("", help="COCO instance JSON (source 'coco').")
    images: str = option("", help="Folder the COCO file_names are relative to (source 'coco').")
    resolution: int = option(112, help="Image side for shapes scenes.")


def _masks_prepare(config: MasksConfig):
    import dataclasses

    if config.source == "shapes":
        return config, {}
    if config.source != "coco":
        raise RecipeError(f"--source must be shapes or coco, got {config.source!r}")
    if not config.coco or not config.images:
        raise RecipeError("--source coco needs --coco FILE and --images DIR")
    try:
        images = read_coco(config.coco)
    except CocoError as error:
        raise RecipeError(str(error)) from error
    if not images:
        raise RecipeError(f"COCO file {config.coco} lists no images")
    missing = [i.file_name for i in images if not (Path(config.images) / i.file_name).is_file()]
    if missing:
        raise RecipeError(
            f"{len(missing)} images of {config.coco} are not under {config.images}, e.g. {missing[:3]}"
        )
    return dataclasses.replace(config, n=len(images)), {"images": len(images)}


def _masks_record(index: int, config: MasksConfig) -> dict[str, Any]:
    if config.source == "shapes":
        from vlmrl.data_recipes.shapes import record_rng, render_scene, sample_scene

        scene = sample_scene(record_rng(config.seed, index, stream=6))
        image, masks, _ = render_scene(scene, config.resolution)
        objects = [
            {"category": o.shape, "color": o.color, "bbox": mask_bbox(m), "rle": encode_rle(m)}
            for o, m in zip(scene.objects, masks)
            if m.any()
        ]
        identifier = f"masks-shapes-{config.seed}-{index}"
    else:
        entry = _cached_coco(config.coco)[index]
        with Image.open(Path(config.images) / entry.file_name) as opened:
            image = opened.convert("RGB")
        if image.size != (entry.width, entry.height):
            raise RecipeError(
                f"{entry.file_name} is {image.size[0]}x{image.size[1]} but {config.coco} says {entry.width}x{entry.height}"
            )
        objects = [
            {"category": o["category"], "bbox": mask_bbox(o["mask"]), "rle": encode_rle(o["mask"])}
            for o in entry.objects
        ]
        identifier = f"masks-coco-{entry.id}"
    return {"id": identifier, "image": image, "objects": json.dumps(objects), "count": len(objects)}


_coco_cache: dict[str, list[CocoImage]] = {}


def _cached_coco(path: str) -> list[CocoImage]:
    if path not in _coco_cache:
        _coco_cache[path] = read_coco(path)
    return _coco_cache[path]


def _masks_features(config: MasksConfig):
    from datasets import Features, Image, Value

    return Features(
        {"id": Value("string"), "image": Image(), "objects": Value("string"), "count": Value("int32")}
    )


def _masks_tile(record: dict[str, Any]):
    image = np.asarray(record["image"].convert("RGB")).astype(np.float64)
    rng = np.random.default_rng(0)
    for obj in json.loads(record["objects"]):
        mask = decode_rle(obj["rle"])
        image[mask] = 0.45 * image[mask] + 0.55 * rng.uniform(0, 255, size=3)
    return Image.fromarray(image.astype(np.uint8)), f"{record['count']} objects"


MASKS_RECIPE = Recipe(
    name="masks",
    version="1",
    record=_masks_record,
    features=_masks_features,
    tile=_masks_tile,
    prepare=_masks_prepare,
)
