"""COCO-format masks through pycocotools: RLE and polygons to binary masks and back."""

from __future__ import annotations

from typing import Any

import numpy as np


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a 2-D boolean mask, JSON-ready ({'size': [h, w], 'counts': str})."""
    from pycocotools import mask as coco_mask

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    from pycocotools import mask as coco_mask

    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        counts = coco_mask.frPyObjects(rle, *rle["size"])["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return coco_mask.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)
