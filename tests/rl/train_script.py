"""A small RL run used by the resume and distributed tests (run as a subprocess).

usage: python train_script.py RUN_DIRECTORY MODE [KILL_AFTER_STEP]
MODE "prompts": GRPO on text prompts with sampling; "offline": fixed episodes, one step, grads saved.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rl_helpers import even_token_reward, text_prompts, tiny_policy  # noqa: E402

from vlmrl.model import SamplingParams  # noqa: E402
from vlmrl.rl.episode import Episode, OfflineSource, Turn  # noqa: E402
from vlmrl.rl.prompts import PromptSource  # noqa: E402
from vlmrl.rl.trainer import RewardFunction, Trainer, TrainerConfig  # noqa: E402


def prompts_run(directory: Path, kill_after: int | None) -> None:
    policy = tiny_policy()
    source = PromptSource(text_prompts(6), group_size=4, sampling=SamplingParams(max_new_tokens=8), seed=3)
    config = TrainerConfig(
        steps=4,
        episodes_per_step=8,
        ppo_epochs=2,
        minibatches=2,
        micro_batch_size=3,
        learning_rate=3e-3,
        warmup_steps=1,
        beta=0.05,
        entropy_coef=0.01,
        checkpoint_every=1,
        keep_checkpoints=2,
        deterministic=True,
        seed=11,
    )

    def kill(trainer: Trainer, metrics: dict) -> None:
        if kill_after is not None and trainer.step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(
        policy,
        source,
        config,
        directory,
        rewards=[RewardFunction("even", even_token_reward, per_episode=True)],
        callbacks=[kill],
    )
    trainer.fit()


def offline_episodes() -> list[Episode]:
    """Eight fixed episodes (two groups of four) sampled with a fixed seed by every process."""
    policy = tiny_policy()
    prompts = text_prompts(2)
    generations = policy.generate(
        [p.messages for p in prompts], SamplingParams(max_new_tokens=6, n=4, seed=5)
    )
    episodes = []
    for index, generation in enumerate(generations):
        prompt = prompts[generation.prompt_index]
        episodes.append(
            Episode(
                messages=[*prompt.messages, generation.as_message()],
                turns=[Turn(generation.token_ids, [], generation.text)],
                reward=float(index % 3),
                group=prompt.id,
            )
        )
    return episodes


def offline_run(directory: Path, micro_batch_size: int) -> None:
    from safetensors.torch import save_file

    from vlmrl.rl.distributed import rank_and_world

    policy = tiny_policy()
    config = TrainerConfig(
        steps=1,
        episodes_per_step=8,
        micro_batch_size=micro_batch_size,
        learning_rate=1e-3,
        max_grad_norm=0.0,
        aggregation="seq_mean",
        advantage="offline",  # A = reward: a loss far from 0 to compare
        seed=0,
    )
    trainer = Trainer(policy, OfflineSource(offline_episodes()), config, directory)
    history = trainer.fit(resume=False)
    if rank_and_world()[0] == 0:
        tensors = {
            name: p.grad.detach().clone() for name, p in policy.model.named_parameters() if p.grad is not None
        }
        tensors["__loss__"] = torch.tensor([history[-1]["loss"]], dtype=torch.float64)
        save_file(tensors, str(directory / "gradients.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_directory, mode = Path(sys.argv[1]), sys.argv[2]
    argument = int(sys.argv[3]) if len(sys.argv) > 3 else None
    if mode == "prompts":
        prompts_run(run_directory, argument)
    else:
        offline_run(run_directory, argument or 8)
