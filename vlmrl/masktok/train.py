"""Training the mask tokenizer: masks in, the same masks back through two codes.

Data is a pure function of (seed, step): each step renders (or reads) a few scenes and takes
all their object masks, so a resumed run sees exactly the batches an uninterrupted one would.
Checkpoints (`runs/NAME/checkpoints/step-N/`) hold the weights, the EMA codebooks, the
optimizer, the scheduler and the RNG state, written atomically; `metrics.jsonl` and
TensorBoard log the losses and the held-out reconstruction mIoU.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrl.config import option


@dataclass
class TokenizerTrainConfig:
    """`vlmrl samtok train`: train the mask tokenizer (SAM2 encoder/decoder + 2x256 RVQ)."""

    out: str = option("runs/samtok-tokenizer", help="Run directory (metrics, checkpoints, tokenizer/).")
    data: str = option(
        "shapes",
        help="'shapes' (masks recipe scenes made on the fly), a `vlmrl data masks` output directory, "
        "or a COCO instance JSON (with --images).",
    )
    images: str = option("", help="Folder the COCO file_names are relative to (COCO data only).")
    data_seed: int = option(0, help="Seed of the shapes scenes (held-out scenes use data_seed + 1).")
    min_objects: int = option(1, help="Shapes scenes: fewest objects (the masks recipe uses 3).")
    max_objects: int = option(3, help="Shapes scenes: most objects (the masks recipe uses 10).")
    steps: int = option(800, help="Optimizer steps.")
    scenes_per_step: int = option(
        3, help="Scenes (images) per step; every object mask of each is trained on."
    )
    max_masks: int = option(16, help="Most masks per step (a cap on the batch).")
    learning_rate: float = option(2e-3, help="Peak AdamW learning rate (linear warmup, cosine decay).")
    warmup_steps: int = option(20, help="Linear warmup steps.")
    weight_decay: float = option(0.01, help="AdamW weight decay.")
    quantizer_warmup_steps: int = option(
        200,
        help="First steps decode the unquantized embedding (codebooks still follow it by EMA): "
        "a random-init encoder otherwise collapses onto a few codes. 0 for pretrained SAM2.",
    )
    commitment_weight: float = option(0.25, help="Weight of the RVQ commitment loss (reference: 0.25).")
    bce_weight: float = option(2.0, help="Weight of the per-pixel BCE loss (reference: 2.0).")
    dice_weight: float = option(0.5, help="Weight of the Dice loss (reference: 0.5).")
    image_size: int = option(128, help="Tokenizer input side in pixels (reference: 1024).")
    hidden_size: int = option(256, help="SAM2 prompt/decoder width = code embedding size (reference: 256).")
    codebook_size: int = option(256, help="Codes per RVQ level (released SAMTok: 256).")
    levels: int = option(2, help="RVQ levels = mask tokens per mask (released SAMTok: 2).")
    decoder_layers: int = option(2, help="Two-way transformer layers of mask encoder and decoder.")
    decoder_mlp_dim: int = option(256, help="MLP width of the two-way transformers (reference: 2048).")
    centre_skip: bool = option(
        True, help="Add the box centre's Fourier embedding to the mask embedding (random-init SAM2)."
    )
    sam2: str = option("", help="Directory of real SAM2(.1) weights to start from ('' = random init).")
    init: str = option("", help="Start from a saved tokenizer directory instead of a new one.")
    eval_size: int = option(200, help="Held-out masks for the reconstruction mIoU.")
    eval_every: int = option(100, help="Measure held-out mIoU every N steps (0: only at the end).")
    checkpoint_every: int = option(100, help="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = option(2, help="How many recent checkpoints to keep.")
    seed: int = option(0, help="Seed of the weights and the training order.")
    threads: int = option(0, help="torch threads (0: torch's default).")


# --------------------------------------------------------------------------- data


class MaskData:
    """(image, [masks]) scenes by index: generated shapes scenes, a masks dataset or a COCO file."""

    def __init__(
        self,
        data: str,
        images: str = "",
        seed: int = 0,
        resolution: int = 128,
        min_objects: int = 3,
        max_objects: int = 10,
    ):
        self.data, self.seed, self.resolution = data, seed, resolution
        self.min_objects, self.max_objects = min_objects, max_objects
        self._dataset = None
        self._coco = None
        if data == "shapes":
            self.size = 10**9
        elif data.endswith(".json"):
            from vlmrl.data_recipes.masks import read_coco

            if not images or not Path(images).is_dir():
                raise ValueError(f"--data {data}: a COCO file needs --images DIR (got {images!r})")
            self._coco = [entry for entry in read_coco(data) if entry.objects]
            self.images = Path(images)
            if not self._coco:
                raise ValueError(f"--data {data}: no image with object masks")
            self.size = len(self._coco)
        else:
            from vlmrl.data_recipes.recipe import load_recipe_dataset

            self._dataset = load_recipe_dataset(data)
            if "objects" not in self._dataset.column_names:
                raise ValueError(f"--data {data}: not a `vlmrl data masks` output (no 'objects' column)")
            self.size = len(self._dataset)

    def scene(self, index: int) -> tuple[Any, list[np.ndarray]]:
        from vlmrl.data_recipes.masks import decode_rle

        if self.data == "shapes":
            from vlmrl.data_recipes.shapes import record_rng, render_scene, sample_scene

            # The masks recipe's scene stream (stream 6), with a choice of scene sizes.
            scene = sample_scene(record_rng(self.seed, index, stream=6), self.min_objects, self.max_objects)
            image, masks, _ = render_scene(scene, self.resolution)
            return image, [m for m in masks if m.any()]
        elif self._coco is not None:
            from PIL import Image

            entry = self._coco[index % self.size]
            with Image.open(self.images / entry.file_name) as opened:
                image = opened.convert("RGB")
            return image, [o["mask"] for o in entry.objects if o["mask"].any()]
        else:
            record = self._dataset[index % self.size]
        masks = [decode_rle(o["rle"]) for o in json.loads(record["objects"])]
        return record["image"], [m for m in masks if m.any()]

    def batch(
        self, step: int, scenes: int, max_masks: int, seed: int
    ) -> tuple[list[Any], list[np.ndarray], list[int]]:
        """Images, masks and each mask's image index for one step (a pure function of step)."""
        rng = np.random.default_rng([seed, step])
        images, masks, owners = [], [], []
        for position in range(scenes):
            index = int(rng.integers(self.size)) if self.size < 10**9 else step * scenes + position
            image, scene_masks = self.scene(index)
            if not scene_masks:
                continue
            images.append(image)
            for mask in scene_masks:
                masks.append(mask)
                owners.append(len(images) - 1)
        if len(masks) > max_masks:
            keep = sorted(rng.choice(len(masks), max_masks, replace=False).tolist())
            masks = [masks[i] for i in keep]
            owners = [owners[i] for i in keep]
        return images, masks, owners


