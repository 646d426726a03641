"""Helpers for the RL core's tests: a tiny random VLM and small text-only prompts."""

from __future__ import annotations


def tiny_policy(seed: int = 0):
    from vlmrl.model.tiny import build_random_tiny

    return build_random_tiny("tiny", seed=seed)


def text_prompts(count: int):
    from vlmrl.rl.prompts import Prompt

    return [
        Prompt(id=f"p{i}", messages=[{"role": "user", "content": f"Count to {i}."}], answer=str(i))
        for i in range(count)
    ]


def even_token_reward(episode) -> float:
    """A reward that varies between samples of a random model: the share of even token ids."""
    ids = episode.turns[-1].token_ids
    return sum(1 for t in ids if t % 2 == 0) / max(1, len(ids))
