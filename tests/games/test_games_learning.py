"""Learning proof: self-play raises held-out spy identification without hurting shapes QA."""

from __future__ import annotations

import pytest

from vlmrl.games.recipe import VisionZeroConfig, run_vision_zero
from vlmrl.model.tiny import is_pretrained


@pytest.mark.slow
@pytest.mark.skipif(
    not is_pretrained("tiny"), reason="needs the pretrained tiny default in vlmrl/assets/tiny"
)
def test_self_play_raises_held_out_spy_identification(tmp_path):
    # Pairs tiny can tell apart: one or two objects, one of them recoloured (the model card:
    # tiny reads colour on such scenes). Held-out games use pairs of another seed, never
    # trained on; shapes QA is measured on the same scene sizes before and after.
    config = VisionZeroConfig(
        out=str(tmp_path / "run"),
        min_objects=1,
        max_objects=2,
        edits="recolor",
        steps=STEPS,
        episodes_per_step=64,
        micro_batch_size=64,
        learning_rate=LEARNING_RATE,
        eval_games=EVAL_GAMES,
        eval_questions=200,
        clue_tokens=16,
        decision_tokens=8,
        max_length=16,
        threads=2,
        seed=0,
        checkpoint_every=0,
        save_samples_every=0,
        save_games_every=0,
    )
    results = run_vision_zero(config)
    before, after = results["before"], results["after"]
    print(
        f"held-out spy identification {before['spy-game']['accuracy']:.3f} -> {after['spy-game']['accuracy']:.3f}; "
        f"shapes QA (1-2 objects) {before['shapes-qa']['accuracy']:.3f} -> {after['shapes-qa']['accuracy']:.3f}"
    )
    # MEASURED_PENDING
    assert after["spy-game"]["format"] >= 0.95
    assert after["spy-game"]["accuracy"] >= before["spy-game"]["accuracy"] + 0.10, (before, after)
    assert after["shapes-qa"]["accuracy"] >= before["shapes-qa"]["accuracy"] - 0.03, (before, after)


STEPS = 40
LEARNING_RATE = 1e-4
EVAL_GAMES = 100
