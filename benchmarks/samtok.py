"""Masks as two tokens vs COCO RLE: throughput of encode+decode, bits per mask, and fidelity.

    .venv/bin/python benchmarks/samtok.py --masks 256 --out benchmarks/results/samtok.json

Both sides round-trip the same held-out shapes-world object masks (scenes of the masks
recipe, on the seed after the tokenizer's training seed). Ours: `MaskTokenizer.encode` then
`decode` (batched, image-conditioned: the tokenizer re-reads each image). The peer:
pycocotools `mask.encode` then `mask.decode` (lossless run-length code). Bits per mask: ours
is levels x log2(codebook size) (16 bits for 2 x 256 codes), RLE's is 8 x the length of its
compressed `counts` string. Fidelity: our reconstruction IoU (RLE's is 1 by construction).
Prints a table with the ratio and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokenizer", default="samtok-tiny", help="tokenizer directory ('samtok-tiny' = shipped)"
    )
    parser.add_argument("--masks", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="masks recipe seed of the held-out scenes")
    parser.add_argument("--out", default="benchmarks/results/samtok.json")
    arguments = parser.parse_args()

    import numpy as np
    import torch
    from pycocotools import mask as coco_mask

    from vlmrl.masktok.model import MaskTokenizer, mask_iou_numpy
    from vlmrl.masktok.train import MaskData, held_out_masks

    torch.set_num_threads(arguments.threads)
    tokenizer = MaskTokenizer.load(arguments.tokenizer)
    data = MaskData("shapes", seed=arguments.seed, resolution=tokenizer.config.image_size)
    pairs = held_out_masks(data, arguments.masks)
    images = [p[0] for p in pairs]
    masks = [p[1] for p in pairs]

    started = time.perf_counter()
    decoded = []
    for start in range(0, len(pairs), arguments.batch_size):
        chunk_images = images[start : start + arguments.batch_size]
        codes = tokenizer.encode(chunk_images, masks[start : start + arguments.batch_size])
        decoded += tokenizer.decode(chunk_images, codes)
    ours_seconds = time.perf_counter() - started
    ious = [mask_iou_numpy(d, m) for d, m in zip(decoded, masks)]

    started = time.perf_counter()
    counts_bytes = []
    for mask in masks:
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts_bytes.append(len(rle["counts"]))
        coco_mask.decode(rle)
    rle_seconds = time.perf_counter() - started

    ours_bits = tokenizer.config.levels * math.log2(tokenizer.config.codebook_size)
    rle_bits = 8 * float(np.mean(counts_bytes))
    result = {
        "masks": len(masks),
        "mask_size": list(masks[0].shape),
        "ours_masks_per_second": len(masks) / ours_seconds,
        "rle_masks_per_second": len(masks) / rle_seconds,
        "speed_ratio_ours_over_rle": (len(masks) / ours_seconds) / (len(masks) / rle_seconds),
        "ours_bits_per_mask": ours_bits,
        "rle_bits_per_mask": rle_bits,
        "bits_ratio_rle_over_ours": rle_bits / ours_bits,
        "ours_reconstruction_miou": float(np.mean(ious)),
        "rle_reconstruction_miou": 1.0,
        "threads": arguments.threads,
        "machine": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    print(f"{'':28s}{'SAMTok (ours)':>16s}{'COCO RLE':>12s}{'ratio':>10s}")
    print(
        f"{'encode+decode masks/s':28s}{result['ours_masks_per_second']:16.1f}"
        f"{result['rle_masks_per_second']:12.1f}{result['speed_ratio_ours_over_rle']:10.4f}"
    )
    print(f"{'bits per mask':28s}{ours_bits:16.1f}{rle_bits:12.1f}{rle_bits / ours_bits:10.1f}")
    print(f"{'reconstruction mIoU':28s}{result['ours_reconstruction_miou']:16.3f}{1.0:12.3f}")
    os.makedirs(os.path.dirname(arguments.out) or ".", exist_ok=True)
    with open(arguments.out, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
