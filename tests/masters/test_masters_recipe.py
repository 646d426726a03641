"""Masters end to end on tiny models: data per stage, resume, rewards, baselines, bad input."""

from __future__ import annotations

import json
import math

import pytest
from torch.nn.utils import parametrize
from typer.testing import CliRunner

from vlmrl.masters.recipe import MastersConfig, load_data, run_distill, run_generate
from vlmrl.masters.student import drop_layers, parse_layers
from vlmrl.model import VLM
from vlmrl.model.tiny import build_random_tiny
from vlmrl.rl.episode import load_episodes
from vlmrl.runs import read_metrics

SMALL = dict(episodes_per_step=8, eval_size=4, max_new_tokens=8, checkpoint_every=0, part_size=1)


@pytest.fixture(scope="module")
def teacher():
    return VLM.load("tiny")


def test_masters_end_to_end_writes_stages_samples_and_resumes(tmp_path, teacher):
    student = drop_layers(VLM.load("tiny"), [0])
    config = MastersConfig(
        steps=5, data_dir=str(tmp_path / "data"), out=str(tmp_path / "run"), save_samples_every=1, **SMALL
    )
    results = run_distill(config, teacher=teacher, student=student)
    assert results["student_updates"] == 5
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["ratios_by_part"] == [0.2, 0.15, 0.1, 0.05, 0.0]  # one stage per step here
    first = load_episodes(tmp_path / "data" / "masters" / "part-00000.jsonl")
    assert [e.info["source"] for e in first] == ["teacher"] * 4 + ["student"] * 4
    assert len({e.group for e in first}) == 1 and all(e.info["ratio"] == 0.2 for e in first)
    assert all(not t.logprobs for e in first for t in e.turns)  # never the generator's log-probs
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(metrics) == 5
    assert all(0.0 <= m["reward/distill_mean"] <= 1.0 and math.isfinite(m["jsd"]) for m in metrics)
    assert all(m["ratio_mean"] == pytest.approx(1.0) for m in metrics)  # one update per batch
    sample = load_episodes(tmp_path / "run" / "samples" / "step-1.jsonl")[0]
    assert sample.info["replay"]["kind"] == "qa" and isinstance(sample.info["correct"], bool)
    assert "jsd" in sample.info
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0.0 <= stored["before"]["accuracy"] <= 1.0 and len(stored["after"]["interval"]) == 2
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    # resume: the data is not generated again, and the finished run is not trained again
    assert run_generate(config.generate_config(), teacher=teacher, student=student)["parts_written_now"] == 0
    again = run_distill(config, teacher=teacher, student=student)
    assert again["student_updates"] == 5 and len(read_metrics(tmp_path / "run" / "metrics.jsonl")) == 5


def test_random_token_student_and_baselines_complete_at_equal_updates(tmp_path, teacher):
    """A student emitting random tokens fails every format check: rewards are 0, the run finishes."""
    data = str(tmp_path / "data")
    updates = {}
    for method in ("masters", "sft", "logit-kd"):
        student = build_random_tiny("tiny", seed=1)
        judge = "teacher" if method == "masters" else ""  # R_acc from the (unmasked) teacher as judge
        config = MastersConfig(
            method=method, steps=2, data_dir=data, out=str(tmp_path / method), judge=judge, **SMALL
        )
        results = run_distill(config, teacher=teacher, student=student)
        updates[method] = results["student_updates"]
        assert results["after"]["format"] is not None
    assert updates == {"masters": 2, "sft": 2, "logit-kd": 2}
    # the caller's teacher comes back unmasked
    assert not any(parametrize.is_parametrized(m) for m in teacher.model.modules())
    judged = read_metrics(tmp_path / "masters" / "metrics.jsonl")
    assert all(0.0 <= m["reward/accuracy_mean"] <= 1.0 for m in judged)
    student_episodes = [
        e for e in load_data(tmp_path / "data", "masters", 2, 8) if e.info["source"] == "student"
    ]
    assert student_episodes and not any(e.info["correct"] for e in student_episodes)
    baseline = load_data(tmp_path / "data", "full-teacher", 2, 8)
    assert all(e.info["source"] == "teacher" and e.info["ratio"] == 0.0 for e in baseline)


def test_bad_input_is_named(tmp_path, teacher):
    with pytest.raises(ValueError, match="multiple of responses"):
        run_distill(
            MastersConfig(episodes_per_step=6, out=str(tmp_path / "a")), teacher=teacher, student=teacher
        )
    with pytest.raises(ValueError, match="--method 'dpo'"):
        run_distill(MastersConfig(method="dpo", out=str(tmp_path / "b")), teacher=teacher, student=teacher)
    with pytest.raises(ValueError, match="--data-dir"):
        load_data(tmp_path / "nothing", "masters", 1, 8)
    with pytest.raises(ValueError, match="--student-layers"):
        parse_layers("0,x")
    from vlmrl.masters.cli import app

    outcome = CliRunner().invoke(app, ["distill", "--method", "dpo", "--out", str(tmp_path / "c")])
    assert outcome.exit_code == 2 and "dpo" in outcome.output


def test_bundled_configs_load_into_the_config_dataclass():
    from pathlib import Path

    from vlmrl.config import load_yaml

    folder = Path(__file__).resolve().parents[2] / "vlmrl" / "masters" / "configs"
    paths = sorted(folder.glob("*.yaml"))
    assert paths
    for path in paths:
        config = load_yaml(MastersConfig, path)
        assert config.episodes_per_step % config.responses == 0 and config.beta == 0.1
        assert config.generate_config().repetition_penalty == 1.05


def test_padded_vocabularies_are_compared_over_the_tokenizers_tokens_micro_batch_by_micro_batch(
    tmp_path, teacher
):
    """Qwen2.5-VL-7B (152064 rows) teaching 3B (151936): rows that differ by padding only.

    The teacher is scored on at most one micro-batch of responses at a time, in the reward pass
    and in the loss alike.
    """
    from vlmrl.masters.recipe import shared_vocabulary

    student = drop_layers(VLM.load("tiny"), [0])
    rows = teacher.model.get_output_embeddings().weight.shape[0]
    student.model.resize_token_embeddings(rows + 64)  # padding past the tokenizer's tokens
    assert shared_vocabulary(teacher, student) == len(teacher.tokenizer) <= rows
    seen: list[int] = []
    original = teacher.score

    def counted(conversations, *args, **kwargs):
        seen.append(len(conversations))
        return original(conversations, *args, **kwargs)

    teacher.score = counted
    try:
        config = MastersConfig(
            steps=2,
            data_dir=str(tmp_path / "data"),
            out=str(tmp_path / "run"),
            **{**SMALL, "micro_batch_size": 3, "eval_size": 0},
        )
        results = run_distill(config, teacher=teacher, student=student)
    finally:
        del teacher.score
    assert results["student_updates"] == 2
    assert seen and max(seen) <= 3  # 8 responses per step, never more than the micro-batch of 3
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(math.isfinite(m["jsd"]) and 0.0 <= m["reward/distill_mean"] <= 1.0 for m in metrics)

    other = drop_layers(VLM.load("tiny"), [0])
    other.model.resize_token_embeddings(rows + 64)
    other.tokenizer.add_tokens(["<not-in-the-teacher>"])
    with pytest.raises(ValueError, match="must share a tokenizer"):
        shared_vocabulary(teacher, other, "7b", "3b")
