"""The one RL trainer: collect -> rewards -> advantages -> PPO epochs (DESIGN 3.2).

Read `Trainer.train_step` top to bottom for the algorithm. Everything a method changes is a
hook, not a subclass:
- the `RolloutSource` (prompt datasets, games, tool loops, environments, offline data);
- `rewards`: named, weighted callables on the whole batch of episodes (so group-level rewards,
  e.g. TTRV's answer frequency or a game's outcome, see every episode of a group);
- `advantage_function(episodes) -> [episodes] or [episodes, turns]` when the built-in
  estimators (GRPO, Dr. GRPO, RLOO, per-role, offline weights) do not fit, e.g. VL-DAC's GAE
  over per-step rewards with a value head;
- `auxiliary_loss(scores, episodes) -> (loss, metrics)` added to the policy loss per
  micro-batch (a value head's regression), with its modules in `extra_modules` so they are
  optimised and checkpointed with the policy;
- episode masks (`Episode.masked`, and `truncated` under over-turn masking) reach the loss
  in one place, `vlmrl.rl.losses.policy_loss`;
- a source with a `rollout_metrics() -> dict` method has it read after each collect and
  logged with the step (a game's phase, win rates; rank 0's values under several processes).

The policy stays in eval mode (no dropout) so the log-probs the sampler saw and those the
update recomputes come from the same function; with gradient checkpointing it is switched
to train mode during the update only (transformers checkpoints only in train mode).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrl.rl import distributed
from vlmrl.rl.advantages import (
    broadcast_to_tokens,
    group_normalized_advantages,
    offline_weighted,
    rloo_advantages,
)
from vlmrl.rl.episode import Episode, RolloutSource
from vlmrl.rl.losses import LossSettings, policy_loss
from vlmrl.rl.settings import TrainerConfig
from vlmrl.runs import MetricsLogger, atomic_directory, atomic_write_json, read_json

CHECKPOINTS = "checkpoints"


@dataclass
class RewardFunction:
    """A named reward component. `function(episodes) -> one float per episode` sees the whole
    batch (group-level rewards); with `per_episode=True` it is called as `function(episode)`."""

    name: str
    function: Callable[..., Any]
    weight: float = 1.0
    per_episode: bool = False

    def __call__(self, episodes: list[Episode]) -> list[float]:
        values = [self.function(e) for e in episodes] if self.per_episode else list(self.function(episodes))
        if len(values) != len(episodes):
            raise ValueError(
                f"reward '{self.name}' returned {len(values)} values for {len(episodes)} episodes"
            )
        return [float(v) for v in values]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to `floor`."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class _Batch:
    """Per-episode tensors the update needs, aligned with the episodes' action tokens."""

    episodes: list[Episode]
    advantages: torch.Tensor  # [episodes] or [episodes, turns]
    episode_mask: torch.Tensor  # [episodes] bool
    old_logprobs: list[torch.Tensor] = field(default_factory=list)  # each [action tokens]
    reference_logprobs: list[torch.Tensor] | None = None


def _spread(per_episode: list[torch.Tensor], chunk: list[int], action_mask: torch.Tensor) -> torch.Tensor:
    """Per-episode values over action tokens, placed at the action positions of a padded batch."""
    full = torch.zeros(action_mask.shape, dtype=torch.float32, device=action_mask.device)
    full[action_mask] = torch.cat([per_episode[i] for i in chunk]).to(action_mask.device)
    return full


