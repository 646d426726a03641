import json

import pytest
from typer.testing import CliRunner

from vlmrl.cli import app
from vlmrl.model.tiny import is_pretrained
from vlmrl.rl.rlvr import RLVRConfig, load_prompts, run_rlvr


def test_cli_end_to_end_on_shapes_qa(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "rlvr",
            "--model",
            "tiny",
            "--data",
            "shapes-qa",
            "--steps",
            "1",
            "--episodes-per-step",
            "8",
            "--group-size",
            "4",
            "--max-new-tokens",
            "6",
            "--eval-size",
            "4",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"before", "after", "gain"}
    assert results["before"]["count"] == 4
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert (
        metrics[0]["step"] == 1
        and "reward/accuracy_mean" in metrics[0]
        and "reward/format_mean" in metrics[0]
    )
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "step-1").is_dir()
    assert "held-out accuracy" in result.output


def test_bad_data_is_reported(tmp_path):
    with pytest.raises(ValueError, match="expected 'shapes-qa' or a `vlmrl data` output directory"):
        load_prompts(RLVRConfig(data=str(tmp_path / "absent")))


@pytest.mark.slow
@pytest.mark.skipif(
    not is_pretrained("tiny"), reason="needs the pretrained tiny default in vlmrl/assets/tiny"
)
@pytest.mark.xfail(
    reason="known gap (issue 5 stays open on it): the shipped tiny default barely reads the image "
    "(model card), so GRPO has little to sharpen; measured on it (2026-11-25): 40 steps x 64 episodes "
    "at lr 3e-4 gave greedy 0.466 -> 0.412, sampled 0.405 -> 0.398; 30 steps x 256 episodes at "
    "lr 2e-4 gave 0.466 -> 0.475 and 0.405 -> 0.410",
    strict=False,
)
def test_rlvr_raises_held_out_accuracy(tmp_path):
    config = RLVRConfig(
        out=str(tmp_path / "run"),
        steps=40,
        episodes_per_step=64,
        group_size=8,
        micro_batch_size=64,
        learning_rate=3e-4,
        eval_size=320,
        eval_samples=4,
        max_new_tokens=16,
        max_length=16,
        threads=2,
        seed=0,
        checkpoint_every=0,
    )
    results = run_rlvr(config)
    before, after = results["before"], results["after"]
    print(
        f"held-out accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}, "
        f"sampled {before['sampled_accuracy']:.3f} -> {after['sampled_accuracy']:.3f}"
    )
    assert after["format_rate"] >= 0.98
    assert after["sampled_accuracy"] >= before["sampled_accuracy"] + 0.05, (before, after)
