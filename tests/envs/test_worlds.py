"""The registry, the action parser, seeded batches and the navigation packages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.envs import WORLDS, WorldBatch, choose_action, format_action, make_world, parse_action, step_prompt
from vlmrl.envs.navigation import NavigationUnavailable
from vlmrl.model.formats import FormatFailure


def test_parser_reads_the_reference_format():
    names = ["-", "+"]
    assert parse_action('{"thoughts": "3 > 1", "action": "+"}', names) == 1
    assert parse_action('Sure! {"thoughts": "x", "action": " - "} done', names) == 0
    assert parse_action(format_action("stand", "t"), ["stand", "hit"]) == 0
    assert parse_action('{"action": "HIT"}', ["stand", "hit"]) == 1
    navigation = ["turn left", "turn right", "move forward"]
    assert parse_action('{"thoughts": "", "action": 2}', navigation) == 2
    assert parse_action('{"action": "1: turn right"}', navigation) == 1
    assert parse_action('{"action": "move forward"}', navigation) == 2
    # Number names (EZPoints) are matched as names, never as indices.
    digits = ["1", "2", "3", "+"]
    assert parse_action('{"action": "2"}', digits) == 1
    assert parse_action('{"action": 3}', digits) == 2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "{",
        '{"action": "*"}',
        '{"thoughts": "x"}',
        "[1, 2]",
        '{"action": null}',
        '{"action": true}',
        '{"action": 7}',
        '{"action": 1.5}',
        '{"action": {"a": 1}}',
        "\x00\xff",
        None,
        3,
    ],
)
def test_parser_is_total(text):
    assert isinstance(parse_action(text, ["-", "+"]), FormatFailure)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parser_never_raises(text):
    result = parse_action(text, ["turn left", "turn right", "move forward"])
    assert isinstance(result, (int, FormatFailure))


def test_invalid_reply_falls_back_to_a_random_valid_action():
    rng = np.random.default_rng(0)
    picks = [choose_action("gibberish", ["-", "+"], rng) for _ in range(200)]
    assert not any(p.valid for p in picks) and {p.index for p in picks} == {0, 1}
    assert picks[0].reason
    assert choose_action('{"action": "+"}', ["-", "+"], rng).valid


def test_registry_settings_follow_the_reference():
    assert WORLDS["numberline"].gamma == 0.99 and WORLDS["numberline"].frames == 1
    assert WORLDS["miniworld-oneroom"].gamma == 0.9 and WORLDS["miniworld-oneroom"].frames == 4
    assert WORLDS["miniworld-oneroom"].max_steps == 128 and WORLDS["blackjack"].max_steps == 20
    with pytest.raises(ValueError, match="unknown world 'chess'"):
        make_world("chess")


def test_prompt_holds_the_frames_and_the_actions():
    world = make_world("ezpoints")
    observation, _ = world.reset(seed=0)
    (message,) = step_prompt(WORLDS["ezpoints"], world, [observation])
    images = [p for p in message["content"] if p["type"] == "image"]
    text = message["content"][-1]["text"]
    assert len(images) == 1 and '"action"' in text and "Formula so far: (empty)" in text


def test_vectorised_reset_is_deterministic_by_seed():
    first, second, other = (
        WorldBatch("numberline", 4, 7),
        WorldBatch("numberline", 4, 7),
        WorldBatch("numberline", 4, 8),
    )

    def state(batch):
        return [(w.position, w.target) for w in batch.worlds]

    assert state(first) == state(second)
    assert state(first) != state(other) or [f[0].tobytes() for f in first.frames] != [
        f[0].tobytes() for f in other.frames
    ]
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = [int(a) for a in rng.integers(0, 2, size=4)]
        assert first.step(actions) == second.step(actions)
    assert first.episodes == second.episodes and sum(first.episodes) > 0


def test_batch_state_restores_mid_episode():
    batch = WorldBatch("blackjack", 3, 0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        batch.step([int(a) for a in rng.integers(0, 2, size=3)])
    state = batch.state_dict()
    restored = WorldBatch("blackjack", 3, 0)
    restored.load_state_dict(state)
    assert [w.player for w in restored.worlds] == [w.player for w in batch.worlds]
    actions = [1, 0, 1]
    assert restored.step(actions) == batch.step(actions)


def test_minigrid_navigation_renders_and_reaches_the_goal():
    world = make_world("minigrid-empty")
    observation, info = world.reset(seed=0)
    assert observation.shape == (168, 168, 3) and world.mission and not info["success"]
    # In the 5x5 empty room the agent starts top-left facing right; the goal is bottom-right.
    for action in [2, 2, 1, 2, 2]:
        observation, reward, terminated, truncated, info = world.step(action)
    assert terminated and reward > 0 and info["success"]


def test_miniworld_renders_headless_or_says_why():
    try:
        world = make_world("miniworld-oneroom")
    except NavigationUnavailable as error:
        assert "EGL" in str(error) or "miniworld" in str(error)
        pytest.skip(str(error))
    observation, _ = world.reset(seed=0)
    assert observation.shape == (168, 168, 3) and observation.std() > 0
    again, _ = world.reset(seed=0)
    assert np.array_equal(observation, again)
    assert world.action_names[:3] == ["turn left", "turn right", "move forward"]


def test_a_miniworld_world_does_not_crash_later_triton_imports():
    """Mesa's LLVM loaded first made the next triton import segfault (lmms-eval, torchvision.ops)."""
    import subprocess
    import sys

    code = (
        "from vlmrl.envs import make_world\n"
        "from vlmrl.envs.navigation import NavigationUnavailable\n"
        "try:\n"
        "    make_world('miniworld-oneroom').reset(seed=0)\n"
        "except NavigationUnavailable:\n"
        "    print('unavailable')\n"
        "import torchvision.ops\n"
        "print('imported')\n"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "imported" in finished.stdout
