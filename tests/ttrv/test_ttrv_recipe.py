"""TTRV end to end on tiny models: labels out of reach, random policies, the CLI, bad input."""

import json

import pytest
from typer.testing import CliRunner

from vlmrl.cli import app
from vlmrl.evals import get_task
from vlmrl.evals.tasks import Task
from vlmrl.ttrv.recipe import TTRVConfig, VoteSource, adapt, run_ttrv, task_options


class LabelTouched(AssertionError):
    pass


class LabelTrap:
    """A label that raises on any use: comparing, hashing, printing, truth-testing it."""

    def _touched(self, *args, **kwargs):
        raise LabelTouched("the adaptation path read a label")

    __eq__ = __ne__ = __hash__ = __str__ = __repr__ = __format__ = __bool__ = __len__ = __getattr__ = _touched


def trapped_task(count: int = 3) -> Task:
    """shapes-recognition whose labels raise when read, and whose scorer raises when called."""
    base = get_task("shapes-recognition", n=count)

    def docs(limit):
        items = base.load_docs(limit).items
        return [{**doc, "answer": LabelTrap(), "answer_letter": LabelTrap()} for doc in items]

    def score(doc, output):
        raise LabelTouched("the adaptation path scored an output against its label")

    return Task("trapped", docs=docs, to_messages=base.to_messages, score=score, max_new_tokens=6)


def small_config(tmp_path, **overrides) -> TTRVConfig:
    values = dict(
        out=str(tmp_path / "run"),
        votes=3,
        samples=2,
        episodes_per_step=4,
        micro_batch_size=4,
        steps=1,
        max_new_tokens=5,
        max_length=5,
        threads=1,
        self_consistency=False,
    )
    values.update(overrides)
    return TTRVConfig(**values)


def test_adaptation_runs_with_labels_that_raise_when_read(tmp_path):
    from vlmrl.model.tiny import load_tiny

    task = trapped_task()
    docs = [task.unlabeled(doc) for doc in task.load_docs().items]
    assert all("answer" not in doc for doc in docs)
    config = small_config(tmp_path, save_samples_every=1)
    trainer = adapt(config, load_tiny(), task, docs, tmp_path / "run")
    assert trainer.step == 1
    episodes = [
        json.loads(line) for line in (tmp_path / "run" / "samples" / "step-1.jsonl").read_text().splitlines()
    ]
    assert len(episodes) == 4
    assert {len(e["info"]["votes"]) for e in episodes} == {3}  # all N_vote answers, N_train kept
    # The unstripped documents do trip the trap: the test would catch a leak.
    with pytest.raises(LabelTouched):
        str(task.load_docs().items[0]["answer"])


def test_vote_source_keeps_the_first_samples_and_all_votes():
    import numpy as np

    from vlmrl.model import SamplingParams
    from vlmrl.model.tiny import load_tiny

    task = get_task("shapes-recognition", n=2)
    docs = [task.unlabeled(doc) for doc in task.load_docs().items]
    source = VoteSource(task, docs, votes=4, samples=2, sampling=SamplingParams(max_new_tokens=6), seed=0)
    episodes = source.collect(load_tiny(), 4, np.random.default_rng(0))
    assert [e.info["vote_index"] for e in episodes] == [0, 1, 0, 1]
    for episode in episodes:
        votes = episode.info["votes"]
        assert len(votes) == 4 and episode.info["parsed_answer"] == votes[episode.info["vote_index"]]
        assert "answer" not in episode.info
    assert source.state_dict() == {"cursor": 2}


def test_a_policy_emitting_random_tokens_completes_with_format_penalties(tmp_path):
    from vlmrl.model.tiny import build_random_tiny

    config = small_config(tmp_path, task_options=["n=2"], reward="majority", diversity="item-weight")
    results = run_ttrv(config, policy=build_random_tiny())
    assert results["before"]["metrics"]["format"] == 0.0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["reward/parsed_mean"] == 0.0 and metrics[0]["reward_mean"] == 0.0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_cli_adapt_then_eval(tmp_path):
    out = tmp_path / "adapt"
    result = CliRunner().invoke(
        app,
        ["ttrv", "adapt", "--task-options", "n=3", "--votes", "3", "--samples", "2", "--episodes-per-step", "4",
         "--micro-batch-size", "4", "--max-new-tokens", "6", "--adapt-items", "2", "--out", str(out), "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "self-consistency@3" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["adapt_items"] == 2 and results["eval_items"] == 3 and results["unseen_items"] == 1
    assert results["steps"] == 2  # 2 epochs x 2 items / 2 items per step
    assert set(results["before"]["intervals"]) >= {"accuracy"}
    for part in ("before", "after", "self-consistency"):
        assert (out / "eval" / part / "results.json").is_file()
    result = CliRunner().invoke(
        app,
        ["ttrv", "eval", "--model", str(out / "model"), "--task-options", "n=2", "--votes", "2",
         "--out", str(tmp_path / "eval"), "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shapes-recognition-vote2 accuracy" in result.output


def test_bad_input_fails_at_the_edge(tmp_path):
    with pytest.raises(ValueError, match="--reward 'best'"):
        small_config(tmp_path, reward="best").validate()
    with pytest.raises(ValueError, match="samples"):
        small_config(tmp_path, votes=2, samples=3).validate()
    with pytest.raises(ValueError, match="KEY=VALUE"):
        task_options(["n"])
    assert task_options(["n=3", "attributes=[color]"]) == {"n": 3, "attributes": ["color"]}
    result = CliRunner().invoke(
        app, ["ttrv", "adapt", "--task", "no-such-task", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code != 0 and "no-such-task" in result.output
    result = CliRunner().invoke(
        app, ["ttrv", "adapt", "--task-options", "n=2", "--adapt-items", "5", "--out", str(tmp_path / "y")]
    )
    assert result.exit_code != 0 and "adapt-items" in result.output


def test_bundled_reference_configs_load_with_the_reference_settings():
    from pathlib import Path

    import vlmrl.ttrv
    from vlmrl.config import load_yaml, resolve_config_path

    directory = Path(vlmrl.ttrv.__file__).parent / "configs"
    names = sorted(p.stem for p in directory.glob("*.yaml"))
    assert names == ["internvl3-2b", "qwen2.5-vl-7b"]
    for name in names:
        config = load_yaml(TTRVConfig, resolve_config_path(name, directory))
        config.validate()
        assert (config.votes, config.samples, config.epochs, config.temperature) == (32, 16, 2.0, 1.0)
        assert (config.learning_rate, config.warmup_ratio, config.beta) == (5e-7, 0.03, 0.001)


def test_adapting_without_evaluation_reads_no_label_and_calls_back_every_step(tmp_path):
    seen = []
    config = small_config(tmp_path, steps=2, evaluation=False)
    results = run_ttrv(
        config, task=trapped_task(), callbacks=[lambda trainer, metrics: seen.append(trainer.step)]
    )
    assert seen == [1, 2]
    assert results["steps"] == 2 and results["adapt_items"] == 3 and "before" not in results
    assert not (tmp_path / "run" / "eval").exists()
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
