"""`vlmrl vision-zero train|play` end to end on tiny, and their input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlmrl.cli import app
from vlmrl.games.recipe import VisionZeroConfig
from vlmrl.runs import read_metrics


def test_train_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    small = ["--steps", "2", "--episodes-per-step", "8", "--eval-games", "2", "--eval-questions", "4"]
    result = CliRunner().invoke(
        app,
        ["vision-zero", "train", *small, "--out", str(out), "--threads", "1", "--save-samples-every", "1"]
        + ["--save-games-every", "1", "--clue-tokens", "12", "--decision-tokens", "8"],
    )
    assert result.exit_code == 0, result.output
    assert "held-out spy identification" in result.output
    results = json.loads((out / "results.json").read_text())
    assert {"before", "after", "spy_accuracy_gain", "shapes_qa_change"} <= set(results)
    assert results["before"]["spy-game"]["interval"] is not None
    metrics = read_metrics(out)
    # Iterative-SPO's fixed cycle: a decision step, then a clue step; both logged.
    assert [m["phase_decision"] for m in metrics] == [1.0, 0.0]
    assert all("decision_accuracy" in m and "baseline_spy" in m for m in metrics)
    assert (out / "checkpoints" / "step-2").is_dir() and (out / "model" / "model.safetensors").is_file()
    assert (out / "config.yaml").is_file()
    samples = sorted((out / "samples").glob("step-*.jsonl"))
    assert len(samples) == 2
    first = [json.loads(line) for line in samples[0].read_text().splitlines()]
    assert {e["info"]["stage"] for e in first} == {"decision"} and first[0]["group"].startswith("game-")
    assert first[0]["info"]["replay"]["kind"] == "spy_game"
    second = [json.loads(line) for line in samples[1].read_text().splitlines()]
    assert {e["role"] for e in second} == {"spy", "civilian"}
    assert (out / "samples" / "games" / "step-1.jsonl").is_file()


def test_bundled_config_loads():
    from vlmrl.config import load_yaml
    from vlmrl.games.cli import CONFIGS

    config = load_yaml(VisionZeroConfig, CONFIGS / "qwen2.5-vl-7b.yaml")
    config.validate()
    assert (config.group_size, config.learning_rate, config.beta) == (8, 1e-5, 0.04)
    assert (config.players, config.rounds, config.clue_tokens, config.temperature) == (4, 2, 1024, 0.8)


def test_bad_settings_fail_at_the_edge():
    with pytest.raises(ValueError, match="multiple of the 8 episodes"):
        VisionZeroConfig(episodes_per_step=12).validate()
    with pytest.raises(ValueError, match="phase-mode"):
        VisionZeroConfig(phase_mode="sometimes").validate()
    with pytest.raises(ValueError, match="decision 'everyone'"):
        VisionZeroConfig(decision="everyone").validate()


def test_play_prints_a_game_from_a_folder_of_photographs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(2):
        coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
        Image.fromarray(coarse).resize((160, 120), Image.BICUBIC).save(folder / f"photo{index}.jpg")
    result = CliRunner().invoke(
        app,
        ["vision-zero", "play", "--pairs", str(folder), "--group-size", "2", "--clue-tokens", "12"]
        + ["--decision-tokens", "8", "--max-side", "112"],
    )
    assert result.exit_code == 0, result.output
    for expected in ("Round 1:", "Round 2:", "Decisions:", "The spy is player", "Clue rewards:"):
        assert expected in result.output
    missing = CliRunner().invoke(app, ["vision-zero", "play", "--pairs", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere" in missing.output


def test_train_without_held_out_evaluation_only_trains(tmp_path):
    from vlmrl.games.recipe import pair_pools, run_vision_zero

    out = tmp_path / "run"
    config = VisionZeroConfig(
        out=str(out), steps=2, episodes_per_step=8, eval_games=0, eval_questions=0, threads=1,
        clue_tokens=8, decision_tokens=6, checkpoint_every=0,
    )  # fmt: skip
    assert pair_pools(config)[1] is None
    seen = []
    results = run_vision_zero(config, callbacks=[lambda trainer, metrics: seen.append(trainer.step)])
    assert seen == [1, 2]
    assert results["before"] is None and results["after"] is None and results["spy_accuracy_gain"] is None
    assert not (out / "eval").exists()
    assert (out / "model" / "model.safetensors").is_file()