class Trainer:
    def __init__(
        self,
        policy: Any,
        source: RolloutSource,
        config: TrainerConfig,
        run_directory: str | Path,
        *,
        rewards: Sequence[RewardFunction] = (),
        advantage_function: Callable[[list[Episode]], torch.Tensor] | None = None,
        auxiliary_loss: Callable[[Any, list[Episode]], tuple[torch.Tensor, dict[str, float]]] | None = None,
        extra_modules: Sequence[torch.nn.Module] = (),
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
        score_distributions: bool = False,
        score_hidden_states: bool = False,
    ):
        config.validate()
        self.policy = policy
        self.source = source
        self.config = config
        self.directory = Path(run_directory)
        self.rewards = list(rewards)
        self.advantage_function = advantage_function
        self.auxiliary_loss = auxiliary_loss
        self.extra_modules = list(extra_modules)
        self.callbacks = list(callbacks)
        # The auxiliary loss sees the policy's full distributions at action tokens (logit
        # distillation: Masters' JSD to a teacher).
        self.score_distributions = score_distributions
        # The update's forward pass also returns last-layer hidden states, for an auxiliary
        # loss that reads them (a value head on the policy's state: VL-DAC).
        self.score_hidden_states = score_hidden_states
        self.loss_settings = LossSettings(**config.loss_settings_kwargs())

        distributed.initialise_from_environment()
        self.rank, self.world = distributed.rank_and_world()
        if config.episodes_per_step % self.world:
            raise ValueError(
                f"episodes_per_step={config.episodes_per_step} must divide evenly over {self.world} processes"
            )
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        elif policy.device.type == "cpu":
            # On CPU with more than one thread, index_put_(accumulate=True) (the backward of
            # indexing a tensor) adds in an order that varies between runs: two RLVR runs with
            # one seed differed by ~1e-7 from step 2 and drifted apart over 100 steps. The
            # deterministic kernels cost nothing measurable there (8 steps: 21-30 s either way).
            # On GPU they stay opt-in: they slow some kernels and cuBLAS needs
            # CUBLAS_WORKSPACE_CONFIG for them.
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._seed(config.seed)
        for module in [policy.model, *self.extra_modules]:
            distributed.broadcast_parameters(module)
        # The reference is taken before any resume, so it is the initial policy in every run.
        self.reference = policy.reference() if config.beta != 0 else None
        if config.gradient_checkpointing:
            policy.gradient_checkpointing(True)
        self.parameters = [p for p in policy.model.parameters() if p.requires_grad]
        for module in self.extra_modules:
            self.parameters += [p for p in module.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError("the policy has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: warmup_cosine(
                step, config.warmup_steps, config.steps, config.min_learning_rate_ratio
            ),
        )
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.logger: MetricsLogger | None = None

    # ------------------------------------------------------------------ seeds and RNG state
    def _seed(self, seed: int) -> None:
        # Each process samples different episodes; weights stay identical through the all-reduce.
        random.seed(seed + self.rank)
        np.random.seed(seed + self.rank)
        torch.manual_seed(seed + self.rank)
        self.rng = np.random.default_rng([seed, self.rank])

    def _rng_state(self) -> dict[str, Any]:
        legacy = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": [legacy[0], legacy[1].tolist(), *legacy[2:]],
            "generator": self.rng.bit_generator.state,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        self.rng.bit_generator.state = state["generator"]
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = True) -> list[dict[str, Any]]:
        """Train until `config.steps`, resuming from the latest checkpoint when there is one."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        resumed = self.resume() if resume else False
        main = self.rank == 0
        if main:
            self.logger = MetricsLogger(self.directory, resume_step=self.step if resumed else None)
        columns = [
            TextColumn("[bold]rl"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        try:
            with Progress(*columns, disable=not main) as progress:
                task = progress.add_task("rl", total=self.config.steps, completed=self.step, status="")
                while self.step < self.config.steps:
                    metrics = self.train_step()
                    self.step += 1
                    self.history.append({"step": self.step, **metrics})
                    if self.logger is not None:
                        self.logger.log(self.step, metrics)
                    every = self.config.checkpoint_every
                    if (every and self.step % every == 0) or self.step == self.config.steps:
                        self.save_checkpoint()
                    progress.update(
                        task,
                        advance=1,
                        status=f"reward {metrics['reward_mean']:.3f} loss {metrics['loss']:.4f}",
                    )
                    for callback in self.callbacks:
                        callback(self, metrics)
        finally:
            if self.logger is not None:
                self.logger.close()
        return self.history

    def train_step(self) -> dict[str, Any]:
        """One step: collect episodes, score them, compute advantages, run the PPO epochs."""
        started = time.perf_counter()
        local = self.config.episodes_per_step // self.world
        episodes = self.source.collect(self.policy, local, self.rng)
        if len(episodes) != local:
            raise ValueError(f"rollout source returned {len(episodes)} episodes, asked for {local}")
        generated = time.perf_counter()
        source_metrics = getattr(self.source, "rollout_metrics", None)
        source_metrics = dict(source_metrics()) if callable(source_metrics) else {}

        reward_metrics = self.compute_rewards(episodes)
        advantages = self.compute_advantages(episodes)
        mask = torch.tensor(
            [not (e.masked or (e.truncated and self.config.mask_truncated)) for e in episodes],
            dtype=torch.bool,
        )
        batch = _Batch(episodes=episodes, advantages=advantages, episode_mask=mask)
        self._prepare_logprobs(batch)
        prepared = time.perf_counter()

        update_metrics = self.update(batch)
        self.scheduler.step()
        finished = time.perf_counter()

        if (
            self.config.save_samples_every
            and self.step % self.config.save_samples_every == 0
            and self.rank == 0
        ):
            from vlmrl.rl.episode import save_episodes

            save_episodes(
                episodes,
                self.directory / "samples" / f"step-{self.step + 1}.jsonl",
                "images",
                advantages=advantages.tolist(),
            )
        sampled_tokens = distributed.sum_across_processes(
            torch.tensor(float(sum(e.action_token_count for e in episodes)))
        ).item()
        lengths = [e.action_token_count for e in episodes]
        return {
            **source_metrics,
            **reward_metrics,
            **update_metrics,
            "advantage_abs_mean": float(advantages.abs().mean()),
            "masked_fraction": float(1 - mask.float().mean()),
            "truncated_fraction": float(np.mean([e.truncated for e in episodes])),
            "length_mean": float(np.mean(lengths)),
            "length_max": int(max(lengths)),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "time_generate": generated - started,
            "time_prepare": prepared - generated,
            "time_update": finished - prepared,
            "time_step": finished - started,
            "tokens_per_second": sampled_tokens / max(1e-9, finished - started),
        }

    # ------------------------------------------------------------------ rewards and advantages
    def compute_rewards(self, episodes: list[Episode]) -> dict[str, float]:
        """Fill `reward_components` and `reward` from the reward functions (if any); summarise."""
        if self.rewards:
            components = {r.name: r(episodes) for r in self.rewards}
            for index, episode in enumerate(episodes):
                episode.reward_components = {name: values[index] for name, values in components.items()}
                episode.reward = sum(r.weight * components[r.name][index] for r in self.rewards)
        names = sorted({name for e in episodes for name in e.reward_components})
        columns = [[e.reward for e in episodes]] + [
            [e.reward_components.get(n, 0.0) for e in episodes] for n in names
        ]
        values = torch.tensor(columns, dtype=torch.float64)
        # Sums and squares over all processes give the global mean and std of each component.
        totals = distributed.sum_across_processes(
            torch.stack(
                [values.sum(1), (values**2).sum(1), torch.full((len(columns),), float(len(episodes)))], 1
            )
        )
        metrics = {}
        for key, (total, squares, count) in zip(["reward", *[f"reward/{n}" for n in names]], totals.tolist()):
            mean = total / count
            metrics[f"{key}_mean"] = mean
            metrics[f"{key}_std"] = math.sqrt(max(0.0, squares / count - mean**2))
        return metrics

    def compute_advantages(self, episodes: list[Episode]) -> torch.Tensor:
        if self.advantage_function is not None:
            advantages = self.advantage_function(episodes)
        else:
            rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float32)
            groups = [e.group for e in episodes]
            roles = [e.role for e in episodes] if self.config.per_role else None
            kind = self.config.advantage
            if kind in ("grpo", "dr_grpo"):
                advantages = group_normalized_advantages(
                    rewards, groups, scale_rewards=kind == "grpo", roles=roles
                )
            elif kind == "rloo":
                advantages = rloo_advantages(rewards, groups, roles=roles)
            elif kind == "offline":
                weights = torch.tensor([float(e.info.get("weight", 1.0)) for e in episodes])
                advantages = offline_weighted(rewards, weights)
            else:  # "given": the source wrote one advantage per episode into info
                try:
                    advantages = torch.tensor([float(e.info["advantage"]) for e in episodes])
                except KeyError as error:
                    raise ValueError("advantage='given' needs info['advantage'] on every episode") from error
        if advantages.shape[0] != len(episodes) or advantages.dim() not in (1, 2):
            raise ValueError(
                f"advantages must be [episodes] or [episodes, turns] for {len(episodes)} episodes, "
                f"got {tuple(advantages.shape)}"
            )
        return advantages.float()

    # ------------------------------------------------------------------ log-probs
    def _micro_batches(self, indices: Sequence[int]) -> list[list[int]]:
        size = self.config.micro_batch_size
        return [list(indices[i : i + size]) for i in range(0, len(indices), size)]

    def _score(
        self,
        model: Any,
        episodes: list[Episode],
        *,
        entropy: bool = False,
        distributions: bool = False,
        hidden_states: bool = False,
    ):
        # Only ask for the extras when used, so plain policies (and test doubles) need not know them.
        options = {"distributions": True} if distributions else {}
        if hidden_states:
            options["hidden_states"] = True
        scores = model.score(
            [e.messages for e in episodes], entropy=entropy, temperature=self.config.temperature, **options
        )
        counts = scores.action_mask.sum(1).tolist()
        for episode, count in zip(episodes, counts):
            if count != episode.action_token_count:
                raise ValueError(
                    f"episode of group '{episode.group}': the conversation has {count} action tokens but its "
                    f"turns hold {episode.action_token_count}; every assistant message must be one of its turns"
                )
        return scores

    def _prepare_logprobs(self, batch: _Batch) -> None:
        """Old log-probs (the sampler's, or recomputed) and the reference's, per episode."""
        episodes = batch.episodes
        recompute = self.config.recompute_old_logprobs or any(
            len(t.logprobs) != len(t.token_ids) for e in episodes for t in e.turns
        )
        if not recompute:
            batch.old_logprobs = [
                torch.tensor([v for t in e.turns for v in t.logprobs], dtype=torch.float32) for e in episodes
            ]
        models = ([("old", self.policy)] if recompute else []) + (
            [("reference", self.reference)] if self.reference is not None else []
        )
        for name, model in models:
            collected: list[torch.Tensor] = []
            with torch.no_grad():
                for chunk in self._micro_batches(range(len(episodes))):
                    scores = self._score(model, [episodes[i] for i in chunk])
                    logprobs = scores.logprobs.float().cpu()
                    mask = scores.action_mask.cpu()
                    collected += [logprobs[row][mask[row]] for row in range(len(chunk))]
            if name == "old":
                batch.old_logprobs = collected
            else:
                batch.reference_logprobs = collected

    # ------------------------------------------------------------------ the update
    def update(self, batch: _Batch) -> dict[str, Any]:
        """PPO epochs over minibatches; micro-batches accumulate gradients of one optimizer step."""
        config = self.config
        episodes = batch.episodes
        totals: dict[str, float] = {}
        token_weighted: dict[str, float] = {}
        optimizer_steps = 0
        grad_norms = []
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.step)
        if config.gradient_checkpointing:
            self.policy.model.train()
        try:
            for _ in range(config.ppo_epochs):
                order = torch.randperm(len(episodes), generator=generator).tolist()
                for part in np.array_split(np.asarray(order), config.minibatches):
                    part = part.tolist()
                    if not part:
                        continue
                    metrics = self._optimizer_step(batch, part)
                    grad_norms.append(metrics.pop("grad_norm"))
                    optimizer_steps += 1
                    tokens = metrics.pop("tokens")
                    totals["loss"] = totals.get("loss", 0.0) + metrics.pop("loss")
                    totals["tokens"] = totals.get("tokens", 0.0) + tokens
                    for key, value in metrics.items():
                        token_weighted[key] = token_weighted.get(key, 0.0) + value * tokens
        finally:
            self.policy.model.eval()
        tokens = max(1.0, totals.get("tokens", 0.0))
        result = {key: value / tokens for key, value in token_weighted.items()}
        result["loss"] = totals.get("loss", 0.0) / max(1, optimizer_steps)
        result["grad_norm"] = float(np.mean(grad_norms)) if grad_norms else 0.0
        result["optimizer_steps"] = optimizer_steps
        return result

    def _optimizer_step(self, batch: _Batch, part: list[int]) -> dict[str, float]:
        config = self.config
        # Normalisers of the whole minibatch over all processes: the sum of micro-batch losses
        # then equals the loss of one big batch, and the averaged gradient equals its gradient.
        counted = torch.tensor(
            [
                float(sum(batch.episodes[i].action_token_count for i in part if batch.episode_mask[i])),
                float(sum(bool(batch.episode_mask[i]) for i in part)),
            ]
        )
        token_count, sequence_count = distributed.sum_across_processes(counted).tolist()
        self.optimizer.zero_grad(set_to_none=True)
        summed: dict[str, float] = {}
        for chunk in self._micro_batches(part):
            episodes = [batch.episodes[i] for i in chunk]
            need_entropy = True
            scores = self._score(
                self.policy,
                episodes,
                entropy=need_entropy,
                distributions=self.score_distributions,
                hidden_states=self.score_hidden_states,
            )
            action_mask = scores.action_mask
            device = scores.logprobs.device
            advantages = batch.advantages[chunk].to(device)
            if advantages.dim() == 2:
                advantages = broadcast_to_tokens(advantages, scores.turn_index)
            loss, metrics = policy_loss(
                scores.logprobs.float(),
                _spread(batch.old_logprobs, chunk, action_mask),
                advantages,
                action_mask,
                self.loss_settings,
                episode_mask=batch.episode_mask[chunk].to(device),
                reference_logprobs=(
                    _spread(batch.reference_logprobs, chunk, action_mask)
                    if batch.reference_logprobs
                    else None
                ),
                entropy=scores.entropy.float() if scores.entropy is not None else None,
                token_count=token_count,
                sequence_count=sequence_count,
            )
            if self.auxiliary_loss is not None:
                extra, extra_metrics = self.auxiliary_loss(scores, episodes)
                loss = loss + extra
                metrics.update(extra_metrics)
            # Gradients are averaged over processes, so scale each process's share back up.
            (loss * self.world).backward()
            tokens = metrics["tokens"]
            summed["loss"] = summed.get("loss", 0.0) + metrics.pop("policy_loss") * self.world
            summed["tokens"] = summed.get("tokens", 0.0) + tokens
            for key, value in metrics.items():
                if key != "tokens":
                    summed[f"weighted/{key}"] = summed.get(f"weighted/{key}", 0.0) + value * tokens
        distributed.average_gradients(self.parameters)
        if config.max_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, config.max_grad_norm))
        else:
            grad_norm = float(
                torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in self.parameters if p.grad is not None])
                )
            )
        self.optimizer.step()
        # Report the loss of the global minibatch (the sum of all processes' shares).
        loss_total = distributed.sum_across_processes(torch.tensor(summed.pop("loss") / self.world)).item()
        tokens = summed.pop("tokens")
        result = {key.split("/", 1)[1]: value / max(1.0, tokens) for key, value in summed.items()}
        result.update(loss=loss_total, tokens=tokens, grad_norm=grad_norm)
        return result

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_root(self) -> Path:
        return self.directory / CHECKPOINTS

    def save_checkpoint(self) -> Path | None:
        """Write `checkpoints/step-N/` atomically (all processes' RNG states; rank 0 writes)."""
        import torch.distributed as dist
        from safetensors.torch import save_model

        states = [self._rng_state()]
        if self.world > 1:
            states = [None] * self.world
            dist.all_gather_object(states, self._rng_state())
        path = self.checkpoint_root / f"step-{self.step}"
        if self.rank == 0:
            with atomic_directory(path) as temporary:
                save_model(self.policy.model, str(temporary / "model.safetensors"))
                for index, module in enumerate(self.extra_modules):
                    save_model(module, str(temporary / f"extra-{index}.safetensors"))
                torch.save(
                    {
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "rng": states,
                    },
                    temporary / "training_state.pt",
                )
                atomic_write_json(
                    temporary / "trainer_state.json",
                    {
                        "step": self.step,
                        "world_size": self.world,
                        "source": self.source.state_dict(),
                        "history": self.history,
                    },
                )
            self._prune_checkpoints()
        if self.world > 1:
            dist.barrier()
        return path

    def _prune_checkpoints(self) -> None:
        found = self.list_checkpoints()
        for _, old in found[: max(0, len(found) - self.config.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        found = []
        if self.checkpoint_root.is_dir():
            for path in self.checkpoint_root.glob("step-*"):
                suffix = path.name.removeprefix("step-")
                if suffix.isdigit() and (path / "trainer_state.json").is_file():
                    found.append((int(suffix), path))
        return sorted(found)

    def resume(self, path: str | Path | None = None) -> bool:
        """Load the latest (or the given) checkpoint; False when there is none."""
        from safetensors.torch import load_model

        if path is None:
            found = self.list_checkpoints()
            if not found:
                return False
            path = found[-1][1]
        path = Path(path)
        state = read_json(path / "trainer_state.json")
        if state.get("world_size", 1) != self.world:
            raise ValueError(
                f"checkpoint {path} was written by {state.get('world_size')} processes; resume with as many "
                f"(this run has {self.world})"
            )
        load_model(self.policy.model, str(path / "model.safetensors"))
        for index, module in enumerate(self.extra_modules):
            load_model(module, str(path / f"extra-{index}.safetensors"))
        training = torch.load(path / "training_state.pt", weights_only=True)
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        self._set_rng_state(training["rng"][self.rank])
        self.source.load_state_dict(state["source"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        return True
