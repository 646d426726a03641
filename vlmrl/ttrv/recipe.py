"""Recipe: TTRV, test-time reinforcement learning on a task's unlabeled test items.

Task -> label-free documents -> before: greedy accuracy (and self-consistency at N_vote) on the
full set through the harness -> Trainer: per item N_vote samples, answers by the task's own
parser, rewards from the vote (frequency - 0.75 x normalised entropy, or TTRL's majority 0/1),
GRPO on the first N_train samples with a k3 KL to the start -> after: greedy accuracy on the
full set -> results.json (before, after, paired bootstrap gain) and the adapted model.

Labels are out of reach of everything between "before" and "after": the adaptation path
receives `Task.unlabeled(doc)` copies, and rewards read only the parsed votes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig

REWARDS = ("ttrv", "majority")
DIVERSITY = ("reference", "item-weight")


@dataclass
class TTRVConfig(TrainerConfig):
    """TTRV: GRPO on unlabeled test items with rewards from the model's own votes."""

    model: str = option("tiny", help="Model: 'tiny', a local directory or a hub id.")
    task: str = option(
        "shapes-recognition",
        help="Harness task: a built-in name, jsonl:FILE or hf:DIR (labels are never read).",
    )
    task_options: list[str] = option(
        help="Built-in task options as KEY=VALUE (e.g. n=120, min_objects=1); repeat the flag.", factory=list
    )
    out: str = option("runs/ttrv", help="Run directory (metrics, checkpoints, eval/, results.json, model/).")
    adapt_items: int = option(
        0, help="Adapt on the first K items of the task (0: all of them; 1: the one-example setting)."
    )
    votes: int = option(8, help="N_vote: samples per item whose answers form the vote (reference 32).")
    samples: int = option(
        4, help="N_train: the first samples of each item that are trained on (reference 16)."
    )
    reward: str = option("ttrv", help=f"Reward: {', '.join(REWARDS)} (TTRL's majority-vote 0/1).")
    entropy_weight: float = option(0.75, help="Weight of the normalised answer entropy (TTRV code: 0.75).")
    diversity: str = option(
        "reference",
        help="How the entropy acts: 'reference' (a reward term, which GRPO's normalisation cancels) or "
        "'item-weight' (scales each item's advantages by 1 - weight x entropy).",
    )
    epochs: float = option(
        2.0, help="Passes over the adaptation items (reference EPISODE=2); sets steps when steps=0."
    )
    max_new_tokens: int = option(0, help="Most tokens per response (0: the task's own limit).")
    evaluation: bool = option(
        True,
        help="Evaluate greedily on the full set before and after (off: adapt only, e.g. when the harness "
        "evaluates other items).",
    )
    self_consistency: bool = option(
        True, help="Also evaluate majority voting over N_vote samples (no training)."
    )
    eval_batch_size: int = option(32, help="Documents per generate call in evaluation.")
    lora_rank: int = option(0, help="LoRA rank (0: full fine-tuning).")
    threads: int = option(0, help="torch threads (0: torch's default).")
    # The CPU miniature on the tiny default; configs/ holds the reference settings.
    steps: int = option(0, help="Training steps (0: from epochs x items / items per step).")
    episodes_per_step: int = option(64, help="Trained episodes per step: items per step x N_train.")
    micro_batch_size: int = option(32, help="Episodes per forward/backward pass.")
    learning_rate: float = option(3e-4, help="Peak AdamW learning rate (reference 5e-7 on 2-8B models).")
    warmup_steps: int = option(0, help="Linear warmup steps (see warmup_ratio).")
    warmup_ratio: float = option(
        0.0, help="Warmup as a fraction of the steps, when above 0 (reference 0.03)."
    )
    min_learning_rate_ratio: float = option(0.0, help="Cosine decay ends at this fraction of the peak.")
    beta: float = option(0.001, help="KL(policy || start) coefficient, k3 estimator (reference 0.001).")
    max_length: int = option(16, help="The constant of token_sum_norm (set it to max_new_tokens).")

    def validate(self) -> None:
        super().validate()
        if self.reward not in REWARDS:
            raise ValueError(f"--reward {self.reward!r}: expected one of {REWARDS}")
        if self.diversity not in DIVERSITY:
            raise ValueError(f"--diversity {self.diversity!r}: expected one of {DIVERSITY}")
        if not 1 <= self.samples <= self.votes:
            raise ValueError(
                f"need 1 <= samples (N_train) <= votes (N_vote), got {self.samples}, {self.votes}"
            )
        if self.episodes_per_step % self.samples:
            raise ValueError(
                f"--episodes-per-step {self.episodes_per_step} must be a multiple of --samples {self.samples}"
            )
        if self.adapt_items < 0 or self.epochs <= 0:
            raise ValueError(f"need adapt_items >= 0 and epochs > 0, got {self.adapt_items}, {self.epochs}")


