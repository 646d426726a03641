import json

import pytest
from helpers import small_tokenizer
from typer.testing import CliRunner

from vlmrl.cli import app
from vlmrl.masktok.recipe import RLConfig, TokenizerMaskDecoder, encoded_examples, floors, run_rl
from vlmrl.masktok.tokens import mask_string, parse_masks
from vlmrl.model.formats import FormatFailure
from vlmrl.rl.episode import load_episodes


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    small_tokenizer().save(path)
    return path


def test_examples_and_floors(tokenizer_path):
    from vlmrl.masktok.model import MaskTokenizer

    tokenizer = MaskTokenizer.load(tokenizer_path)
    examples = encoded_examples(
        tokenizer, 40, 0, understanding_rate=0.3, no_target_rate=0.2, multi_rate=0.2, resolution=32
    )
    kinds = {e.kind for e, _ in examples}
    assert kinds == {"refseg", "caption", "region_qa"}
    for example, strings in examples:
        assert len(strings) == len(example.masks)
        assert all(not isinstance(parse_masks(s, 16), FormatFailure) for s in strings)
    no_target = [e for e, _ in examples if e.kind == "refseg" and not e.masks]
    several = [e for e, _ in examples if len(e.masks) > 1]
    assert no_target and several
    values = floors(examples)
    assert values["empty_gIoU"] < 0.3 and 0 < values["whole_image_gIoU"] < 0.5
    decoder = TokenizerMaskDecoder(tokenizer)
    image = examples[0][0].image
    assert decoder("none", image).shape == (32, 32) and not decoder("none", image).any()
    assert isinstance(decoder("a cube", image), FormatFailure)
    assert decoder(mask_string((1, 2), 16) * 2, image).shape == (32, 32)


def test_cli_sft_then_rl_with_mask_replays(tmp_path, tokenizer_path):
    runner = CliRunner()
    sft_out = tmp_path / "sft"
    common = ["--tokenizer", str(tokenizer_path), "--eval-size", "4", "--resolution", "32", "--threads", "1"]
    result = runner.invoke(
        app,
        [
            "samtok",
            "sft",
            "--out",
            str(sft_out),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--train-size",
            "8",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((sft_out / "results.json").read_text())
    assert {"gIoU", "cIoU", "format"} <= set(results["after"]["refseg"])
    assert "accuracy" in results["after"]["region-caption"]
    rl_out = tmp_path / "rl"
    result = runner.invoke(
        app,
        [
            "samtok",
            "rl",
            "--model",
            str(sft_out / "model"),
            "--out",
            str(rl_out),
            "--steps",
            "1",
            "--episodes-per-step",
            "8",
            "--group-size",
            "4",
            "--train-size",
            "8",
            "--save-samples-every",
            "1",
            "--max-new-tokens",
            "6",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (rl_out / "metrics.jsonl").read_text().splitlines()]
    assert "reward/answer_match_mean" in metrics[0] and "reward/format_mean" in metrics[0]
    episodes = load_episodes(next((rl_out / "samples").glob("*.jsonl")))
    replay = episodes[0].info["replay"]
    assert replay["kind"] == "mask" and set(replay) >= {
        "expression",
        "tokens",
        "truth_rle",
        "predicted_rle",
        "iou",
    }
    assert isinstance(replay["truth_rle"]["counts"], str) and isinstance(episodes[0].info["correct"], bool)


def test_random_token_policy_completes_with_format_penalties(tmp_path, tokenizer_path):
    from vlmrl.model.tiny import build_random_tiny

    random_model = tmp_path / "random"
    build_random_tiny("tiny", seed=3).save(random_model)
    config = RLConfig(
        model=str(random_model),
        tokenizer=str(tokenizer_path),
        out=str(tmp_path / "rl"),
        steps=1,
        episodes_per_step=8,
        group_size=4,
        train_size=8,
        eval_size=4,
        resolution=32,
        max_new_tokens=6,
        save_samples_every=0,
        threads=1,
    )
    results = run_rl(config)
    metrics = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["reward/format_mean"] < 1.0
    assert results["after"]["refseg"]["format"] < 1.0


def test_bad_reward_name_is_rejected(tmp_path, tokenizer_path):
    with pytest.raises(ValueError, match="--reward must be one of"):
        run_rl(RLConfig(reward="bleu", tokenizer=str(tokenizer_path), out=str(tmp_path / "x")))


def test_missing_tokenizer_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        app, ["samtok", "sft", "--tokenizer", str(tmp_path / "absent"), "--out", str(tmp_path / "x")]
    )
    squeezed = "".join(c for c in result.output if c.isalnum())  # the error box wraps lines
    assert result.exit_code == 2 and "notamasktokenizer" in squeezed
