"""`vlmrl samtok train|encode|decode|sft|rl|eval`: the mask tokenizer and a VLM that speaks it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer

from vlmrl.config import command, option
from vlmrl.masktok.recipe import EvalConfig, RLConfig, SFTConfig
from vlmrl.masktok.train import TokenizerTrainConfig

CONFIGS = Path(__file__).parent / "configs"

app = typer.Typer(
    help="SAMTok: masks as two tokens; mask tokenizer training, SFT and RL.", no_args_is_help=True
)


@dataclass
class EncodeConfig:
    """`vlmrl samtok encode`: mask token strings of every object mask in a COCO file."""

    coco: str = option(..., help="COCO instance JSON whose masks to encode.")
    images: str = option(..., help="Folder the COCO file_names are relative to.")
    out: str = option("masks.jsonl", help="JSONL with one line per annotation: image, annotation id, tokens.")
    tokenizer: str = option("samtok-tiny", help="Mask tokenizer directory ('samtok-tiny': the shipped one).")


@dataclass
class DecodeConfig:
    """`vlmrl samtok decode`: masks (COCO RLE) from mask token strings and their images."""

    image: str = option(..., help="The image the tokens refer to.")
    tokens: str = option(..., help="Text holding <|mt_start|>...<|mt_end|> masks.")
    out: str = option("decoded.json", help="JSON list of COCO RLE masks, one per mask string.")
    tokenizer: str = option("samtok-tiny", help="Mask tokenizer directory.")


def _load_tokenizer(spec: str):
    """The tokenizer, or a usage error naming --tokenizer."""
    from vlmrl.masktok.model import MaskTokenizer

    try:
        return MaskTokenizer.load(spec)
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="'--tokenizer'") from error


@command(app, TokenizerTrainConfig, name="train", configs_directory=CONFIGS)
def train(config: TokenizerTrainConfig) -> None:
    """Train the mask tokenizer; prints the held-out reconstruction mIoU."""
    from vlmrl.masktok.train import train_tokenizer

    results = train_tokenizer(config)
    typer.echo(
        f"held-out reconstruction mIoU {results['held_out_miou']:.3f} over {results['held_out_masks']} masks; "
        f"tokenizer in {config.out}/tokenizer"
    )


@command(app, EncodeConfig, name="encode", configs_directory=CONFIGS)
def encode(config: EncodeConfig) -> None:
    """Encode every mask of a COCO file as a mask token string."""
    from PIL import Image

    from vlmrl.data_recipes.masks import read_coco
    from vlmrl.masktok.tokens import mask_string
    from vlmrl.runs import atomic_write_text

    tokenizer = _load_tokenizer(config.tokenizer)
    lines = []
    for entry in read_coco(config.coco):
        path = Path(config.images) / entry.file_name
        if not path.is_file():
            raise typer.BadParameter(f"image {path} of {config.coco} does not exist", param_hint="'--images'")
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        objects = [o for o in entry.objects if o["mask"].any()]
        if not objects:
            continue
        codes = tokenizer.encode([image] * len(objects), [o["mask"] for o in objects]).tolist()
        for obj, code in zip(objects, codes):
            lines.append(
                json.dumps(
                    {
                        "image": entry.file_name,
                        "annotation": obj["id"],
                        "tokens": mask_string(code, tokenizer.config.codebook_size),
                    }
                )
            )
    atomic_write_text(config.out, "".join(line + "\n" for line in lines))
    typer.echo(f"{len(lines)} masks encoded to {config.out}")


@command(app, DecodeConfig, name="decode", configs_directory=CONFIGS)
def decode(config: DecodeConfig) -> None:
    """Decode mask token strings back to masks on their image."""
    from PIL import Image

    from vlmrl.data_recipes.masks import encode_rle
    from vlmrl.masktok.tokens import parse_masks
    from vlmrl.model.formats import FormatFailure
    from vlmrl.runs import atomic_write_json

    if not Path(config.image).is_file():
        raise typer.BadParameter(f"{config.image} does not exist", param_hint="'--image'")
    tokenizer = _load_tokenizer(config.tokenizer)
    codes = parse_masks(
        config.tokens, tokenizer.config.codebook_size, tokenizer.config.levels, allow_empty=False
    )
    if isinstance(codes, FormatFailure):
        raise typer.BadParameter(f"{config.tokens!r}: {codes.reason}", param_hint="'--tokens'")
    with Image.open(config.image) as opened:
        image = opened.convert("RGB")
    masks = tokenizer.decode([image] * len(codes), [list(c) for c in codes])
    atomic_write_json(config.out, [encode_rle(m) for m in masks])
    typer.echo(f"{len(masks)} masks decoded to {config.out}")


@command(app, SFTConfig, name="sft", configs_directory=CONFIGS)
def sft(config: SFTConfig) -> None:
    """SFT a VLM on referring segmentation and region captions with mask tokens."""
    from vlmrl.masktok.recipe import run_sft

    _load_tokenizer(config.tokenizer)  # fail at the edge, before loading the VLM
    results = run_sft(config)
    if "after" not in results:
        typer.echo(f"SFT done, not evaluated (--eval-size 0); model in {config.out}/model")
        return
    before, after = results["before"]["refseg"], results["after"]["refseg"]
    typer.echo(
        f"refseg gIoU {before['gIoU']:.3f} -> {after['gIoU']:.3f}, cIoU {before['cIoU']:.3f} -> {after['cIoU']:.3f} "
        f"(whole-image floor {results['floors']['whole_image_gIoU']:.3f}); results in {config.out}/results.json"
    )


@command(app, RLConfig, name="rl", configs_directory=CONFIGS)
def rl(config: RLConfig) -> None:
    """GRPO on referring segmentation with the textual answer-matching reward."""
    from vlmrl.masktok.recipe import run_rl

    _load_tokenizer(config.tokenizer)  # fail at the edge, before loading the VLM
    results = run_rl(config)
    if "after" not in results:
        typer.echo(
            f"trained {results['steps']} steps, not evaluated (--eval-size 0); model in {config.out}/model"
        )
        return
    typer.echo(
        f"refseg gIoU {results['before']['refseg']['gIoU']:.3f} -> {results['after']['refseg']['gIoU']:.3f}; "
        f"results in {config.out}/results.json"
    )


@command(app, EvalConfig, name="eval", configs_directory=CONFIGS)
def evaluate(config: EvalConfig) -> None:
    """Evaluate a VLM on refseg (gIoU, cIoU, N-acc) and region captioning."""
    from vlmrl.masktok.recipe import evaluate_vlm, prepare_vlm

    tokenizer = _load_tokenizer(config.tokenizer)
    vlm = prepare_vlm(config.model, tokenizer)
    summary = evaluate_vlm(vlm, tokenizer, config, Path(config.out))
    for name, metrics in summary.items():
        if name != "intervals":
            typer.echo(
                f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
            )
