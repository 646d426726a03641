"""Rollouts with tiny, a random-token policy, and the recipe end to end (fast, small)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vlmrl.model import VLM, Generation, SamplingParams
from vlmrl.rl.episode import load_episodes
from vlmrl.vldac.critic import ValueHead
from vlmrl.vldac.recipe import VLDACConfig, parse_world_options, run_vldac, thought_token_count
from vlmrl.vldac.rollouts import WorldSource, play_episodes, replay_episode, step_values


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VLM.load("tiny")


@dataclass
class RandomTokenPolicy:
    """Emits uniformly random (non-vision) token ids; scores with the real model."""

    vlm: VLM
    seed: int = 0

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        excluded = set(self.vlm._vision_placeholder_ids())
        self.vocabulary = [i for i in range(len(self.vlm.tokenizer)) if i not in excluded]

    def generate(self, conversations, sampling):
        out = []
        for index, _ in enumerate(conversations):
            ids = [int(i) for i in self.rng.choice(self.vocabulary, size=sampling.max_new_tokens)]
            text = self.vlm.tokenizer.decode(ids, skip_special_tokens=True)
            out.append(Generation(text, ids, [0.0] * len(ids), index, 0, "length"))
        return out

    def __getattr__(self, name):
        return getattr(self.vlm, name)


def test_source_steps_worlds_and_records_what_gae_needs(tiny):
    source = WorldSource("numberline", 4, SamplingParams(max_new_tokens=12), seed=0)
    episodes = source.collect(tiny, 8, np.random.default_rng(0))
    assert len(episodes) == 8 and len(source.bootstrap) == 4
    assert [e.info["time"] for e in episodes] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [e.info["world"] for e in episodes] == [0, 1, 2, 3] * 2
    for episode in episodes:
        assert len(episode.turns) == 1 and episode.step_rewards == [episode.reward]
        assert episode.info["action"] in ("+", "-")
    with pytest.raises(ValueError, match="do not divide"):
        source.collect(tiny, 6, np.random.default_rng(0))


def test_step_values_read_the_last_prompt_token(tiny):
    source = WorldSource("numberline", 2, SamplingParams(max_new_tokens=8), seed=0)
    episodes = source.collect(tiny, 2, np.random.default_rng(0))
    head = ValueHead(256, (8,))
    with_reply = step_values(tiny, head, [e.messages for e in episodes])
    prompt_only = step_values(tiny, head, [e.messages[:1] for e in episodes])
    # The value depends on the observation only, never on the reply generated from it.
    assert torch.allclose(with_reply, prompt_only, atol=1e-5)


def test_random_token_policy_rollout_completes_with_fallback_actions(tiny):
    policy = RandomTokenPolicy(tiny)
    source = WorldSource("ezpoints", 2, SamplingParams(max_new_tokens=16), seed=0)
    episodes = source.collect(policy, 20, np.random.default_rng(0))
    assert len(episodes) == 20
    assert not any(e.info["valid"] for e in episodes)  # every reply is a format failure...
    assert all(e.info["format_error"] for e in episodes)  # ...counted, with its reason
    assert len({e.info["action"] for e in episodes}) > 1  # ...and a random valid action is taken


def test_play_saves_an_env_episode_replay(tiny, tmp_path):
    head = ValueHead(256, (8,))
    (episode,) = play_episodes(
        tiny, "numberline", [3], SamplingParams(max_new_tokens=12, temperature=0), head
    )
    replay = episode.info["replay"]
    assert replay["kind"] == "env_episode" and replay["env"] == "numberline"
    images = [
        p
        for m in episode.messages
        if isinstance(m["content"], list)
        for p in m["content"]
        if p["type"] == "image"
    ]
    assert [s["frame"] for s in replay["steps"]] == list(range(len(images)))
    assert all(isinstance(s["value"], float) and s["parsed_action"] in ("+", "-") for s in replay["steps"])
    assert episode.info["correct"] == replay["success"]
    json.dumps(replay)
    from vlmrl.rl.episode import save_episodes

    path = save_episodes([episode], tmp_path / "episode.jsonl")
    (loaded,) = load_episodes(path)
    assert loaded.info["replay"] == replay
    assert replay_episode([], "numberline").info["replay"]["steps"] == []


def test_thought_token_count_splits_before_the_action_key(tiny):
    ids = tiny.tokenizer('{"thoughts": "abc", "action": "+"}', add_special_tokens=False)["input_ids"]
    count = thought_token_count(tiny.tokenizer, ids)
    assert 0 < count < len(ids)
    cut = tiny.tokenizer.decode(ids).find('"action"')
    # The first action token is the one whose text reaches the key's opening quote.
    assert len(tiny.tokenizer.decode(ids[:count])) <= cut < len(tiny.tokenizer.decode(ids[: count + 1]))
    assert thought_token_count(tiny.tokenizer, ids[:3]) == 3


def test_world_options_and_bad_config_fail_at_the_edge():
    assert parse_world_options("max_position=3, image_size=84,name=x") == {
        "max_position": 3,
        "image_size": 84,
        "name": "x",
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_world_options("max_position")
    with pytest.raises(ValueError, match="unknown world"):
        VLDACConfig(world="chess").validate()
    with pytest.raises(ValueError, match="multiple of --worlds"):
        VLDACConfig(worlds=3, episodes_per_step=8).validate()
    with pytest.raises(ValueError, match="algorithm"):
        VLDACConfig(algorithm="dqn").validate()


SMALL = dict(
    steps=2,
    episodes_per_step=8,
    worlds=4,
    eval_episodes=4,
    ppo_epochs=1,
    minibatches=2,
    micro_batch_size=4,
    value_widths="16",
    max_new_tokens=12,
    format_warmup_steps=1,
    format_warmup_batch=2,
    save_samples_every=1,
    checkpoint_every=1,
    value_warmup=1,
)


def test_recipe_end_to_end_writes_the_run_and_resumes(tmp_path):
    out = tmp_path / "run"
    results = run_vldac(VLDACConfig(out=str(out), **SMALL))
    assert 0.0 <= results["before"]["success"] <= 1 and 0.0 <= results["after"]["success"] <= 1
    assert results["updates"] == 2
    for name in ["config.yaml", "metrics.jsonl", "results.json", "model/value_head.safetensors"]:
        assert (out / name).is_file(), name
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"value_loss", "reward/valid_mean", "reward/success_mean"} <= set(metrics[-1])
    assert (out / "checkpoints" / "step-2" / "extra-0.safetensors").is_file()  # the value head
    steps = load_episodes(out / "samples" / "step-1.jsonl")
    assert len(steps) == 8 and all("value" in e.info and "return" in e.info for e in steps)
    assert (out / "eval" / "before" / "results.json").is_file()
    # A longer run in the same directory resumes from step 2.
    resumed = run_vldac(VLDACConfig(out=str(out), **{**SMALL, "steps": 3}))
    assert resumed["updates"] == 3 and resumed["before"]["success"] == results["before"]["success"]


@pytest.mark.parametrize("algorithm", ["rl4vlm", "grpo"])
def test_baselines_run_in_the_same_code(tmp_path, algorithm):
    out = tmp_path / algorithm
    results = run_vldac(
        VLDACConfig(
            out=str(out),
            algorithm=algorithm,
            **{**SMALL, "steps": 1, "value_warmup": 0, "checkpoint_every": 0},
        )
    )
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert results["algorithm"] == algorithm
    assert ("sequence_policy_loss" in metrics) == (algorithm == "rl4vlm")
    assert ("value_loss" in metrics) == (algorithm != "grpo")