def task_options(pairs: list[str]) -> dict[str, Any]:
    """{'n': 120} from ['n=120']: values read as YAML scalars (numbers, booleans, lists)."""
    import yaml

    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--task-options {pair!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    return options


class VoteSource:
    """Rollouts for TTRV: N_vote samples per unlabeled item, voted, the first N_train kept.

    Wraps the shared `PromptSource` (its seeded order and resumable cursor) with group size
    N_vote; each kept episode carries every vote of its item in `info`, so rewards are plain
    functions of an episode.
    """

    def __init__(
        self, task: Any, docs: list[dict[str, Any]], votes: int, samples: int, sampling: Any, seed: int
    ):
        from vlmrl.rl.prompts import Prompt, PromptSource

        self.task, self.votes, self.samples = task, votes, samples
        self.docs = {doc["id"]: doc for doc in docs}
        prompts = [Prompt(id=doc["id"], messages=task.to_messages(doc)) for doc in docs]
        self.prompts = PromptSource(prompts, votes, sampling, seed=seed)

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Any]:
        from vlmrl.evals.voting import task_answer

        items = n // self.samples
        drawn = self.prompts.collect(policy, items * self.votes, rng)
        groups: dict[str, list[Any]] = {}
        for episode in drawn:  # ordered by item, then sample
            groups.setdefault(episode.group, []).append(episode)
        kept = []
        for group in groups.values():
            doc = self.docs[group[0].info["prompt_id"]]
            answers = [task_answer(self.task, doc, episode.text) for episode in group]
            votes = [a if isinstance(a, str) else None for a in answers]
            for index, episode in enumerate(group[: self.samples]):
                episode.info = {
                    "item": doc["id"],
                    "votes": votes,
                    "vote_index": index,
                    "parsed_answer": votes[index],
                    "format_failure": None if votes[index] is not None else answers[index].reason,
                }
                kept.append(episode)
        return kept

    def state_dict(self) -> dict[str, Any]:
        return self.prompts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state)


def vote_rewards(config: TTRVConfig) -> list[Any]:
    """The reward components, each a function of one episode's item votes."""
    from vlmrl.rl.trainer import RewardFunction
    from vlmrl.ttrv.rewards import frequency_rewards, majority_rewards, normalized_entropy

    def mine(function):
        return lambda episode: function(episode.info["votes"])[episode.info["vote_index"]]

    parsed = RewardFunction(
        "parsed", lambda e: float(e.info["parsed_answer"] is not None), 0.0, per_episode=True
    )
    entropy = RewardFunction(
        "entropy",
        lambda e: normalized_entropy(e.info["votes"]),
        -config.entropy_weight if config.reward == "ttrv" else 0.0,  # logged either way
        per_episode=True,
    )
    if config.reward == "majority":
        return [RewardFunction("majority", mine(majority_rewards), 1.0, per_episode=True), entropy, parsed]
    return [RewardFunction("frequency", mine(frequency_rewards), 1.0, per_episode=True), entropy, parsed]


def item_weight_advantages(config: TTRVConfig):
    """GRPO advantages scaled per item by 1 - w x H_norm (`--diversity item-weight`)."""
    import torch

    from vlmrl.rl.advantages import group_normalized_advantages
    from vlmrl.ttrv.rewards import item_weighted_advantages, normalized_entropy

    def advantages(episodes: list[Any]) -> torch.Tensor:
        rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float32)
        normalised = group_normalized_advantages(rewards, [e.group for e in episodes])
        entropies = torch.tensor([normalized_entropy(e.info["votes"]) for e in episodes])
        return item_weighted_advantages(normalised, entropies, config.entropy_weight)

    return advantages


def adapt(
    config: TTRVConfig,
    policy: Any,
    task: Any,
    docs: list[dict[str, Any]],
    directory: Path,
    callbacks: Sequence[Callable[..., None]] = (),
) -> Any:
    """Test-time RL on `docs` (label-free copies); `callbacks(trainer, metrics)` run after every
    step. Returns the Trainer after `fit`."""
    from vlmrl.model import SamplingParams
    from vlmrl.rl.trainer import Trainer

    items_per_step = config.episodes_per_step // config.samples
    if config.steps == 0:
        config.steps = max(1, math.ceil(config.epochs * len(docs) / items_per_step))
    if config.warmup_ratio > 0:
        config.warmup_steps = int(config.warmup_ratio * config.steps)
    sampling = SamplingParams(
        max_new_tokens=config.max_new_tokens or task.max_new_tokens, temperature=config.temperature
    )
    source = VoteSource(task, docs, config.votes, config.samples, sampling, config.seed)
    trainer = Trainer(
        policy,
        source,
        config,
        directory,
        rewards=vote_rewards(config),
        advantage_function=item_weight_advantages(config) if config.diversity == "item-weight" else None,
        callbacks=callbacks,
    )
    trainer.fit()
    return trainer


