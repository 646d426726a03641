"""Rules of the gym-cards worlds, on hand-checked cases."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vlmrl.envs import cards
from vlmrl.envs.cards import (
    Blackjack,
    EZPoints,
    FormulaError,
    NumberLine,
    Points24,
    evaluate_formula,
    hand_total,
)


def test_formula_evaluator_is_exact_and_total():
    assert evaluate_formula("3*4") == 12
    assert evaluate_formula("8/(3-8/3)") == 24  # exact fractions: 24, not 23.999...
    assert evaluate_formula("1 2+3") == 15  # adjacent digits form one number, as gym_cards joins pieces
    assert evaluate_formula("-(2+3)*2") == -10
    assert evaluate_formula("10/4") == Fraction(5, 2)
    for bad in ["", "3+", "(3", "3)", "3/0", "2**3", "__import__('os')", "3 ( 4", "=", " "]:
        with pytest.raises(FormulaError):
            evaluate_formula(bad)


def test_numberline_rewards_and_success():
    world = NumberLine(max_position=5)
    world.reset(seed=0)
    world.position, world.target = 1, 3
    _, reward, terminated, truncated, info = world.step(1)  # 1 -> 2: closer
    assert (reward, terminated, truncated, info["success"]) == (0.0, False, False, False)
    _, reward, *_ = world.step(0)  # 2 -> 1: farther
    assert reward == -1.0
    world.step(1)
    _, reward, terminated, _, info = world.step(1)  # reaches 3, but a step was wasted: return -1 + 1 = 0
    assert (reward, terminated, info["success"]) == (1.0, True, False)


def test_numberline_clamps_at_the_ends_and_truncates():
    world = NumberLine(max_position=2)
    world.reset(seed=1)
    world.position, world.target = 0, 2
    _, reward, *_ = world.step(0)  # cannot go below 0: no progress
    assert world.position == 0 and reward == -1.0
    world.step(0)
    world.step(0)
    _, _, terminated, truncated, _ = world.step(0)  # 4 = 2 * max_position steps
    assert not terminated and truncated


def test_numberline_perfect_play_succeeds_and_start_differs_from_target():
    world = NumberLine(max_position=5)
    for seed in range(50):
        world.reset(seed=seed)
        assert world.position != world.target
        info = {}
        while world.position != world.target:
            _, _, terminated, _, info = world.step(1 if world.target > world.position else 0)
        assert terminated and info["success"]


def test_ezpoints_deals_make_twelve_and_scores_formulas():
    world = EZPoints()
    for seed in range(30):
        world.reset(seed=seed)
        a, b = world.values
        assert a + b == 12 or a * b == 12
    world.reset(seed=0)
    world.values = [3, 4]
    names = world.action_names
    _, reward, *_ = world.step(names.index("5"))  # not a card: -1 and a blank piece
    assert reward == -1.0 and world.formula == [" "]
    world.formula = []
    for piece in ["3", "*", "4"]:
        _, reward, terminated, *_ = world.step(names.index(piece))
        assert reward == 0.0 and not terminated
    _, reward, terminated, _, info = world.step(names.index("="))
    assert (reward, terminated, info["success"]) == (10.0, True, True)


def test_ezpoints_rejects_a_formula_that_skips_a_card_and_truncates_long_ones():
    world = EZPoints()
    world.reset(seed=0)
    world.values = [6, 6]
    names = world.action_names
    world.step(names.index("6"))
    _, reward, terminated, _, info = world.step(names.index("="))  # 6 != 12 and one card unused
    assert (reward, terminated, info["success"]) == (-1.0, True, False)
    world.reset(seed=0)
    world.formula = ["+"] * 6
    _, reward, terminated, truncated, _ = world.step(names.index("+"))
    assert (reward, terminated, truncated) == (-1.0, False, True)


def test_points24_solution_scores_ten():
    world = Points24()
    world.reset(seed=0)
    world.values = [8, 3, 8, 3]
    names = world.action_names
    for piece in ["8", "/", "(", "3", "-", "8", "/", "3", ")"]:
        world.step(names.index(piece))
    _, reward, terminated, _, info = world.step(names.index("="))
    assert (reward, terminated, info["success"]) == (10.0, True, True)


def test_blackjack_hand_totals_and_outcomes():
    assert hand_total([1, 10]) == 21
    assert hand_total([1, 1, 10]) == 12
    assert hand_total([10, 9, 5]) == 24
    world = Blackjack()
    world.reset(seed=0)
    world.player = [(10, "K", "S"), (9, "9", "H")]
    world.dealer = [(10, "Q", "C"), (7, "7", "D")]  # dealer stands on 17
    _, reward, terminated, _, info = world.step(0)
    assert (reward, terminated, info["success"]) == (1.0, True, True)
    world.reset(seed=0)
    world.player = [(10, "K", "S"), (10, "Q", "H")]
    world.np_random = np.random.default_rng(0)
    world.step(1)  # 20 plus any card but an ace busts... or makes 21
    total = hand_total([c[0] for c in world.player])
    assert total == 21 or total > 21


@pytest.mark.parametrize("world_class", [NumberLine, EZPoints, Points24, Blackjack])
def test_reset_by_seed_replays_the_deal_and_the_image(world_class):
    first, second = world_class(), world_class()
    image_a, _ = first.reset(seed=123)
    image_b, _ = second.reset(seed=123)
    assert image_a.shape == (cards.DEFAULT_SIZE, cards.DEFAULT_SIZE, 3) and image_a.dtype == np.uint8
    assert np.array_equal(image_a, image_b)
    images = {first.reset(seed=s)[0].tobytes() for s in range(20)}
    assert len(images) > 1


def test_bad_actions_fail_with_a_clear_error():
    with pytest.raises(ValueError, match="NumberLine action"):
        NumberLine().step(2)
    with pytest.raises(ValueError, match="max_position"):
        NumberLine(max_position=0)
