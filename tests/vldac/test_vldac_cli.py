"""`vlmrl vl-dac play|eval|train` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vlmrl.cli import app

runner = CliRunner()


def test_play_saves_frames_actions_and_values(tmp_path):
    out = tmp_path / "play"
    result = runner.invoke(
        app, ["vl-dac", "play", "--env", "numberline", "--model", "tiny", "--seed", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "episode.jsonl").read_text().splitlines()[0])
    replay = record["info"]["replay"]
    assert replay["kind"] == "env_episode" and replay["steps"]
    assert all(
        set(s) == {"frame", "action", "parsed_action", "valid", "value", "reward"} for s in replay["steps"]
    )
    images = [
        p["image"]
        for m in record["messages"]
        if isinstance(m["content"], list)
        for p in m["content"]
        if p["type"] == "image"
    ]
    assert all((out / image).is_file() for image in images) and len(images) == len(replay["steps"])


def test_eval_reports_success_with_an_interval(tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["vl-dac", "eval", "--world", "blackjack", "--episodes", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["vl-dac-blackjack"]["primary_metric"] == "success"


def test_bad_inputs_fail_at_the_edge(tmp_path):
    result = runner.invoke(app, ["vl-dac", "train", "--world", "chess", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown world 'chess'" in " ".join(result.output.split())
    result = runner.invoke(app, ["vl-dac", "play", "--env", "chess"])
    assert result.exit_code == 2 and "unknown world 'chess'" in " ".join(result.output.split())
    result = runner.invoke(app, ["vl-dac", "train", "--config", "no-such-config"])
    assert result.exit_code != 0 and "qwen2-vl-7b-numberline" in " ".join(result.output.split())
    result = runner.invoke(app, ["vl-dac", "play", "--value-head", str(tmp_path / "missing.safetensors")])
    assert result.exit_code != 0
