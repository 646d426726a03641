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
    reason="known gap (issue 5 stays open): the shipped tiny default answers near chance on shapes-qa "
    "(model card), and 30 GRPO steps of 64 episodes move neither its greedy nor its sampled held-out "
    "accuracy; measured on the first shipped tiny: 0.416 -> 0.375 greedy, 0.395 -> 0.389 sampled at lr 1e-3",
    strict=False,
)
def test_rlvr_raises_held_out_accuracy(tmp_path):
    config = RLVRConfig(
        out=str(tmp_path / "run"),
        steps=30,
        episodes_per_step=64,
        group_size=8,
        micro_batch_size=32,
        learning_rate=1e-3,
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
