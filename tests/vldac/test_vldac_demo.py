"""`vlmrl demo --method vl-dac`: held-out episodes, the format-warmed start, a short real run."""

from __future__ import annotations

import json

import pytest
from demo_checks import check_demo_run, read_lines

from vlmrl import demo
from vlmrl.demo import DemoConfig, run_demo
from vlmrl.vldac import demo as vldac_demo
from vlmrl.vldac.recipe import VLDACConfig, run_vldac


def test_vldac_is_a_demo_method_with_its_own_starting_model():
    assert demo.method_availability()["vl-dac"] == "available"
    assert demo.resolve_method("vl-dac").start_model is not None


def test_held_out_episodes_scale_with_the_eval_size_and_move_with_the_seed(tmp_path):
    (task,) = vldac_demo.make_data(DemoConfig(method="vl-dac", eval_size=200), tmp_path)
    docs = task.docs(None)
    assert task.primary_metric == "success"
    assert len(docs) == 200 // vldac_demo.QUESTIONS_PER_EPISODE
    assert docs[0]["seed"] == vldac_demo.HELD_OUT_SEED and len({d["seed"] for d in docs}) == len(docs)
    (small,) = vldac_demo.make_data(DemoConfig(method="vl-dac", eval_size=10), tmp_path)
    assert len(small.docs(None)) == 10  # never below the demo's floor of 10
    (other,) = vldac_demo.make_data(DemoConfig(method="vl-dac", eval_size=200, seed=1), tmp_path)
    assert not {d["seed"] for d in docs} & {d["seed"] for d in other.docs(None)}


def test_recipe_without_held_out_evaluation_calls_back_after_every_update(tmp_path):
    calls = []
    config = VLDACConfig(
        out=str(tmp_path / "run"),
        steps=2,
        episodes_per_step=4,
        worlds=2,
        minibatches=1,
        micro_batch_size=4,
        value_widths="8",
        max_new_tokens=8,
        format_warmup_steps=0,
        eval_episodes=0,
        checkpoint_every=0,
        value_warmup=1,
    )
    results = run_vldac(config, callbacks=[lambda trainer, metrics: calls.append(trainer.step)])
    assert calls == [1, 2]
    assert results["before"] is None and results["after"] is None and results["gain"] is None
    assert not (tmp_path / "run" / "eval").exists()
    assert (tmp_path / "run" / "model" / "value_head.safetensors").is_file()


@pytest.mark.slow
def test_a_short_vldac_demo_writes_the_table_predictions_curves_and_replays(tmp_path, monkeypatch):
    # A short warm-up keeps the test quick; it teaches the format less well, which the test
    # does not look at.
    monkeypatch.setattr(vldac_demo, "FORMAT_WARMUP_STEPS", 8)
    out = tmp_path / "demo"
    run_demo(DemoConfig(method="vl-dac", out=str(out), steps=3, eval_size=40))
    episodes = 40 // vldac_demo.QUESTIONS_PER_EPISODE
    run = check_demo_run(out, task="vl-dac-numberline", metric="success", items=episodes, steps=3)
    assert {"valid_rate", "return", "steps"} <= {row["metric"] for row in run.rows}
    # Both evaluations and the training read the warmed-up model, not tiny itself.
    warmed = out / "data" / vldac_demo.WARMED_MODEL
    assert json.loads((out / "eval" / "before" / "results.json").read_text())["model"] == str(warmed)
    assert "start model" in json.loads((out / "timings.json").read_text())
    replays = [
        record["info"]["replay"]
        for path in sorted((out / "samples").glob("episodes-step-*.jsonl"))
        for record in read_lines(path)
    ]
    assert replays and all(r["kind"] == "env_episode" and r["steps"] for r in replays)
    assert '<div class="replay env-episode">' in run.page and 'data-kind="env_episode"' in run.page
