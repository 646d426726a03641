"""Recipe: VL-DAC, token-level PPO with a step-level critic, in a synthetic world.

Read top to bottom: config -> policy and value head -> (format warm-up) -> held-out success
before -> Trainer(WorldSource rollouts, GAE advantages from the value head, clipped value loss)
-> held-out success after -> results.json, the model, the head, replays under samples/.

`--algorithm` switches to the paper's ablation baselines in the same code path:
- `rl4vlm`: the same critic, but PPO on one log-probability per step in which the thought
  tokens are weighted by lambda (`--thought-weight`, RL4VLM's thought_prob_coef);
- `grpo`: no critic; every step gets its episode's return normalised over the rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig

ALGORITHMS = ("vl-dac", "rl4vlm", "grpo")
WARMUP_THOUGHT = "I decide."


@dataclass
class VLDACConfig(TrainerConfig):
    """VL-DAC: token-level PPO with a step-level value head, trained in a synthetic world."""

    model: str = option("tiny", help="Model: 'tiny', a local directory or a hub id.")
    world: str = option(
        "numberline",
        help="World (vlmrl.envs.WORLDS): numberline, ezpoints, points24, blackjack, miniworld-oneroom, miniworld-fourrooms, minigrid-empty.",
    )
    world_options: str = option(
        "", help="World constructor options as key=value pairs, comma-separated (e.g. 'max_position=5')."
    )
    out: str = option(
        "runs/vl-dac", help="Run directory (metrics, checkpoints, samples, eval, results.json)."
    )
    algorithm: str = option(
        "vl-dac", help=f"Algorithm: {', '.join(ALGORITHMS)} (the paper's ablation baselines)."
    )
    worlds: int = option(
        16, help="Worlds stepped in parallel; episodes_per_step / worlds steps each per rollout."
    )
    gamma: float = option(0.0, help="GAE discount (0: the world's default, 0.9 navigation, 0.99 otherwise).")
    gae_lambda: float = option(0.95, help="GAE lambda.")
    value_coef: float = option(0.5, help="Coefficient of the clipped value loss.")
    value_clip: float = option(0.1, help="Value clipping range (the reference uses the PPO clip).")
    value_warmup: int = option(2, help="First updates that train only the value head.")
    value_widths: str = option("256,256", help="Hidden widths of the value MLP (the reference: 3072,2048).")
    thought_weight: float = option(0.5, help="rl4vlm: weight lambda of the thought tokens' log-probability.")
    max_new_tokens: int = option(24, help="Most tokens per reply.")
    format_warmup_steps: int = option(
        60, help="SFT steps on the JSON reply format with uniformly random valid actions before RL (0: none)."
    )
    format_warmup_learning_rate: float = option(1e-3, help="Learning rate of the format warm-up.")
    format_warmup_batch: int = option(16, help="Conversations per format warm-up step.")
    eval_episodes: int = option(
        200,
        help="Held-out episodes for the success rate before and after (0: none, when a caller evaluates).",
    )
    eval_seed: int = option(
        1_000_000, help="Seed of the first held-out episode (training seeds are hashed apart)."
    )
    lora_rank: int = option(0, help="LoRA rank (0: full fine-tuning; the reference: 16).")
    lora_alpha: int = option(32, help="LoRA alpha (the reference: 32).")
    lora_dropout: float = option(0.1, help="LoRA dropout (the reference: 0.1).")
    threads: int = option(0, help="torch threads (0: torch's default).")
    # Trainer defaults: the CPU miniature on tiny (configs/ hold the paper's 7B settings).
    steps: int = option(14, help="PPO updates (one rollout each).")
    episodes_per_step: int = option(
        64, help="Environment steps per rollout over all worlds (the reference's num_steps)."
    )
    ppo_epochs: int = option(2, help="PPO epochs per rollout.")
    minibatches: int = option(2, help="Optimizer steps per PPO epoch.")
    micro_batch_size: int = option(32, help="Steps per forward/backward pass.")
    learning_rate: float = option(3e-4, help="Peak learning rate (the reference: 1e-6 on 7B).")
    min_learning_rate_ratio: float = option(
        0.01, help="Cosine decay floor as a fraction of the peak (1e-8/1e-6)."
    )
    max_grad_norm: float = option(1.0, help="Gradient clipping norm (the reference: 0.01 on 7B).")
    epsilon_low: float = option(0.1, help="PPO clip range below 1.")
    epsilon_high: float = option(0.1, help="PPO clip range above 1.")
    beta: float = option(0.04, help="KL(policy || reference) coefficient, k3 estimator.")
    aggregation: str = option(
        "seq_mean", help="Loss aggregation: each step's token mean, then the mean over steps."
    )
    temperature: float = option(0.3, help="Sampling temperature (the reference: 0.2).")
    save_samples_every: int = option(
        5, help="Save the rollout's steps and whole-episode replays every N updates."
    )
    checkpoint_every: int = option(10, help="Write a checkpoint every N updates (0: only at the end).")

    def validate(self) -> None:
        super().validate()
        from vlmrl.envs import world_spec

        world_spec(self.world)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"--algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.worlds < 1 or self.episodes_per_step % self.worlds:
            raise ValueError(
                f"--episodes-per-step {self.episodes_per_step} must be a multiple of --worlds {self.worlds}"
            )
        parse_world_options(self.world_options)
        parse_widths(self.value_widths)


def parse_world_options(text: str) -> dict[str, Any]:
    """'a=1,b=x' -> {'a': 1, 'b': 'x'} (numbers become int/float); errors name the bad pair."""
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--world-options: expected key=value, got {pair!r}")
        value = value.strip()
        for kind in (int, float):
            try:
                options[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.strip()] = value
    return options


def parse_widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError as error:
        raise ValueError(f"--value-widths: expected comma-separated integers, got {text!r}") from error
    if any(w < 1 for w in widths):
        raise ValueError(f"--value-widths must be positive, got {text!r}")
    return widths


def format_warmup_batch(config: VLDACConfig, step: int) -> list[list[dict[str, Any]]]:
    """Conversations teaching the reply format only: states from random play, random actions.

    The action in each target is drawn uniformly from the valid ones, independent of the
    state, so the warm-up teaches how to answer and nothing about what to answer.
    """
    import numpy as np

    from vlmrl.envs import format_action, make_world, step_prompt, world_spec

    spec = world_spec(config.world)
    rng = np.random.default_rng([config.seed, 424242, step])
    world = make_world(config.world, **parse_world_options(config.world_options))
    conversations = []
    for _ in range(config.format_warmup_batch):
        observation, _ = world.reset(seed=int(rng.integers(0, 2**31 - 1)))
        frames = [observation]
        for _ in range(int(rng.integers(0, 3))):
            observation, _, terminated, truncated, _ = world.step(int(rng.integers(0, world.action_space.n)))
            if terminated or truncated:
                break
            frames = (frames + [observation])[-spec.frames :]
        action = world.action_names[int(rng.integers(0, len(world.action_names)))]
        reply = format_action(action, WARMUP_THOUGHT)
        conversations.append(step_prompt(spec, world, frames) + [{"role": "assistant", "content": reply}])
    return conversations


def thought_token_count(tokenizer: Any, token_ids: list[int]) -> int:
    """How many leading reply tokens come before the "action" key (RL4VLM's thought part)."""
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    cut = text.find('"action"')
    if cut < 0:
        return len(token_ids)
    for count in range(len(token_ids) + 1):
        if len(tokenizer.decode(token_ids[:count], skip_special_tokens=True)) > cut:
            return max(0, count - 1)
    return len(token_ids)


def format_warmup(policy: Any, config: VLDACConfig) -> None:
    """SFT on the reply format (`format_warmup_batch`); deterministic, so a resumed run or a
    caller that warms a model up ahead of the run gets the same weights."""
    from vlmrl.rl.sft import SFTSettings, train_sft

    train_sft(
        policy,
        lambda step: format_warmup_batch(config, step),
        SFTSettings(
            steps=config.format_warmup_steps,
            learning_rate=config.format_warmup_learning_rate,
            warmup_steps=max(1, config.format_warmup_steps // 10),
            seed=config.seed,
            log_every=max(1, config.format_warmup_steps // 5),
            prefetch=False,
        ),
        progress_description="format warm-up",
    )
    policy.model.eval()


def run_vldac(config: VLDACConfig, callbacks: Sequence[Callable[..., None]] = ()) -> dict[str, Any]:
    """Train; `callbacks(trainer, metrics)` run after every update (e.g. to refresh a report)."""
    import torch

    from vlmrl.envs import world_spec
    from vlmrl.evals.runner import evaluate
    from vlmrl.model import VLM, LoraSettings, SamplingParams
    from vlmrl.rl.episode import save_episodes
    from vlmrl.rl.trainer import Trainer
    from vlmrl.runs import atomic_write_json, read_json, save_run_config
    from vlmrl.vldac.critic import (
        ValueHead,
        clipped_value_loss,
        decision_states,
        episode_advantages,
        rollout_advantages,
        sequence_ppo_loss,
        weighted_sequence_logprob,
    )
    from vlmrl.vldac.rollouts import WorldSource, replay_episode, step_values, world_task

    # ---- setup
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    spec = world_spec(config.world)
    options = parse_world_options(config.world_options)
    gamma = config.gamma or spec.gamma
    lora = (
        LoraSettings(rank=config.lora_rank, alpha=config.lora_alpha, dropout=config.lora_dropout)
        if config.lora_rank
        else None
    )
    policy = VLM.load(config.model, lora=lora)
    text_config = getattr(policy.model.config, "text_config", policy.model.config)
    head = ValueHead(text_config.hidden_size, parse_widths(config.value_widths)).to(policy.device)
    policy_parameters = [p for p in policy.model.parameters() if p.requires_grad]

    # ---- format warm-up (deterministic, so a resumed run redoes it identically)
    if config.format_warmup_steps:
        format_warmup(policy, config)

    # ---- held-out success before
    task = world_task(config.world, config.eval_episodes, config.eval_seed, config.max_new_tokens, options)
    results_path = directory / "results.json"
    before = read_json(results_path).get("before") if results_path.is_file() else None
    if before is None and config.eval_episodes:
        before = evaluate(policy, [task], out_dir=directory / "eval" / "before", show_progress=False)
        before = summarise(before, task.name)
        atomic_write_json(results_path, {"before": before})

    # ---- rollouts, advantages, value loss
    sampling = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
    source = WorldSource(config.world, config.worlds, sampling, config.seed, options)
    trainer: Trainer | None = None
    minibatch_size = max(1, config.episodes_per_step // config.minibatches)

    def advantages(episodes: list) -> torch.Tensor:
        count, length = config.worlds, len(episodes) // config.worlds

        # Episode order from collect: time-major, world-minor -> [worlds, time].
        def grid(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(length, count).T

        rewards = grid([e.step_rewards[0] for e in episodes])
        dones = grid([float(e.info["done"]) for e in episodes])
        if config.algorithm == "grpo":
            totals: dict[str, float] = {}
            running: dict[str, float] = {}
            for e in episodes:
                running[e.group] = running.get(e.group, 0.0) + e.step_rewards[0]
                if e.info["done"]:
                    totals[e.group] = running[e.group]
            ids = {g: i for i, g in enumerate(dict.fromkeys(e.group for e in episodes))}
            step_advantage = episode_advantages(
                [ids[e.group] for e in episodes], {ids[g]: v for g, v in totals.items()}
            )
        else:
            values = step_values(policy, head, [e.messages for e in episodes], config.micro_batch_size)
            bootstrap = step_values(policy, head, source.bootstrap, config.micro_batch_size)
            grid_values = torch.cat([values.view(length, count).T, bootstrap.view(count, 1)], dim=1)
            normalised, returns = rollout_advantages(rewards, grid_values, dones, gamma, config.gae_lambda)
            step_advantage = normalised.T.reshape(-1)
            flat_returns = returns.T.reshape(-1)
            for episode, value, target in zip(episodes, values.tolist(), flat_returns.tolist()):
                episode.info["value"] = value
                episode.info["return"] = target
        warming = trainer is not None and trainer.step < config.value_warmup and config.algorithm != "grpo"
        if warming:
            step_advantage = torch.zeros_like(step_advantage)
        # Value-only warm-up: the policy's weights take no gradient at all in these updates.
        # Zero advantages alone are not enough: the KL term's rounding-level gradients (the
        # reference is scored in other batch shapes) would become full-size Adam steps.
        for parameter in policy_parameters:
            parameter.requires_grad_(not warming)
        if config.algorithm == "rl4vlm":
            # The shared token loss sees zero advantages; the sequence loss below uses these.
            for episode, advantage in zip(episodes, step_advantage.tolist()):
                episode.info["advantage"] = advantage
                episode.info["thought_tokens"] = thought_token_count(
                    policy.tokenizer, episode.turns[0].token_ids
                )
            return torch.zeros(len(episodes))
        return step_advantage

    def auxiliary(scores: Any, episodes: list) -> tuple[torch.Tensor, dict[str, float]]:
        share = len(episodes) / minibatch_size  # micro-batch losses sum to the minibatch's
        metrics: dict[str, float] = {}
        loss = torch.zeros((), device=scores.logprobs.device)
        if config.algorithm != "grpo":
            states = decision_states(scores.hidden_states, [p[:1] for p in scores.decision_positions])
            values = head(states).float()
            old = torch.tensor([e.info["value"] for e in episodes], device=values.device)
            targets = torch.tensor([e.info["return"] for e in episodes], device=values.device)
            value_loss = clipped_value_loss(values, old, targets, config.value_clip)
            loss = loss + config.value_coef * value_loss * share
            metrics.update(value_loss=float(value_loss.detach()), value_mean=float(values.detach().mean()))
        if config.algorithm == "rl4vlm":
            action_mask = scores.action_mask
            order = torch.cumsum(action_mask.long(), dim=1) - 1
            limit = torch.tensor([e.info["thought_tokens"] for e in episodes], device=order.device)
            thought_mask = action_mask & (order < limit.unsqueeze(1))
            logprob = weighted_sequence_logprob(
                scores.logprobs.float(), action_mask, thought_mask, config.thought_weight
            )
            old_rows = torch.zeros_like(scores.logprobs, dtype=torch.float32)
            old_rows[action_mask] = torch.tensor(
                [v for e in episodes for v in e.turns[0].logprobs], device=old_rows.device
            )
            old_logprob = weighted_sequence_logprob(
                old_rows, action_mask, thought_mask, config.thought_weight
            )
            advantage = torch.tensor([e.info["advantage"] for e in episodes], device=logprob.device)
            sequence_loss = sequence_ppo_loss(logprob, old_logprob, advantage, config.epsilon_high)
            loss = loss + sequence_loss * share
            metrics["sequence_policy_loss"] = float(sequence_loss.detach())
        return loss, metrics

    def save_replays(trainer: Trainer, metrics: dict[str, Any]) -> None:
        every = config.save_samples_every
        if every and (trainer.step - 1) % every == 0 and source.completed:
            replays = [replay_episode(steps, config.world) for steps in source.completed]
            save_episodes(replays, directory / "samples" / f"episodes-step-{trainer.step}.jsonl", "images")

    trainer = Trainer(
        policy,
        source,
        config,
        directory,
        advantage_function=advantages,
        auxiliary_loss=auxiliary,
        extra_modules=[head],
        callbacks=[save_replays, *callbacks],
        score_hidden_states=config.algorithm != "grpo",
    )
    history = trainer.fit()

    # ---- held-out success after, and what the run leaves behind
    after = None
    if config.eval_episodes:
        after = summarise(
            evaluate(policy, [task], out_dir=directory / "eval" / "after", show_progress=False), task.name
        )
    results = {
        "world": config.world,
        "algorithm": config.algorithm,
        "before": before,
        "after": after,
        "gain": after["success"] - before["success"] if before and after else None,
        "updates": trainer.step,
        "final": {
            k: v for k, v in (history[-1] if history else {}).items() if k.startswith(("reward", "value"))
        },
    }
    atomic_write_json(results_path, results)
    policy.save(directory / "model")
    from safetensors.torch import save_model

    save_model(head, str(directory / "model" / "value_head.safetensors"))
    return results


def summarise(results: dict[str, Any], name: str) -> dict[str, Any]:
    """The task's metrics and the success rate's bootstrap interval from `evaluate`'s results."""
    entry = results["tasks"][name]
    return {**entry["metrics"], "success_interval": entry["intervals"].get("success")}
