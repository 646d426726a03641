"""Over-turn episodes leave the loss (zero gradient) but stay in their group's statistics."""

import torch

from vlmrl.model import SamplingParams
from vlmrl.rl.episode import Episode, OfflineSource, Turn
from vlmrl.rl.trainer import RewardFunction, Trainer, TrainerConfig


def _episodes(policy, first_reward: float, first_tokens_seed: int):
    prompt = [{"role": "user", "content": "Find it."}]
    generations = policy.generate([prompt], SamplingParams(max_new_tokens=5, n=4, seed=3))
    other = policy.generate([prompt], SamplingParams(max_new_tokens=5, n=1, seed=first_tokens_seed))[0]
    episodes = []
    for index, generation in enumerate(generations):
        if index == 0:
            generation = other  # the over-turn episode: its tokens vary between runs
        episodes.append(
            Episode(
                messages=[*prompt, generation.as_message()],
                turns=[Turn(generation.token_ids, generation.logprobs, generation.text)],
                group="g",
                truncated=index == 0,
                info={"reward": first_reward if index == 0 else 0.0},
            )
        )
    return episodes


def _train(tmp_path, name, first_reward, first_tokens_seed):
    from vlmrl.model.tiny import build_random_tiny

    policy = build_random_tiny("tiny", seed=0)
    config = TrainerConfig(
        steps=1,
        episodes_per_step=4,
        micro_batch_size=4,
        learning_rate=1e-2,
        mask_truncated=True,
        epsilon_high=0.3,
    )
    reward = RewardFunction("accuracy", lambda e: e.info["reward"], per_episode=True)
    trainer = Trainer(
        policy,
        OfflineSource(_episodes(policy, first_reward, first_tokens_seed)),
        config,
        tmp_path / name,
        rewards=[reward],
    )
    initial = _parameters(policy)
    record = trainer.fit(resume=False)[0]
    return initial, _parameters(policy), record


def _parameters(policy) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in policy.model.parameters()])


def test_overturn_episodes_give_no_gradient_but_count_in_group_statistics(tmp_path):
    torch.manual_seed(0)
    initial, base, record = _train(tmp_path, "a", first_reward=1.0, first_tokens_seed=11)
    _, other_tokens, _ = _train(tmp_path, "b", first_reward=1.0, first_tokens_seed=12)
    _, all_zero, _ = _train(tmp_path, "c", first_reward=0.0, first_tokens_seed=11)
    # Changing the over-turn episode's tokens changes nothing: they carry no gradient.
    assert torch.equal(base, other_tokens)
    # Its reward still moved the others' advantages (GRPO statistics include it): with it at
    # 0 every reward is equal, all advantages vanish and the weights do not move.
    assert torch.equal(all_zero, initial)
    assert not torch.equal(base, initial)
    # ... and it is logged: a quarter of the step's episodes were over-turn and masked.
    assert record["truncated_fraction"] == 0.25 and record["masked_fraction"] == 0.25
    assert record["reward_mean"] == 0.25
