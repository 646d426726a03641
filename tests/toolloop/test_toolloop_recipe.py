"""The recipe's pieces on tiny models: data, cold start, random policies, the CLI, configs."""

import json

import pytest
from typer.testing import CliRunner

from vlmrl.config import load_yaml
from vlmrl.evals.interactive import LoopLimits
from vlmrl.model import SamplingParams
from vlmrl.toolloop.cli import CONFIGS, app
from vlmrl.toolloop.data import DIFFICULTY, coldstart_conversations, probe_record, probe_records, tile_box
from vlmrl.toolloop.grounding import GroundingTool, parse_grounding
from vlmrl.toolloop.recipe import MiniO3Config
from vlmrl.toolloop.rollout import ProbeSource, default_tools, make_reward


def test_mini_probe_records_are_deterministic_and_the_target_tile_holds_the_target():
    for difficulty, (grid, distractors) in DIFFICULTY.items():
        first, again = probe_record(3, 1, difficulty, tile=84), probe_record(3, 1, difficulty, tile=84)
        assert first["question"] == again["question"] and first["image"].tobytes() == again["image"].tobytes()
        assert first["image"].size == (grid * 84, grid * 84) and len(first["distractors"]) == distractors
        row, column = first["target_tile"]
        x0, y0, x1, y1 = first["target_box"]
        assert column * 84 <= x0 < x1 <= (column + 1) * 84 and row * 84 <= y0 < y1 <= (row + 1) * 84
        assert first["target_shape"] in first["question"]
        assert all(first["target_shape"] not in d["object"] for d in first["distractors"])
    kinds = {r["question_type"] for r in probe_records(4, 0, ("easy",), tile=84)}
    assert kinds == {"color", "material"}
    with pytest.raises(ValueError, match="unknown difficulty"):
        probe_record(0, 0, "extreme")


def test_coldstart_trajectories_cover_the_patterns_and_end_with_the_answer():
    tool = GroundingTool(784, 7056)
    conversations = coldstart_conversations(12, 0, ("easy", "medium"), tool, tile=84, weights=(1, 1, 1))
    lengths = {len(c) for c in conversations}
    assert lengths == {4, 6}  # direct: 2 turns; trial and error / refinement: 3 turns
    for conversation in conversations:
        texts = [m["content"][0]["text"] for m in conversation if m["role"] == "assistant"]
        assert all(t.startswith("<think>Find the") or t.startswith("<think>") for t in texts)
        assert "<answer>" in texts[-1]
        calls = [parse_grounding(t) for t in texts[:-1]]
        assert all(call for call in calls)
        goal = texts[0].split("</think>")[0]
        assert all(goal.removeprefix("<think>") in t for t in texts[:-1])  # goal maintenance
        observations = [m for m in conversation[1:] if m["role"] == "user"]
        assert all(m["content"][0]["type"] == "image" for m in observations)
    record = probe_record(0, 0, "medium", tile=84)
    row, column = record["target_tile"]
    assert tile_box(row, column, 3) == [column / 3, row / 3, (column + 1) / 3, (row + 1) / 3]


def test_a_random_token_policy_completes_with_format_penalties(tmp_path):
    from vlmrl.model.tiny import build_random_tiny
    from vlmrl.rl.trainer import RewardFunction, Trainer, TrainerConfig

    policy = build_random_tiny("tiny", seed=1)
    reward = make_reward(1.0, 0.5, 0.0)
    source = ProbeSource(
        lambda i: probe_record(i, 0, "easy", tile=84),
        2,
        SamplingParams(max_new_tokens=12),
        default_tools(784, 7056),
        LoopLimits(max_turns=2, max_images=3, context_budget=1024, context_margin=32, stop_at_calls=True),
        reward,
        max_rounds=2,
    )
    config = TrainerConfig(
        steps=1,
        episodes_per_step=4,
        micro_batch_size=4,
        learning_rate=1e-3,
        mask_truncated=True,
        save_samples_every=1,
    )
    trainer = Trainer(
        policy, source, config, tmp_path, rewards=[RewardFunction("reward", reward, per_episode=True)]
    )
    record = trainer.fit(resume=False)[0]
    assert record["reward_mean"] == 0.0  # random text: no answer, no format credit
    assert "rollout/dropped_groups" in record and record["rollout/topped_up_groups"] == 2.0
    assert (tmp_path / "metrics.jsonl").is_file()
    # the saved samples carry the report's replay, images by order of appearance
    line = (tmp_path / "samples" / "step-1.jsonl").read_text().splitlines()[0]
    replay = json.loads(line)["info"]["replay"]
    assert replay["kind"] == "tool_trajectory" and replay["correct"] is False and "steps" in replay


