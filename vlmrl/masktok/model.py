"""The SAMTok mask tokenizer: any region mask <-> two discrete codes, conditioned on the image.

    image --SAM2 image encoder--> multi-scale features
    (mask as dense prompt, its box as sparse prompt) --mask encoder--> one embedding z (256-d)
    z --residual quantizer (2 levels x 256 codes)--> codes (k1, k2), quantized z_q
    z_q as the only sparse prompt --SAM2 mask decoder--> mask logits

The image encoder, prompt encoder and mask decoder are transformers' SAM2 classes, so real
SAM2.1 weights load through `Sam2Model.from_pretrained` (`MaskTokenizerConfig.sam2`); the mask
encoder is a second `Sam2MaskDecoder` (a two-way transformer) whose mask-token output is the
embedding. The CPU miniature is a small random-initialised config at 128 px.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlmrl.masktok.quantizer import ResidualQuantizer

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskTokenizerConfig:
    """Architecture of the tokenizer. Defaults: the CPU miniature; `sam2` names real weights."""

    image_size: int = 128
    hidden_size: int = 256  # SAM2's prompt/decoder width, and the latent (code) dimension
    backbone_dims: tuple[int, ...] = (24, 48, 96)
    backbone_blocks: tuple[int, ...] = (1, 1, 2)
    backbone_heads: tuple[int, ...] = (1, 1, 2)
    window_sizes: tuple[int, ...] = (8, 4, 8)
    decoder_mlp_dim: int = 256
    decoder_layers: int = 2
    decoder_heads: int = 8
    codebook_size: int = 256
    levels: int = 2
    decay: float = 0.99
    # Add the Fourier embedding of the mask's box centre to the mask encoder's token (a skip
    # around the untrained encoder; see README). Off for pretrained SAM2.
    centre_skip: bool = True
    sam2: str = ""  # a local directory with SAM2 weights (Sam2Model.from_pretrained); "" = random init
    # The SAM2 architecture the tokenizer was built from (`Sam2Config.to_dict()`). Set when
    # real weights are loaded (`sam2`) so that a saved tokenizer rebuilds that architecture,
    # not the miniature that the fields above describe; empty = build from the fields above.
    sam2_architecture: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MaskTokenizerConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in known.items()})


def sam2_config(config: MaskTokenizerConfig):
    """A transformers `Sam2Config` of the miniature (stride 4/8/16 features, 1 mask output)."""
    from transformers import Sam2Config

    size = config.image_size
    stages = len(config.backbone_dims)
    if size % 16 or stages != 3:
        raise ValueError(
            f"image_size must be a multiple of 16 and the backbone 3 stages, got {size}, {stages}"
        )
    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "image_size": [size, size],
                "hidden_size": config.backbone_dims[0],
                "num_attention_heads": config.backbone_heads[0],
                "blocks_per_stage": list(config.backbone_blocks),
                "embed_dim_per_stage": list(config.backbone_dims),
                "num_attention_heads_per_stage": list(config.backbone_heads),
                "window_size_per_stage": list(config.window_sizes),
                "global_attention_blocks": [sum(config.backbone_blocks) - 1],
                "num_query_pool_stages": 2,
                "window_positional_embedding_background_size": [size // 16, size // 16],
            },
            "backbone_channel_list": list(reversed(config.backbone_dims)),
            "backbone_feature_sizes": [
                [size // 4, size // 4],
                [size // 8, size // 8],
                [size // 16, size // 16],
            ],
            "fpn_hidden_size": config.hidden_size,
            "fpn_top_down_levels": [1, 2],
            "num_feature_levels": 3,
        },
        prompt_encoder_config={"hidden_size": config.hidden_size, "image_size": size, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": config.hidden_size,
            "mlp_dim": config.decoder_mlp_dim,
            "num_hidden_layers": config.decoder_layers,
            "num_attention_heads": config.decoder_heads,
            "iou_head_hidden_dim": config.hidden_size,
            "dynamic_multimask_via_stability": False,
        },
    )


class MaskTokenizer(nn.Module):
    def __init__(self, config: MaskTokenizerConfig | None = None):
        super().__init__()
        from transformers import Sam2Model
        from transformers.models.sam2.modeling_sam2 import Sam2MaskDecoder

        self.config = config or MaskTokenizerConfig()
        if self.config.sam2 or self.config.sam2_architecture:
            if self.config.sam2:
                self.sam = Sam2Model.from_pretrained(self.config.sam2)
            else:
                from transformers import Sam2Config

                self.sam = Sam2Model(Sam2Config.from_dict(self.config.sam2_architecture))
            self.config.sam2_architecture = _architecture(self.sam.config)
            self.config.image_size = int(self.sam.prompt_encoder.input_image_size)
            self.config.hidden_size = int(self.sam.config.mask_decoder_config.hidden_size)
        else:
            self.sam = Sam2Model(sam2_config(self.config))
            # transformers keeps two random Fourier bases (image positions, prompt points) that
            # real checkpoints load as one; sharing them lets box corners line up with pixels.
            shared = self.sam.shared_image_embedding.positional_embedding
            self.sam.prompt_encoder.shared_embedding.positional_embedding.copy_(shared)
        # The mask encoder has the SAM mask decoder's architecture; its mask token is the embedding.
        self.mask_encoder = Sam2MaskDecoder(self.sam.config.mask_decoder_config)
        self.quantizer = ResidualQuantizer(
            self.config.hidden_size, self.config.levels, self.config.codebook_size, self.config.decay
        )
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ inputs
    def pixels(self, images: list[Any]) -> torch.Tensor:
        """PIL images (or HxWx3 uint8 arrays) -> normalised [B, 3, S, S] at the model's size."""
        size = self.config.image_size
        arrays = []
        for image in images:
            array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
            if array.ndim != 3 or array.shape[2] != 3:
                raise ValueError(f"images must be RGB (H, W, 3), got shape {array.shape}")
            arrays.append(torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float() / 255)
        resized = [F.interpolate(a[None], size=(size, size), mode="bilinear", antialias=True) for a in arrays]
        batch = torch.cat(resized).to(self.pixel_mean.device)
        return (batch - self.pixel_mean) / self.pixel_std

    def mask_tensor(self, masks: list[np.ndarray]) -> torch.Tensor:
        """Boolean masks of any size -> float [B, 1, S, S] at the model's size (nearest)."""
        size = self.config.image_size
        resized = [
            F.interpolate(
                torch.from_numpy(np.asarray(m, dtype=np.float32))[None, None],
                size=(size, size),
                mode="nearest",
            )
            for m in masks
        ]
        return torch.cat(resized).to(self.pixel_mean.device)

    # ------------------------------------------------------------------ pieces
    def image_features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """[stride-4 (projected), stride-8 (projected), stride-16 embedding] feature maps."""
        batch = pixels.shape[0]
        outputs = self.sam.get_image_features(pixels, return_dict=True)
        maps = list(outputs.fpn_hidden_states)
        maps[-1] = maps[-1] + self.sam.no_memory_embedding
        sizes = self.sam.backbone_feature_sizes
        return [m.permute(1, 2, 0).reshape(batch, -1, *s) for m, s in zip(maps, sizes)]

    def embed_masks(self, features: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """The mask encoder: (image features, masks [B,1,S,S]) -> embeddings [B, hidden]."""
        prompt = self.sam.prompt_encoder
        boxes = torch.stack([_box(m[0]) for m in masks]).to(masks.device)
        low = F.interpolate(masks, size=prompt.mask_input_size, mode="bilinear", align_corners=False)
        sparse, dense = prompt(
            input_points=None, input_labels=None, input_boxes=boxes[:, None], input_masks=low
        )
        position = self.sam.get_image_wide_positional_embeddings().repeat(masks.shape[0], 1, 1, 1)
        _, _, tokens, _ = self.mask_encoder(
            image_embeddings=features[-1],
            image_positional_embeddings=position,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
            high_resolution_features=features[:-1],
        )
        embeddings = tokens[:, 0, 0, :]
        if self.config.centre_skip:
            centres = ((boxes[:, :2] + boxes[:, 2:]) / 2 + 0.5).to(embeddings.dtype)
            size = float(prompt.input_image_size)
            embeddings = (
                embeddings + prompt.shared_embedding(centres[:, None, None, :], (size, size))[:, 0, 0]
            )
        return embeddings

    def decode_embeddings(self, features: list[torch.Tensor], embeddings: torch.Tensor) -> torch.Tensor:
        """The SAM2 mask decoder prompted only by the (quantized) embedding: low-res logits [B, h, w]."""
        batch = embeddings.shape[0]
        prompt = self.sam.prompt_encoder
        dense = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            batch, -1, *prompt.image_embedding_size
        )
        position = self.sam.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        logits, _, _, _ = self.sam.mask_decoder(
            image_embeddings=features[-1],
            image_positional_embeddings=position,
            sparse_prompt_embeddings=embeddings[:, None, None, :].to(features[-1].dtype),
            dense_prompt_embeddings=dense,
            multimask_output=False,
            high_resolution_features=features[:-1],
        )
        return logits[:, 0, 0]

    def forward(
        self,
        pixels: torch.Tensor,
        masks: torch.Tensor,
        image_index: torch.Tensor | None = None,
        bypass_quantizer: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Training pass: logits, codes and the commitment loss for masks [B,1,S,S].

        `image_index[b]` names the image of mask b, so a scene's image is encoded once for
        all its masks (default: one image per mask).
        """
        features = self.image_features(pixels)
        if image_index is not None:
            features = [f[image_index.to(f.device)] for f in features]
        embeddings = self.embed_masks(features, masks)
        quantized, codes, commitment = self.quantizer(embeddings, bypass=bypass_quantizer)
        logits = self.decode_embeddings(features, quantized)
        return {"logits": logits, "codes": codes, "commitment": commitment}

    # ------------------------------------------------------------------ the public API
    @torch.no_grad()
    def encode(self, images: list[Any], masks: list[np.ndarray]) -> torch.Tensor:
        """Codes [B, levels] (level l in [0, codebook_size)) of each (image, mask) pair."""
        if len(images) != len(masks):
            raise ValueError(
                f"encode needs one mask per image, got {len(images)} images and {len(masks)} masks"
            )
        was_training = self.training
        self.eval()
        try:
            features = self.image_features(self.pixels(images))
            embeddings = self.embed_masks(features, self.mask_tensor(masks))
            _, codes, _ = self.quantizer(embeddings)
        finally:
            self.train(was_training)
        return codes

    @torch.no_grad()
    def decode(self, images: list[Any], codes: torch.Tensor | list[list[int]]) -> list[np.ndarray]:
        """Boolean masks at each image's own size from codes [B, levels]."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.pixel_mean.device)
        if codes.dim() != 2 or codes.shape[0] != len(images):
            raise ValueError(f"decode needs codes of shape [{len(images)}, levels], got {tuple(codes.shape)}")
        was_training = self.training
        self.eval()
        try:
            features = self.image_features(self.pixels(images))
            logits = self.decode_embeddings(features, self.quantizer.embed(codes))
        finally:
            self.train(was_training)
        masks = []
        for image, logit in zip(images, logits):
            width, height = _size(image)
            full = F.interpolate(
                logit[None, None].float(), size=(height, width), mode="bilinear", align_corners=False
            )
            masks.append((full[0, 0] > 0).cpu().numpy())
        return masks

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path, half: bool = False) -> Path:
        """Weights (safetensors; fp16 with `half`) and config.json, written atomically."""
        from safetensors.torch import save_file

        from vlmrl.runs import atomic_directory, atomic_write_json

        directory = Path(directory)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        with atomic_directory(directory) as temporary:
            save_file(state, str(temporary / "model.safetensors"))
            atomic_write_json(temporary / "config.json", {**self.config.to_dict(), "sam2": ""})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MaskTokenizer:
        """A tokenizer saved by `save` ('samtok-tiny' names the one shipped in vlmrl/assets)."""
        from safetensors.torch import load_file

        from vlmrl.runs import read_json

        shipped = str(directory) == "samtok-tiny"
        directory = Path(directory)
        if shipped:
            directory = Path(__file__).resolve().parents[1] / "assets" / "samtok-tiny"
            if not (directory / "model.safetensors").is_file():
                raise FileNotFoundError(
                    "no tokenizer is shipped as 'samtok-tiny' in this version; train one with "
                    "`vlmrl samtok train --out DIR` and pass --tokenizer DIR/tokenizer"
                )
        if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{directory}: not a mask tokenizer (expected config.json and model.safetensors "
                "written by `vlmrl samtok train`)"
            )
        model = cls(MaskTokenizerConfig.from_dict(read_json(directory / "config.json")))
        state = load_file(str(directory / "model.safetensors"))
        reference = model.state_dict()
        state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
        model.load_state_dict(state)
        model.eval()
        return model


