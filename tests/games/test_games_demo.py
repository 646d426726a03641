"""`vlmrl demo --method vision-zero`: held-out games apart from training, and a short real run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from demo_checks import check_demo_run

from vlmrl.demo import DemoConfig, run_demo
from vlmrl.games import demo, recipe
from vlmrl.model.tiny import is_pretrained


def test_held_out_games_use_pairs_training_never_sees(tmp_path: Path, monkeypatch):
    config = DemoConfig(method="vision-zero", eval_size=20, seed=3)
    [task] = demo.make_data(config, tmp_path / "data")
    assert task.name == "spy-game" and task.interactive
    assert len(task.load_docs().items) == 10  # a game costs nine generate calls: half as many
    captured = {}
    monkeypatch.setattr(
        recipe,
        "run_vision_zero",
        lambda settings, callbacks: captured.update(settings=settings, callbacks=callbacks),
    )
    callbacks = [lambda trainer, metrics: None]
    assert demo.train(config, tmp_path / "run", callbacks) == tmp_path / "run" / "model"
    settings = captured["settings"]
    assert captured["callbacks"] is callbacks
    assert (settings.model, settings.seed, settings.steps, settings.out) == (
        "tiny",
        3,
        demo.DEMO_STEPS,
        str(tmp_path / "run"),
    )
    # The demo evaluates through the harness; the recipe must not spend the time again.
    assert settings.eval_games == 0 and settings.eval_questions == 0
    training, none = recipe.pair_pools(settings)
    assert none is None
    # Held-out games are played on the recipe's held-out pool (data_seed + 1): other pairs.
    _, held_out = recipe.pair_pools(dataclasses.replace(settings, eval_games=10))
    assert task.settings["seed"] == held_out.seed == 4 and training.seed == 3
    seen_in_training = {training[i].original.tobytes() for i in range(32)}
    assert not {held_out[i].original.tobytes() for i in range(10)} & seen_in_training


@pytest.mark.slow
@pytest.mark.skipif(
    not is_pretrained("tiny"), reason="needs the pretrained tiny default in vlmrl/assets/tiny"
)
def test_a_short_demo_evaluates_trains_and_replays_spy_games(tmp_path: Path):
    out = tmp_path / "demo"
    # One thread: on the shared 2-core CPU two threads ran this test 10x slower (377 s against 39 s).
    run_demo(DemoConfig(method="vision-zero", out=str(out), steps=2, eval_size=10, threads=1))
    # 10 questions' worth of held-out games: 5.
    run = check_demo_run(out, task="spy-game", metric="accuracy", items=5, steps=2)
    assert {e["info"]["replay"]["kind"] for e in run.samples} == {"spy_game"}
    assert (out / "model" / "model.safetensors").is_file()
    assert 'class="replay spy-game"' in run.page