def test_bundled_reference_config_loads():
    config = load_yaml(MiniO3Config, CONFIGS / "qwen2.5-vl-7b.yaml")
    config.validate()
    assert config.learning_rate == 1e-6 and config.group_size == 16 and config.max_turns == 6
    assert config.eval_turns == 12 and config.max_pixels == 2_000_000 and config.min_pixels == 40_000
    assert config.context_budget == 32768 and config.epsilon_high == 0.3 and config.beta == 0.0
    assert config.mask_truncated and config.format_weight == 0.0 and config.aggregation == "token_mean"
    with pytest.raises(ValueError, match="unknown difficulty"):
        MiniO3Config(difficulties="easy,impossible").validate()


def test_cli_search_prints_turns_and_rejects_bad_input(tmp_path):
    image_path = tmp_path / "scene.png"
    probe_record(0, 0, "easy")["image"].save(image_path)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "search",
            "--model",
            "tiny",
            "--image",
            str(image_path),
            "--question",
            "What color is the cube?",
            "--eval-turns",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "turn 1:" in result.output and "answer:" in result.output
    missing = runner.invoke(app, ["search", "--image", str(tmp_path / "none.png"), "--question", "Q?"])
    assert missing.exit_code == 2 and "none.png" in missing.output
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    broken = runner.invoke(app, ["search", "--image", str(corrupt), "--question", "Q?"])
    assert broken.exit_code == 2 and "readable image" in broken.output
    unknown = runner.invoke(
        app, ["search", "--config", "no-such-config", "--image", str(image_path), "--question", "Q"]
    )
    assert unknown.exit_code == 2 and "qwen2.5-vl-7b" in unknown.output


def test_cli_coldstart_writes_episodes(tmp_path):
    from vlmrl.rl.episode import load_episodes

    result = CliRunner().invoke(
        app, ["coldstart", "--out", str(tmp_path), "--coldstart-examples", "3", "--tile", "84"]
    )
    assert result.exit_code == 0, result.output
    episodes = load_episodes(tmp_path / "coldstart" / "trajectories.jsonl")
    assert len(episodes) == 3 and all("<answer>" in e.turns[-1].text for e in episodes)
    line = json.loads((tmp_path / "coldstart" / "trajectories.jsonl").read_text().splitlines()[0])
    assert line["messages"][0]["content"][0]["type"] == "image"


def test_probe_evaluation_through_the_harness_gives_the_budget_curve(tmp_path, scripted):
    from toolloop_helpers import assistant_turns

    from vlmrl.toolloop.grounding import format_grounding
    from vlmrl.toolloop.recipe import evaluate_probe, plot_curves

    def reply(conversation):
        # zoom twice, then answer "red" (right for red targets' colour questions only)
        turns = assistant_turns(conversation)
        return format_grounding([0, 0, 0.5, 0.5]) if turns < 2 else "<think>x</think><answer>red</answer>"

    config = MiniO3Config(
        out=str(tmp_path), eval_size=4, eval_samples=2, eval_turns=4, curve_budgets="1,2,3,4", tile=84
    )
    summary = evaluate_probe(scripted(reply), config, "scripted")
    for label in ("greedy", "sampled"):
        curve = summary[label]["curve"]
        assert curve["1"] == curve["2"] == 0.0 and curve["3"] == curve["4"] == summary[label]["accuracy"]
        assert summary[label]["tool_calls"] == 2.0 and summary[label]["overturn"] == 0.0
        assert set(summary[label]["by_difficulty"]) == {"easy", "medium"}
    results = tmp_path / "eval" / "scripted" / "sampled" / "results.json"
    assert json.loads(results.read_text())["tasks"]["mini-probe-avg2"]["count"] == 8  # 4 records x 2 samples
    assert plot_curves({"model": summary}, tmp_path / "curve.png", 3).is_file()
