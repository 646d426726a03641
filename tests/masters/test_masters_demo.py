"""`vlmrl demo --method masters`: held-out questions, the student as the start, a short real run."""

from __future__ import annotations

import json

import pytest
from demo_checks import check_demo_run

from vlmrl import demo
from vlmrl.demo import DemoConfig, run_demo
from vlmrl.masters import demo as masters_demo
from vlmrl.masters.recipe import MastersConfig, run_distill
from vlmrl.model import VLM


def test_masters_is_a_demo_method_with_its_own_starting_model():
    assert demo.method_availability()["masters"] == "available"
    assert demo.resolve_method("masters").start_model is not None


def test_held_out_questions_are_the_recipes_own_metric_on_another_seed(tmp_path):
    (task,) = masters_demo.make_data(DemoConfig(method="masters", eval_size=30, seed=2), tmp_path)
    assert task.name == "shapes-qa" and len(task.docs(None)) == 30
    # The training questions use --data-seed = --seed (2); the held-out ones another seed.
    assert task.settings["seed"] == 2 + masters_demo.HELD_OUT_SEED_OFFSET
    assert (task.settings["min_objects"], task.settings["max_objects"]) == (1, 2)


def test_the_start_is_the_one_layer_student_saved_once(tmp_path):
    config = DemoConfig(method="masters")
    first = masters_demo.start_model(config, tmp_path)
    stamp = (first / "config.json").stat().st_mtime_ns
    assert masters_demo.start_model(config, tmp_path) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp  # not built again
    student = VLM.load(str(first))
    assert student.model.config.text_config.num_hidden_layers == 1
    assert demo.METHODS["masters"].start_model(config, tmp_path) == str(first)


def test_recipe_without_held_out_evaluation_calls_back_after_every_update(tmp_path):
    calls = []
    config = MastersConfig(
        steps=2,
        episodes_per_step=8,
        max_new_tokens=8,
        part_size=1,
        eval_size=0,
        checkpoint_every=0,
        data_dir=str(tmp_path / "data"),
        out=str(tmp_path / "run"),
    )
    results = run_distill(config, callbacks=[lambda trainer, metrics: calls.append(trainer.step)])
    assert calls == [1, 2]
    assert results["before"] is None and results["after"] is None and results["gain"] is None
    assert not (tmp_path / "run" / "eval-before").exists() and not (tmp_path / "run" / "eval-after").exists()


@pytest.mark.slow
def test_a_short_masters_demo_writes_the_table_predictions_curves_and_samples(tmp_path):
    out = tmp_path / "demo"
    run_demo(DemoConfig(method="masters", out=str(out), steps=2, eval_size=20))
    run = check_demo_run(out, task="shapes-qa", metric="accuracy", items=20, steps=2)
    # The evaluation before training is the student's, not the teacher's (--model).
    student = out / "data" / masters_demo.STUDENT_MODEL
    assert json.loads((out / "eval" / "before" / "results.json").read_text())["model"] == str(student)
    assert all(record["info"]["replay"]["kind"] == "qa" for record in run.samples)
    # The report has no view of its own for "qa" replays: they show as conversations.
    page = run.page
    assert 'data-kind="conversation"' in page and '<div class="conversation">' in page