def _scores(directory: Path, task: Any) -> dict[str, dict[str, Any]]:
    from vlmrl.evals.runner import read_predictions

    return {
        k: v["score"] for k, v in read_predictions(directory / "predictions" / f"{task.name}.jsonl").items()
    }


def run_ttrv(
    config: TTRVConfig, policy: Any = None, task: Any = None, callbacks: Sequence[Callable[..., None]] = ()
) -> dict[str, Any]:
    """Evaluate, adapt, evaluate again (`evaluation` off: adapt only); `callbacks(trainer,
    metrics)` run after every step (e.g. to refresh a report)."""
    import torch

    from vlmrl.evals import evaluate, get_task
    from vlmrl.evals.metrics import paired_bootstrap_delta
    from vlmrl.evals.voting import self_consistency_task
    from vlmrl.model import VLM, LoraSettings
    from vlmrl.rl.distributed import is_main_process
    from vlmrl.runs import atomic_write_json, save_run_config

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    task = task if task is not None else get_task(config.task, **task_options(config.task_options))
    if task.interactive:
        raise ValueError(f"--task {task.name}: TTRV adapts on single-turn tasks; this one is interactive")
    if policy is None:
        lora = LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
        policy = VLM.load(config.model, lora=lora)
    full = task.load_docs().items
    if not full:
        raise ValueError(f"--task {task.name}: the task has no documents")
    if config.adapt_items > len(full):
        raise ValueError(f"--adapt-items {config.adapt_items}: the task has only {len(full)} documents")
    adaptation = [task.unlabeled(doc) for doc in full[: config.adapt_items or len(full)]]
    evaluation = {
        "limit": None,
        "batch_size": config.eval_batch_size,
        "seed": config.seed,
        "show_progress": False,
    }

    if not config.evaluation:
        trainer = adapt(config, policy, task, adaptation, directory, callbacks)
        results = {
            "task": task.name,
            "metric": task.primary_metric,
            "reward": config.reward,
            "diversity": config.diversity,
            "adapt_items": len(adaptation),
            "eval_items": 0,
            "steps": trainer.step,
            "final_reward_mean": trainer.history[-1]["reward_mean"] if trainer.history else None,
        }
        if is_main_process():
            atomic_write_json(directory / "results.json", results)
            policy.save(directory / "model")
        return results

    # Before: greedy on the full set, and self-consistency at N_vote (both on the base model).
    # Cached predictions make a resumed run skip what it already measured.
    before = evaluate(policy, [task], out_dir=directory / "eval" / "before", **evaluation)
    voted = None
    if config.self_consistency:
        voting = self_consistency_task(task, config.votes, config.temperature, config.seed)
        voted = evaluate(policy, [voting], out_dir=directory / "eval" / "self-consistency", **evaluation)
        voted = voted["tasks"][voting.name]

    trainer = adapt(config, policy, task, adaptation, directory, callbacks)

    after = evaluate(policy, [task], out_dir=directory / "eval" / "after", **evaluation)
    first, second = _scores(directory / "eval" / "before", task), _scores(directory / "eval" / "after", task)
    ids = [doc["id"] for doc in full]
    adapted = {doc["id"] for doc in adaptation}
    gain = paired_bootstrap_delta(
        [first[i] for i in ids], [second[i] for i in ids], task.aggregate, seed=config.seed
    )
    unseen = [i for i in ids if i not in adapted]
    metric = task.primary_metric
    results = {
        "task": task.name,
        "metric": metric,
        "reward": config.reward,
        "diversity": config.diversity,
        "adapt_items": len(adaptation),
        "eval_items": len(ids),
        "steps": trainer.step,
        "before": before["tasks"][task.name],
        "after": after["tasks"][task.name],
        "self_consistency": voted,
        "gain": gain.get(metric),
        "gain_by_metric": gain,
        "unseen_items": len(unseen),
        "unseen_gain": paired_bootstrap_delta(
            [first[i] for i in unseen], [second[i] for i in unseen], task.aggregate, seed=config.seed
        ).get(metric)
        if unseen
        else None,
        "final_reward_mean": trainer.history[-1]["reward_mean"] if trainer.history else None,
    }
    if is_main_process():
        atomic_write_json(directory / "results.json", results)
        policy.save(directory / "model")
    return results