def held_out_masks(data: MaskData, count: int) -> list[tuple[Any, np.ndarray]]:
    """The first `count` (image, mask) pairs of a held-out stream (generated scenes)."""
    pairs: list[tuple[Any, np.ndarray]] = []
    index = 0
    while len(pairs) < count and index < min(data.size, 100 * count):
        image, masks = data.scene(index)
        pairs.extend((image, mask) for mask in masks)
        index += 1
    return pairs[:count]


def split_off_held_out(data: MaskData, count: int) -> list[tuple[Any, np.ndarray]]:
    """Hold out the last scenes of a file (up to `count` masks, at most half the scenes);
    training then draws only from the scenes before them."""
    pairs: list[tuple[Any, np.ndarray]] = []
    index = data.size
    while len(pairs) < count and index > (data.size + 1) // 2:
        index -= 1
        image, masks = data.scene(index)
        pairs.extend((image, mask) for mask in masks)
    data.size = index
    return pairs[:count]


def reconstruction_miou(
    tokenizer: Any, pairs: list[tuple[Any, np.ndarray]], batch_size: int = 32
) -> dict[str, float]:
    """Mean IoU of decode(encode(mask)) against each mask, at the mask's own resolution."""
    from vlmrl.masktok.model import mask_iou_numpy

    ious = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = [p[0] for p in chunk]
        masks = [p[1] for p in chunk]
        codes = tokenizer.encode(images, masks)
        decoded = tokenizer.decode(images, codes)
        ious.extend(mask_iou_numpy(d, m) for d, m in zip(decoded, masks))
    return {"miou": float(np.mean(ious)) if ious else 0.0, "count": len(ious)}


# --------------------------------------------------------------------------- the loop


