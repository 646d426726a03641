import json

import pytest
from helpers import small_tokenizer
from safetensors.torch import load_file
from typer.testing import CliRunner

from vlmrl.cli import app
from vlmrl.masktok.train import MaskData, TokenizerTrainConfig, train_tokenizer


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "tokenizer"
    small_tokenizer().save(path)
    return path


def _config(out, init, steps):
    return TokenizerTrainConfig(
        out=str(out),
        init=str(init),
        steps=steps,
        scenes_per_step=2,
        max_masks=6,
        eval_size=4,
        eval_every=0,
        checkpoint_every=1,
        threads=1,
    )


def test_resume_repeats_an_uninterrupted_run(tmp_path, init):
    whole = train_tokenizer(_config(tmp_path / "whole", init, 3))
    train_tokenizer(_config(tmp_path / "split", init, 2))
    resumed = train_tokenizer(_config(tmp_path / "split", init, 3))
    first = load_file(str(tmp_path / "whole" / "checkpoints" / "step-3" / "model.safetensors"))
    second = load_file(str(tmp_path / "split" / "checkpoints" / "step-3" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)  # weights and EMA codebooks
    assert whole["held_out_miou"] == resumed["held_out_miou"]
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3]
    assert (tmp_path / "split" / "tokenizer" / "model.safetensors").is_file()


def test_cli_train_encode_decode(tmp_path, init):
    from vlmrl.data_recipes.masks import export_shapes_coco

    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "samtok",
            "train",
            "--out",
            str(out),
            "--init",
            str(init),
            "--steps",
            "1",
            "--eval-size",
            "3",
            "--max-masks",
            "4",
            "--scenes-per-step",
            "1",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out reconstruction mIoU" in result.output
    coco = export_shapes_coco(tmp_path / "coco", n=2, seed=0, resolution=48)
    encoded = tmp_path / "masks.jsonl"
    result = runner.invoke(
        app,
        [
            "samtok",
            "encode",
            "--coco",
            str(coco),
            "--images",
            str(tmp_path / "coco"),
            "--tokenizer",
            str(out / "tokenizer"),
            "--out",
            str(encoded),
        ],
    )
    assert result.exit_code == 0, result.output
    first = json.loads(encoded.read_text().splitlines()[0])
    assert first["tokens"].startswith("<|mt_start|>") and first["tokens"].endswith("<|mt_end|>")
    image = tmp_path / "coco" / first["image"]
    result = runner.invoke(
        app,
        [
            "samtok",
            "decode",
            "--image",
            str(image),
            "--tokens",
            first["tokens"] * 2,
            "--tokenizer",
            str(out / "tokenizer"),
            "--out",
            str(tmp_path / "decoded.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    decoded = json.loads((tmp_path / "decoded.json").read_text())
    assert len(decoded) == 2 and decoded[0]["size"] == [48, 48]
    bad = runner.invoke(
        app,
        [
            "samtok",
            "decode",
            "--image",
            str(image),
            "--tokens",
            "<|mt_start|><|mt_0001|>",
            "--tokenizer",
            str(out / "tokenizer"),
        ],
    )
    assert bad.exit_code != 0 and "mt_end" in bad.output


def test_coco_training_data_and_bad_inputs(tmp_path):
    from vlmrl.data_recipes.masks import export_shapes_coco

    coco = export_shapes_coco(tmp_path / "coco", n=2, seed=0, resolution=32)
    data = MaskData(str(coco), str(tmp_path / "coco"))
    images, masks, owners = data.batch(0, 2, 10, 0)
    assert len(masks) == len(owners) and masks[0].shape == (32, 32)
    from vlmrl.masktok.train import split_off_held_out

    last_scene_masks = len(data.scene(1)[1])
    held = split_off_held_out(data, 100)
    assert data.size == 1 and len(held) == last_scene_masks  # the last of 2 scenes is held out
    with pytest.raises(ValueError, match="needs --images"):
        MaskData(str(coco), "")
