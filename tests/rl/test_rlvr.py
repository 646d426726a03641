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
def test_rlvr_raises_held_out_accuracy(tmp_path):
    # Scenes of one or two objects: there the shipped tiny reads colour, material and size
    # (model card), so its samples are sometimes right and GRPO has something to sharpen. On
    # the busy default scenes it barely finds the object a question names, and GRPO gained
    # nothing there (measured 2026-11-25, 40 steps x 64 episodes at lr 3e-4: 0.466 -> 0.412
    # greedy).
    config = RLVRConfig(
        out=str(tmp_path / "run"),
        min_objects=1,
        max_objects=2,
        steps=100,
        episodes_per_step=128,
        group_size=8,
        micro_batch_size=64,
        learning_rate=3e-4,
        freeze_vision=True,
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
    # Measured with this seed (2026-11-29, vision frozen): greedy 0.572 -> 0.637, sampled
    # 0.532 -> 0.589 (320 held-out questions; the sampled figure averages 4 samples per
    # question), and 0.637 / 0.590 on the emulated AVX2 float32 path. Seeds 1 and 2 (greedy
    # only): +0.084 and +0.034. Training the vision tower too: seed 0 +0.041, seed 1 +0.075.
    assert after["format_rate"] >= 0.98
    assert after["accuracy"] >= before["accuracy"] + 0.03, (before, after)
    assert after["sampled_accuracy"] >= before["sampled_accuracy"] + 0.03, (before, after)


def test_scene_sizes_are_checked():
    with pytest.raises(ValueError, match="max_objects >= 2"):
        load_prompts(RLVRConfig(min_objects=1, max_objects=1))
    with pytest.raises(ValueError, match="min_objects <= max_objects"):
        load_prompts(RLVRConfig(min_objects=4, max_objects=3))


def test_eval_size_zero_skips_the_measurement_and_callbacks_see_every_step(tmp_path):
    out = tmp_path / "run"
    seen = []
    config = RLVRConfig(
        out=str(out),
        steps=2,
        episodes_per_step=8,
        group_size=4,
        max_new_tokens=6,
        eval_size=0,
        threads=1,
        save_samples_every=1,
        checkpoint_every=0,
    )
    results = run_rlvr(
        config, callbacks=[lambda trainer, metrics: seen.append((trainer.step, metrics["reward_mean"]))]
    )
    assert results["before"] is None and results["after"] is None and results["gain"] is None
    assert [step for step, _ in seen] == [1, 2]
    # The trainer stores each saved episode's advantage for the report.
    records = [json.loads(line) for line in (out / "samples" / "step-1.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(isinstance(r["advantage"], float) for r in records)