def _schedule(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def train_tokenizer(config: TokenizerTrainConfig) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file, save_file

    from vlmrl.masktok.model import MaskTokenizer, MaskTokenizerConfig, reconstruction_losses
    from vlmrl.runs import MetricsLogger, atomic_directory, atomic_write_json, read_json, save_run_config

    if config.threads:
        torch.set_num_threads(config.threads)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    torch.manual_seed(config.seed)
    if config.init:
        tokenizer = MaskTokenizer.load(config.init)
    else:
        tokenizer = MaskTokenizer(
            MaskTokenizerConfig(
                image_size=config.image_size,
                hidden_size=config.hidden_size,
                codebook_size=config.codebook_size,
                levels=config.levels,
                decoder_layers=config.decoder_layers,
                decoder_mlp_dim=config.decoder_mlp_dim,
                sam2=config.sam2,
                centre_skip=config.centre_skip,
            )
        )
    resolution = tokenizer.config.image_size
    sizes = (config.min_objects, config.max_objects)
    train_data = MaskData(config.data, config.images, config.data_seed, resolution, *sizes)
    if config.data == "shapes":
        held_out = held_out_masks(
            MaskData(
                "shapes",
                seed=config.data_seed + 1,
                resolution=resolution,
                min_objects=sizes[0],
                max_objects=sizes[1],
            ),
            config.eval_size,
        )
    else:
        held_out = split_off_held_out(train_data, config.eval_size)
    decay = [p for p in tokenizer.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in tokenizer.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _schedule(step, config.warmup_steps, config.steps)
    )
    step = 0
    checkpoints = directory / "checkpoints"
    found = sorted(
        (int(p.name.removeprefix("step-")), p)
        for p in checkpoints.glob("step-*")
        if p.name.removeprefix("step-").isdigit() and (p / "state.json").is_file()
    )
    if found:  # exact resume: weights, codebooks, optimizer, scheduler, RNG
        path = found[-1][1]
        tokenizer.load_state_dict(load_file(str(path / "model.safetensors")))
        training = torch.load(path / "training_state.pt", weights_only=False)
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        torch.set_rng_state(training["torch_rng"])
        random.setstate(training["python_rng"])
        step = int(read_json(path / "state.json")["step"])
    logger = MetricsLogger(directory, resume_step=step if found else None)
    weights = (config.commitment_weight, config.bce_weight, config.dice_weight)

    def save_checkpoint() -> None:
        with atomic_directory(checkpoints / f"step-{step}") as temporary:
            state = {k: v.detach().contiguous() for k, v in tokenizer.state_dict().items()}
            save_file(state, str(temporary / "model.safetensors"))
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(),
                },
                temporary / "training_state.pt",
            )
            atomic_write_json(temporary / "state.json", {"step": step})
        kept = sorted(
            (int(p.name.removeprefix("step-")), p)
            for p in checkpoints.glob("step-*")
            if p.name.removeprefix("step-").isdigit()
        )
        for _, old in kept[: max(0, len(kept) - config.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)

    tokenizer.train()
    last: dict[str, Any] = {}
    started = time.time()
    try:
        while step < config.steps:
            images, masks, owners = train_data.batch(
                step, config.scenes_per_step, config.max_masks, config.seed
            )
            pixels = tokenizer.pixels(images)
            mask_tensor = tokenizer.mask_tensor(masks)
            output = tokenizer(
                pixels,
                mask_tensor,
                image_index=torch.tensor(owners),
                bypass_quantizer=step < config.quantizer_warmup_steps,
            )
            warming = step < config.quantizer_warmup_steps
            # Nothing is committed to while the decoder reads the raw embedding; pulling the
            # embeddings onto their nearest codes then only collapses them together.
            step_weights = (0.0, *weights[1:]) if warming else weights
            losses = reconstruction_losses(output["logits"], mask_tensor, output["commitment"], step_weights)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            record = {k: float(v.detach()) for k, v in losses.items()}
            record["codes_used_level0"] = int(output["codes"][:, 0].unique().numel())
            record["codes_used_level1"] = int(output["codes"][:, 1].unique().numel())
            record["learning_rate"] = scheduler.get_last_lr()[0]
            record["seconds"] = time.time() - started
            if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
                record["held_out_miou"] = reconstruction_miou(tokenizer, held_out)["miou"]
                tokenizer.train()
            logger.log(step, record)
            last = record
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
                save_checkpoint()
    finally:
        logger.close()
    tokenizer.eval()
    miou = reconstruction_miou(tokenizer, held_out)
    tokenizer.save(directory / "tokenizer")
    results = {"held_out_miou": miou["miou"], "held_out_masks": miou["count"], "steps": step, "last": last}
    atomic_write_json(directory / "results.json", results)
    return results
