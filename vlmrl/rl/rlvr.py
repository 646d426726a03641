"""Recipe: GRPO with verifiable rewards (RLVR) on a prompt dataset with answers.

Data -> prompts -> held-out accuracy before -> Trainer (PromptSource, accuracy + format
rewards, group-normalised advantages) -> held-out accuracy after -> results.json and the
trained model. It is also the RLVR phase Vision-Zero alternates with (it reuses
`PromptSource` and the reward functions from `vlmrl.rl.prompts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig


@dataclass
class RLVRConfig(TrainerConfig):
    """GRPO with verifiable rewards: answer match + format reward on prompts with answers."""

    model: str = option("tiny", help="Model: 'tiny', a local directory or a hub id.")
    data: str = option(
        "shapes-qa", help="'shapes-qa' (generated on the fly) or a `vlmrl data` output directory."
    )
    out: str = option("runs/rlvr", help="Run directory (metrics, checkpoints, results.json, model/).")
    train_size: int = option(4096, help="Training prompts (shapes-qa: scenes generated; directory: first N).")
    eval_size: int = option(
        200, help="Held-out prompts for accuracy before and after (0: skip, e.g. when the harness evaluates)."
    )
    eval_samples: int = option(
        4,
        help="Temperature-1 samples per held-out prompt for the sampled (expected-reward) accuracy; 0: greedy only.",
    )
    group_size: int = option(8, help="Samples per prompt (GRPO group).")
    max_new_tokens: int = option(24, help="Most tokens per completion.")
    top_p: float = option(1.0, help="Nucleus sampling (below 1 implies recomputed old log-probs).")
    resolution: int = option(168, help="shapes-qa image side in pixels.")
    min_objects: int = option(3, help="shapes-qa: fewest objects per scene (train and held out).")
    max_objects: int = option(10, help="shapes-qa: most objects per scene (train and held out; at least 2).")
    data_seed: int = option(0, help="Seed of the shapes-qa scenes (held-out scenes use the next seed).")
    format_weight: float = option(0.1, help="Weight of the format reward (the accuracy reward weighs 1).")
    lora_rank: int = option(0, help="LoRA rank (0: full fine-tuning).")
    freeze_vision: bool = option(
        False, help="Train the language model only (vision encoder and projector frozen)."
    )
    threads: int = option(0, help="torch threads (0: torch's default).")
    # Defaults suited to the tiny model on a CPU; real models override them.
    steps: int = option(40, help="Training steps (one collect + update each).")
    episodes_per_step: int = option(64, help="Episodes per step over all processes (prompts x group size).")
    micro_batch_size: int = option(32, help="Episodes per forward/backward pass.")
    learning_rate: float = option(2e-5, help="Peak AdamW learning rate.")
    warmup_steps: int = option(2, help="Linear warmup steps.")
    epsilon_high: float = option(0.28, help="PPO clip range above 1 (clip-higher).")
    max_length: int = option(24, help="The constant of token_sum_norm (set it to max_new_tokens).")
    checkpoint_every: int = option(10, help="Write a checkpoint every N steps (0: only at the end).")


def load_prompts(config: RLVRConfig) -> tuple[Any, int, list]:
    """(train prompt getter, train size, held-out prompts) for `config.data`."""
    from vlmrl.rl.prompts import question_prompt

    if config.data == "shapes-qa":
        from vlmrl.data_recipes.shapes import shapes_qa_record

        if not 1 <= config.min_objects <= config.max_objects or config.max_objects < 2:
            raise ValueError(
                f"shapes-qa scenes: need 1 <= min_objects <= max_objects and max_objects >= 2 "
                f"(relation questions need two objects), got {config.min_objects}, {config.max_objects}"
            )

        def train(index: int):
            record = shapes_qa_record(
                index, config.data_seed, config.resolution, config.min_objects, config.max_objects
            )
            return question_prompt(record, f"shapes-qa[{index}]")

        held_out = [
            question_prompt(
                shapes_qa_record(
                    i, config.data_seed + 1, config.resolution, config.min_objects, config.max_objects
                ),
                f"eval[{i}]",
            )
            for i in range(config.eval_size)
        ]
        return train, config.train_size, held_out
    directory = Path(config.data)
    if not directory.is_dir():
        raise ValueError(f"--data {config.data}: expected 'shapes-qa' or a `vlmrl data` output directory")
    from vlmrl.data_recipes.recipe import load_recipe_dataset

    dataset = load_recipe_dataset(directory)
    missing = [c for c in ("image", "question", "answer") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"--data {directory}: dataset lacks columns {missing}; expected image, question, answer"
        )
    if len(dataset) <= config.eval_size:
        raise ValueError(
            f"--data {directory}: {len(dataset)} records, need more than eval_size={config.eval_size}"
        )
    train_size = min(config.train_size, len(dataset) - config.eval_size)
    held_out = [
        question_prompt(dataset[i], f"{directory}[{i}]")
        for i in range(len(dataset) - config.eval_size, len(dataset))
    ]
    return (lambda i: question_prompt(dataset[i], f"{directory}[{i}]")), train_size, held_out


def run_rlvr(config: RLVRConfig, callbacks: Sequence[Callable[..., None]] = ()) -> dict[str, Any]:
    """Train; `callbacks(trainer, metrics)` run after every step (e.g. to refresh a report)."""
    import torch

    from vlmrl.model import VLM, LoraSettings, SamplingParams
    from vlmrl.rl.distributed import is_main_process
    from vlmrl.rl.prompts import PromptSource, accuracy_reward, answer_accuracy, format_reward
    from vlmrl.rl.trainer import RewardFunction, Trainer
    from vlmrl.runs import atomic_write_json, save_run_config

    if config.threads:
        torch.set_num_threads(config.threads)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    lora = LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
    policy = VLM.load(config.model, lora=lora)
    if config.freeze_vision:
        policy.freeze_vision()
    if config.top_p < 1.0:
        config.recompute_old_logprobs = True  # the sampler's truncated log-probs are not the policy's
    train, train_size, held_out = load_prompts(config)
    sampling = SamplingParams(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p
    )
    source = PromptSource(train, config.group_size, sampling, size=train_size, seed=config.data_seed)
    results_path = directory / "results.json"
    before = None
    if results_path.is_file():  # a resumed run keeps the first measurement
        from vlmrl.runs import read_json

        before = read_json(results_path).get("before")
    if before is None and held_out:
        before = answer_accuracy(
            policy, held_out, config.max_new_tokens, samples=config.eval_samples, seed=config.seed
        )
        if is_main_process():
            atomic_write_json(results_path, {"before": before})
    trainer = Trainer(
        policy,
        source,
        config,
        directory,
        rewards=[
            RewardFunction("accuracy", accuracy_reward, 1.0, per_episode=True),
            RewardFunction("format", format_reward, config.format_weight, per_episode=True),
        ],
        callbacks=callbacks,
    )
    history = trainer.fit()
    after = (
        answer_accuracy(
            policy, held_out, config.max_new_tokens, samples=config.eval_samples, seed=config.seed
        )
        if held_out
        else None
    )
    measured = before is not None and after is not None
    results = {
        "before": before,
        "after": after,
        "gain": after["accuracy"] - before["accuracy"] if measured else None,
        "sampled_gain": None
        if not measured or after.get("sampled_accuracy") is None or before.get("sampled_accuracy") is None
        else after["sampled_accuracy"] - before["sampled_accuracy"],
        "steps": trainer.step,
        "final_reward_mean": history[-1]["reward_mean"] if history else None,
    }
    if is_main_process():
        atomic_write_json(results_path, results)
        policy.save(directory / "model")
    return results
