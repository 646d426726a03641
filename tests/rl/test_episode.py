import json

import numpy as np
import pytest
from PIL import Image

from vlmrl.rl.episode import (
    Episode,
    EpisodeFormatError,
    OfflineSource,
    RolloutSource,
    Turn,
    load_episodes,
    save_episodes,
)


def _episode(color: str, reward: float) -> Episode:
    image = Image.new("RGB", (8, 6), color)
    return Episode(
        messages=[
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": "What?"}],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "<answer>red</answer>"}],
                "token_ids": [5, 6],
            },
        ],
        turns=[Turn(token_ids=[5, 6], logprobs=[-0.5, -1.25], text="<answer>red</answer>")],
        reward=reward,
        reward_components={"accuracy": reward},
        step_rewards=[reward],
        group="g0",
        role="civilian",
        truncated=False,
        masked=reward < 0,
        info={"answer": "red", "scores": [1, 2]},
    )


def test_round_trip_with_images(tmp_path):
    episodes = [_episode("red", 1.0), _episode("red", 0.0), _episode("blue", -1.0)]
    path = save_episodes(episodes, tmp_path / "rollouts.jsonl")
    images = sorted((tmp_path / "rollouts_images").glob("*.png"))
    assert len(images) == 2  # identical images are stored once
    loaded = load_episodes(path, load_images=True)
    assert len(loaded) == 3
    for original, back in zip(episodes, loaded):
        assert back.turns == original.turns
        assert back.reward == original.reward and back.masked == original.masked
        assert back.group == "g0" and back.role == "civilian" and back.info == original.info
        assert back.messages[1]["token_ids"] == [5, 6]
        restored = back.messages[0]["content"][0]["image"]
        assert np.array_equal(np.asarray(restored), np.asarray(original.messages[0]["content"][0]["image"]))
    as_paths = load_episodes(path)
    assert isinstance(as_paths[0].messages[0]["content"][0]["image"], str)


def test_load_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [], "turns": []}) + "\n{not json\n")
    with pytest.raises(EpisodeFormatError, match="bad.jsonl:2"):
        load_episodes(path)
    path.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"}]}], "turns": []}
        )
    )
    with pytest.raises(EpisodeFormatError, match="missing image"):
        load_episodes(path)
    path.write_text(json.dumps({"turns": []}))
    with pytest.raises(EpisodeFormatError, match="missing key 'messages'"):
        load_episodes(path)
    with pytest.raises(FileNotFoundError):
        load_episodes(tmp_path / "absent.jsonl")
    with pytest.raises(ValueError, match="2 token ids but 1 logprobs"):
        Turn(token_ids=[1, 2], logprobs=[0.0], text="")


def test_offline_source_cycles_and_resumes():
    episodes = [_episode("red", float(i)) for i in range(5)]
    source = OfflineSource(episodes)
    assert isinstance(source, RolloutSource)
    rng = np.random.default_rng(0)
    first = source.collect(None, 3, rng)
    state = source.state_dict()
    second = source.collect(None, 3, rng)
    assert [e.reward for e in first] == [0, 1, 2]
    assert [e.reward for e in second] == [3, 4, 0]
    again = OfflineSource(episodes)
    again.load_state_dict(state)
    assert [e.reward for e in again.collect(None, 3, rng)] == [3, 4, 0]
    second[0].reward = 99.0
    assert episodes[3].reward == 3.0  # collected episodes are copies


def test_saved_advantages_are_stored_beside_each_record_and_ignored_on_load(tmp_path):
    episodes = [_episode("red", 1.0), _episode("blue", 0.0)]
    path = save_episodes(episodes, tmp_path / "step-1.jsonl", advantages=[0.5, [0.25, -0.25]])
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["advantage"] for r in records] == [0.5, [0.25, -0.25]]
    assert [e.reward for e in load_episodes(path)] == [1.0, 0.0]
    with pytest.raises(ValueError, match="1 advantages for 2 episodes"):
        save_episodes(episodes, tmp_path / "bad.jsonl", advantages=[0.5])
