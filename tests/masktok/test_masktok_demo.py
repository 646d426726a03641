"""`vlmrl demo --method samtok`: the demo's choices, the recipe without its own evaluation,
and a short real demo through the report."""

from pathlib import Path

import pytest
from demo_checks import check_demo_run
from helpers import small_tokenizer

from vlmrl.demo import DemoConfig, method_availability, run_demo
from vlmrl.masktok import demo as samtok_demo


def test_samtok_is_available_in_the_demo():
    assert method_availability()["samtok"] == "available"


def test_the_held_out_examples_scale_with_the_eval_size():
    assert samtok_demo.eval_examples(200) == 100
    assert samtok_demo.eval_examples(12) == samtok_demo.MIN_EVAL_SIZE


def test_a_tokenizer_already_in_the_data_directory_is_reused(tmp_path: Path):
    saved = tmp_path / samtok_demo.TOKENIZER_DIRECTORY / "tokenizer"
    small_tokenizer().save(saved)
    assert samtok_demo.tokenizer_path(DemoConfig(method="samtok"), tmp_path) == saved
    assert not (tmp_path / samtok_demo.TOKENIZER_DIRECTORY / "metrics.jsonl").exists()  # not retrained


def test_make_data_gives_held_out_refseg_disjoint_from_training(tmp_path: Path):
    from vlmrl.masktok.data import refseg_example

    small_tokenizer().save(tmp_path / samtok_demo.TOKENIZER_DIRECTORY / "tokenizer")
    (task,) = samtok_demo.make_data(DemoConfig(method="samtok", eval_size=24, seed=2), tmp_path)
    docs = task.docs(None)
    assert task.name == "refseg" and task.primary_metric == "gIoU" and len(docs) == 12
    training = {refseg_example(i, 2).id for i in range(50)}
    assert not training & {doc["id"] for doc in docs}
    assert all(doc["mask"].shape == (128, 128) for doc in docs)


def test_the_rl_recipe_without_evaluation_trains_saves_and_calls_back(tmp_path: Path):
    from vlmrl.masktok.recipe import RLConfig, run_rl
    from vlmrl.model.tiny import build_random_tiny

    small_tokenizer().save(tmp_path / "tokenizer")
    build_random_tiny("tiny", seed=3).save(tmp_path / "random")
    calls = []
    config = RLConfig(
        model=str(tmp_path / "random"),
        tokenizer=str(tmp_path / "tokenizer"),
        out=str(tmp_path / "rl"),
        steps=1,
        episodes_per_step=8,
        group_size=4,
        train_size=8,
        eval_size=0,
        resolution=32,
        max_new_tokens=6,
        save_samples_every=1,
        threads=1,
    )
    results = run_rl(config, callbacks=[lambda trainer, metrics: calls.append(trainer.step)])
    assert calls == [1] and results["steps"] == 1 and "after" not in results
    assert not (tmp_path / "rl" / "eval-before").exists() and not (tmp_path / "rl" / "eval-after").exists()
    assert (tmp_path / "rl" / "model" / "config.json").is_file()


@pytest.mark.slow
def test_a_short_samtok_demo_compares_and_shows_mask_replays(tmp_path: Path, monkeypatch):
    # A shorter tokenizer and SFT keep this test short; the default demo runs the module's figures.
    monkeypatch.setattr(samtok_demo, "DEMO_TOKENIZER_STEPS", 3)
    monkeypatch.setattr(samtok_demo, "DEMO_SFT_STEPS", 1)
    out = tmp_path / "demo"
    run_demo(DemoConfig(method="samtok", out=str(out), steps=1, eval_size=20, threads=1))
    count = samtok_demo.eval_examples(20)
    run = check_demo_run(out, task="refseg", metric="gIoU", items=count, steps=1)
    assert {row["metric"] for row in run.rows} >= {"gIoU", "cIoU", "N-acc", "format"}
    assert all(row["task"] == "refseg" and row["n"] == count for row in run.rows)
    assert all(episode["info"]["replay"]["kind"] == "mask" for episode in run.samples)
    assert 'class="replay mask"' in run.page
