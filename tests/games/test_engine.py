"""The game engine and source: games by a random-token policy complete with format penalties,
episodes carry group / role / stage and the replay, the source's state resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlmrl.games.engine import (
    NO_CLUE,
    GameSettings,
    PairPool,
    format_transcript,
    game_record,
    move_episode,
    play_games,
    score_game,
)
from vlmrl.games.schedule import PhaseSchedule
from vlmrl.games.source import GameSource, given_advantages
from vlmrl.model.formats import FormatFailure
from vlmrl.rl.episode import load_episodes, save_episodes


@pytest.fixture(scope="module")
def random_policy():
    from vlmrl.model.tiny import build_random_tiny

    torch.set_num_threads(1)
    return build_random_tiny("tiny", seed=0)


def _settings(**changes):
    values = dict(
        players=3, rounds=2, decision_samples=4, clue_tokens=8, decision_tokens=8, style="reference"
    )
    values.update(changes)
    return GameSettings(**values)


def _pool(size=4):
    return PairPool("shapes", seed=3, size=size, resolution=56, min_objects=1, max_objects=2)


def test_random_tokens_play_whole_games_with_format_penalties(random_policy):
    torch.manual_seed(0)
    settings = _settings()
    pool = _pool()
    games = play_games(random_policy, [pool[0], pool[1]], [1, 3], settings, ["a", "b"])
    baselines = {}
    for game in games:
        baselines = score_game(game, baselines)
        assert len(game.clues) == settings.players * settings.rounds
        assert len(game.decisions) == settings.decision_samples
        # Random tokens give no boxed clue: the others read the reference's placeholder.
        assert all(isinstance(m.parsed, FormatFailure) for m in game.clues)
        assert all(text == NO_CLUE for _, _, text in game.transcript())
        # No parseable decision: every sample gets the format and wrong-vote penalty.
        assert all(m.reward == pytest.approx(-1.5) for m in game.decisions)
        assert game.player_rewards == pytest.approx([0.0] * 3)  # no votes counted
        assert "Decisions:" in format_transcript(game)
    assert set(baselines) == {"spy", "civilian"}


def test_players_decision_and_episodes(random_policy):
    settings = _settings(decision="players", style="short")
    pool = _pool()
    (game,) = play_games(random_policy, [pool[2]], [2], settings, ["g"])
    score_game(game, {})
    assert [m.player for m in game.decisions] == [1, 2, 3]
    clue = move_episode(game, game.clues[0], "clue")
    assert clue.group == "g" and clue.role == "civilian" and clue.info["stage"] == "clue"
    replay = clue.info["replay"]
    assert replay["kind"] == "spy_game" and replay["spy"] == 2 and replay["stage"] == "clue"
    assert [p["image"] for p in replay["players"]] == [0, None, 0]  # player 1 sees the original
    assert len(replay["clues"]) == 6 and len(replay["decisions"]) == 3
    json.dumps(replay)  # JSON-able
    vote = move_episode(game, game.decisions[1], "decision")
    assert vote.role == "spy" and vote.info["correct"] in (True, False)


def test_game_records_save_both_images(random_policy, tmp_path):
    (game,) = play_games(random_policy, [_pool()[0]], [1], _settings(), ["g"])
    score_game(game, {})
    path = save_episodes([game_record(game)], tmp_path / "games.jsonl", "images")
    (loaded,) = load_episodes(path)
    images = [p for p in loaded.messages[0]["content"] if p["type"] == "image"]
    assert len(images) == 2
    assert [p["image"] for p in loaded.info["replay"]["players"]] == [1, 0, 0]


def test_source_returns_the_trained_stage_and_resumes_exactly(random_policy, tmp_path):
    def source():
        return GameSource(
            _pool(8),
            _settings(),
            PhaseSchedule("fixed", 1),
            seed=0,
            samples_directory=tmp_path,
            save_games_every=1,
        )

    first = source()
    rng = np.random.default_rng(0)
    decisions = first.collect(random_policy, 8, rng)  # decision phase: 2 games x G=4
    assert [e.info["stage"] for e in decisions] == ["decision"] * 8
    assert {e.group for e in decisions} == {"game-0", "game-1"}
    assert given_advantages(decisions).shape == (8,)
    assert first.rollout_metrics()["phase_decision"] == 1.0
    state = json.loads(json.dumps(first.state_dict()))
    torch.manual_seed(5)
    clues = first.collect(random_policy, 12, np.random.default_rng(1))  # clue phase: 2 games x 6 turns
    assert [e.info["stage"] for e in clues] == ["clue"] * 12
    assert {e.role for e in clues} <= {"spy", "civilian"}
    assert (tmp_path / "games" / "step-1.jsonl").is_file()

    resumed = source()
    resumed.load_state_dict(state)
    torch.manual_seed(5)
    again = resumed.collect(random_policy, 12, np.random.default_rng(1))
    assert [e.turns[0].token_ids for e in again] == [e.turns[0].token_ids for e in clues]
    assert resumed.state_dict() == first.state_dict()
    with pytest.raises(ValueError, match="not a multiple"):
        resumed.collect(random_policy, 7, rng)


def test_pair_pool_errors_name_the_input(tmp_path):
    with pytest.raises(ValueError, match="--pairs .*absent"):
        PairPool(str(tmp_path / "absent"), 0, 4)
    with pytest.raises(ValueError, match="--edits"):
        PairPool("shapes", 0, 4, edits=("explode",))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="empty"):
        PairPool(str(empty), 0, 4)


def test_pairs_from_a_folder_of_photographs(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(2):
        pixels = rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"photo{index}.jpg")
    pool = PairPool(str(tmp_path), 0, 4, max_side=64)
    pair = pool[1]
    assert pair.original.size == pair.edited.size
    assert np.asarray(pair.original).shape == np.asarray(pair.edited).shape