def _architecture(config: Any) -> dict[str, Any]:
    """A `Sam2Config` as a JSON-ready dict without the fields that name a checkpoint or dtype."""
    values = config.to_dict()
    for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        values.pop(key, None)
    return values


def _box(mask: torch.Tensor) -> torch.Tensor:
    """[x0, y0, x1, y1] pixel box of a mask [S, S] (the whole image when the mask is empty)."""
    rows = torch.nonzero(mask.any(1)).flatten()
    columns = torch.nonzero(mask.any(0)).flatten()
    if rows.numel() == 0:
        size = mask.shape[-1]
        return torch.tensor([0.0, 0.0, size - 1.0, size - 1.0])
    return torch.tensor([columns[0], rows[0], columns[-1], rows[-1]], dtype=torch.float32)


def _size(image: Any) -> tuple[int, int]:
    if hasattr(image, "size") and isinstance(image.size, tuple):
        return image.size
    array = np.asarray(image)
    return array.shape[1], array.shape[0]


def reconstruction_losses(
    logits: torch.Tensor, masks: torch.Tensor, commitment: torch.Tensor, weights: tuple[float, float, float]
) -> dict[str, torch.Tensor]:
    """SAMTok's loss: w_c * commitment + w_bce * BCE + w_dice * Dice, on the low-res logits.

    The target masks [B,1,S,S] are resized to the logits' size by area (each low-res cell
    holds the fraction of its pixels inside the mask) where the reference samples nearest:
    at 128 px an object spans a handful of stride-4 cells, and nearest sampling (off-centre by
    1.5 px) caps the IoU of the upsampled prediction at about 0.76 on shapes masks, area
    targets at 0.96. Dice is the "naive" form 1 - (2 sum(p t) + 1) / (sum p + sum t + 1) per
    mask, averaged over the batch.
    """
    commitment_weight, bce_weight, dice_weight = weights
    target = F.interpolate(masks, size=logits.shape[-2:], mode="area")[:, 0]
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probabilities = logits.sigmoid().flatten(1)
    flat = target.flatten(1)
    dice = 1 - (2 * (probabilities * flat).sum(1) + 1) / (probabilities.sum(1) + flat.sum(1) + 1)
    dice = dice.mean()
    total = commitment_weight * commitment + bce_weight * bce + dice_weight * dice
    return {"loss": total, "bce": bce, "dice": dice, "commitment": commitment}


def mask_iou_numpy(prediction: np.ndarray, reference: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(prediction, reference).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, reference).sum() / union)
