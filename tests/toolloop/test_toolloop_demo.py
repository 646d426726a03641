"""`vlmrl demo --method mini-o3`: the demo's choices, the recipe without its own evaluation,
and a short real demo through the report."""

import json
from pathlib import Path

import pytest
from demo_checks import check_demo_run

from vlmrl.demo import DemoConfig, method_availability, run_demo
from vlmrl.toolloop import demo as mini_o3_demo
from vlmrl.toolloop.data import probe_record


def test_mini_o3_is_available_in_the_demo():
    assert method_availability()["mini-o3"] == "available"


def test_the_demo_config_keeps_the_seed_the_model_and_the_default_steps(tmp_path: Path):
    config = mini_o3_demo.demo_config(DemoConfig(method="mini-o3", seed=7, threads=1), tmp_path)
    config.validate()
    assert config.steps == mini_o3_demo.DEMO_STEPS and config.eval_size == 0
    assert config.seed == config.data_seed == 7 and config.threads == 1 and config.model == "tiny"
    assert config.out == str(tmp_path) and config.save_samples_every == 1
    assert config.eval_turns == 2 * config.max_turns
    assert mini_o3_demo.demo_config(DemoConfig(steps=3), tmp_path).steps == 3


def test_the_held_out_records_scale_with_the_eval_size():
    assert mini_o3_demo.eval_records(200) == 50
    assert mini_o3_demo.eval_records(12) == mini_o3_demo.MIN_EVAL_SIZE


def test_make_data_gives_held_out_records_disjoint_from_training(tmp_path: Path):
    config = DemoConfig(method="mini-o3", eval_size=40, seed=3)
    (task,) = mini_o3_demo.make_data(config, tmp_path)
    docs = task.docs(None)
    assert task.name == "mini-probe" and len(docs) == 10
    assert task.settings["turns"] == mini_o3_demo.DEMO_EVAL_TURNS
    # Ids name the seed and the index, whatever the tile size: small tiles render quickly.
    training = {
        probe_record(i, 3, difficulty, tile=56)["id"] for i in range(20) for difficulty in ("easy", "medium")
    }
    assert not training & {doc["record_id"] for doc in docs}
    listing = json.loads((tmp_path / "mini-probe-held-out.json").read_text())
    assert [r["id"] for r in listing["records"]] == [doc["record_id"] for doc in docs]
    again = mini_o3_demo.make_data(config, tmp_path / "again")[0].docs(None)
    assert [d["question"] for d in again] == [d["question"] for d in docs]


def test_the_recipe_without_evaluation_trains_saves_and_calls_back(tmp_path: Path):
    from vlmrl.model.tiny import build_random_tiny
    from vlmrl.toolloop.recipe import MiniO3Config, run_mini_o3

    model = tmp_path / "random"
    build_random_tiny("tiny", seed=1).save(model)
    calls = []
    config = MiniO3Config(
        model=str(model),
        out=str(tmp_path / "run"),
        tile=84,
        coldstart_steps=0,
        eval_size=0,
        steps=1,
        episodes_per_step=4,
        group_size=2,
        micro_batch_size=4,
        max_turns=2,
        max_new_tokens=12,
        max_sampling_rounds=1,
        save_samples_every=1,
        threads=1,
    )
    results = run_mini_o3(config, callbacks=[lambda trainer, metrics: calls.append(trainer.step)])
    assert calls == [1] and results["steps"] == 1
    assert "after_rl" not in results and "after_sft" not in results
    assert not (tmp_path / "run" / "eval").exists()
    assert (tmp_path / "run" / "model" / "config.json").is_file()


@pytest.mark.slow
def test_a_short_mini_o3_demo_compares_and_shows_tool_trajectories(tmp_path: Path, monkeypatch):
    # One cold-start step keeps this test short; the default demo runs DEMO_COLDSTART_STEPS.
    monkeypatch.setattr(mini_o3_demo, "DEMO_COLDSTART_STEPS", 1)
    out = tmp_path / "demo"
    run_demo(DemoConfig(method="mini-o3", out=str(out), steps=1, eval_size=40, threads=1))
    count = mini_o3_demo.eval_records(40)
    run = check_demo_run(out, task="mini-probe", metric="accuracy", items=count, steps=1)
    assert [row["metric"] for row in run.rows].count("accuracy") == 1
    assert {"accuracy@1", f"accuracy@{mini_o3_demo.DEMO_EVAL_TURNS}"} <= {row["metric"] for row in run.rows}
    assert all(episode["info"]["replay"]["kind"] == "tool_trajectory" for episode in run.samples)
    assert 'class="replay tool-trajectory"' in run.page
