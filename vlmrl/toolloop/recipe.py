"""Recipe: Mini-o3, deep multi-turn visual search with a grounding tool and over-turn masking.

Read top to bottom:
1. data: the mini-probe task (`vlmrl.toolloop.data`), train and test splits by seed;
2. cold start: multi-turn SFT trajectories (direct search, trial and error, depth-first
   refinement, goal maintenance) trained through the shared SFT loop, vision tower frozen;
3. RL: GRPO through the shared `Trainer` on episodes of the one tool loop
   (`vlmrl.evals.interactive.run_tool_loop`): reward = answer accuracy, clip 0.2 / 0.3,
   token-mean, no KL, over-turn episodes masked out of the loss (`mask_truncated`) but kept in
   their group's statistics, tool observations never actions (`vlm.score`'s action_mask),
   dynamic sampling in the rollout source;
4. evaluation through the harness (`vlmrl.evals.evaluate`, bootstrap intervals), sampled
   Avg@k as the paper reports and greedy, and accuracy against the test-time turn budget,
   saved as results.json and a plot.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig


@dataclass
class MiniO3Config(TrainerConfig):
    """Mini-o3: cold-start SFT then GRPO with a multi-turn grounding tool (defaults: tiny on a CPU)."""

    model: str = option("tiny", help="Model: 'tiny', a local directory or a hub id.")
    out: str = option("runs/mini-o3", help="Run directory (metrics, checkpoints, samples, eval, model/).")
    difficulties: str = option(
        "easy,medium", help="Mini-probe difficulties trained and tested (easy, medium, hard)."
    )
    tile: int = option(168, help="Mini-probe tile side in pixels (the canvas is grid x tile).")
    data_seed: int = option(0, help="Seed of the training records; test records use data_seed + 1000.")
    eval_size: int = option(
        48,
        help="Held-out test records (0: no evaluation, e.g. when `vlmrl demo` evaluates through the harness).",
    )
    eval_samples: int = option(
        4, help="Sampled episodes per test record for Avg@k (the paper's Avg@32); 0: greedy only."
    )
    eval_turns: int = option(12, help="Test-time turn budget (the reference evaluates with 12).")
    curve_budgets: str = option(
        "1,2,3,4,6,8,12,16", help="Test-time turn budgets of the accuracy curve (the largest is run)."
    )
    # cold start
    coldstart_steps: int = option(
        60, help="Cold-start SFT steps (0: skip, e.g. when --model is already SFT'd)."
    )
    coldstart_batch: int = option(16, help="Trajectories per cold-start step.")
    coldstart_learning_rate: float = option(
        1e-3, help="Cold-start peak learning rate (reference 1e-5 on 7B)."
    )
    coldstart_patterns: str = option(
        "0.5,0.25,0.25", help="Weights of direct search, trial and error, depth-first refinement."
    )
    # the tool loop
    max_turns: int = option(6, help="Assistant turns per training episode (reference 6).")
    max_images: int = option(12, help="Images per episode, the original included (reference 12).")
    context_budget: int = option(2048, help="Token budget of a whole episode (reference 32768).")
    context_margin: int = option(
        64, help="A call within this many tokens of the budget is over-turn (reference 2000)."
    )
    max_new_tokens: int = option(96, help="Most tokens per assistant turn (reference 8192).")
    tool_tokens: bool = option(
        True,
        help="Add <grounding> and </grounding> to the vocabulary as single tokens (the tiny's tokenizer "
        "splits them into five pieces each, slow to learn); the reference keeps Qwen's tokenizer as is.",
    )
    min_pixels: int = option(3136, help="Crop pixel floor (reference 40,000).")
    max_pixels: int = option(28224, help="Crop pixel ceiling (reference 2,000,000).")
    # reward and sampling
    group_size: int = option(8, help="Trajectories per record (GRPO group; reference 16).")
    accuracy_weight: float = option(1.0, help="Weight of answer accuracy (reference 1).")
    format_weight: float = option(0.0, help="Weight of the format check (reference 0).")
    tool_penalty: float = option(0.0, help="Reward scale-down when a tool was used (reference 0).")
    dynamic_sampling: bool = option(True, help="Drop groups whose rewards do not vary and sample more.")
    max_sampling_rounds: int = option(3, help="Most sampling rounds per step under dynamic sampling.")
    threads: int = option(0, help="torch threads (0: torch's default).")
    # Trainer defaults for the miniature; the reference's are in configs/qwen2.5-vl-7b.yaml.
    steps: int = option(12, help="RL steps (one collect + update each).")
    episodes_per_step: int = option(64, help="Episodes per RL step (records x group size).")
    micro_batch_size: int = option(16, help="Episodes per forward/backward pass.")
    learning_rate: float = option(2e-5, help="RL peak learning rate (reference 1e-6 on 7B).")
    epsilon_high: float = option(0.3, help="PPO clip range above 1 (reference 0.3).")
    mask_truncated: bool = option(True, help="Over-turn masking: over-turn episodes leave the loss.")
    save_samples_every: int = option(
        5, help="Save the step's episodes (with replays) to samples/ every N steps."
    )
    max_length: int = option(96, help="token_sum_norm constant (unused with token_mean).")

    def validate(self) -> None:
        super().validate()
        from vlmrl.toolloop.data import DIFFICULTY

        for name in self.difficulty_list:
            if name not in DIFFICULTY:
                raise ValueError(
                    f"--difficulties: unknown difficulty {name!r}; expected some of {tuple(DIFFICULTY)}"
                )
        if self.eval_size < 0:
            raise ValueError(f"--eval-size must be >= 0, got {self.eval_size}")
        if self.episodes_per_step % self.group_size:
            raise ValueError(
                f"--episodes-per-step {self.episodes_per_step} must be a multiple of --group-size {self.group_size}"
            )
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"--curve-budgets must be positive integers, got {self.curve_budgets!r}")
        if len(self.pattern_weights) != 3 or min(self.pattern_weights) < 0 or sum(self.pattern_weights) <= 0:
            raise ValueError(
                f"--coldstart-patterns needs three non-negative weights, got {self.coldstart_patterns!r}"
            )

    @property
    def difficulty_list(self) -> tuple[str, ...]:
        return tuple(d.strip() for d in self.difficulties.split(",") if d.strip())

    @property
    def budgets(self) -> list[int]:
        try:
            return sorted({int(b) for b in self.curve_budgets.split(",") if b.strip()})
        except ValueError as error:
            raise ValueError(f"--curve-budgets must be integers, got {self.curve_budgets!r}") from error

    @property
    def pattern_weights(self) -> tuple[float, ...]:
        try:
            return tuple(float(w) for w in self.coldstart_patterns.split(","))
        except ValueError as error:
            raise ValueError(
                f"--coldstart-patterns must be numbers, got {self.coldstart_patterns!r}"
            ) from error


def loop_limits(config: MiniO3Config, max_turns: int | None = None) -> Any:
    from vlmrl.evals.interactive import LoopLimits

    return LoopLimits(
        max_turns=max_turns or config.max_turns,
        max_images=config.max_images,
        context_budget=config.context_budget,
        context_margin=config.context_margin,
        stop_at_calls=True,
    )


def load_policy(config: MiniO3Config) -> Any:
    import torch

    from vlmrl.model import VLM

    if config.threads:
        torch.set_num_threads(config.threads)
    policy = VLM.load(config.model)
    if config.tool_tokens:
        from vlmrl.toolloop.grounding import GROUNDING_CLOSE, GROUNDING_OPEN

        # Existing tokens keep their ids (a saved cold-start model already has them).
        policy.add_tokens([GROUNDING_OPEN, GROUNDING_CLOSE])
    return policy


# ----------------------------------------------------------------------------- cold start


def coldstart_batches(config: MiniO3Config):
    from vlmrl.toolloop.data import coldstart_conversations
    from vlmrl.toolloop.grounding import GroundingTool

    tool = GroundingTool(config.min_pixels, config.max_pixels)

    def batch_for_step(step: int) -> list:
        return coldstart_conversations(
            config.coldstart_batch,
            config.data_seed,
            config.difficulty_list,
            tool,
            config.tile,
            config.pattern_weights,
            start=step * config.coldstart_batch,
        )

    return batch_for_step


def write_coldstart(config: MiniO3Config, count: int) -> Path:
    """Write `count` cold-start trajectories as episodes (JSONL + PNG) under out/coldstart/."""
    from vlmrl.rl.episode import Episode, Turn, save_episodes

    batch = coldstart_batches(dataclasses.replace(config, coldstart_batch=count))(0)
    episodes = []
    for messages in batch:
        texts = [m["content"][0]["text"] for m in messages if m["role"] == "assistant"]
        episodes.append(
            Episode(messages=messages, turns=[Turn([], [], t) for t in texts], info={"kind": "coldstart"})
        )
    return save_episodes(episodes, Path(config.out) / "coldstart" / "trajectories.jsonl")


def run_coldstart_sft(policy: Any, config: MiniO3Config) -> list[dict[str, Any]]:
    """Cold-start SFT through the shared loop, the vision tower (and merger) frozen, as the reference."""
    from vlmrl.rl.sft import SFTSettings, train_sft
    from vlmrl.runs import MetricsLogger

    frozen = policy.freeze_vision()
    logger = MetricsLogger(Path(config.out) / "coldstart", tensorboard=False)
    try:
        history = train_sft(
            policy,
            coldstart_batches(config),
            SFTSettings(
                steps=config.coldstart_steps,
                learning_rate=config.coldstart_learning_rate,
                warmup_steps=max(1, config.coldstart_steps // 10),
                seed=config.seed,
                log_every=10,
            ),
            log=logger.log,
            progress_description="cold start",
        )
    finally:
        logger.close()
    for parameter in frozen:
        parameter.requires_grad_(True)
    return history


# ----------------------------------------------------------------------------- evaluation


def probe_task(config: MiniO3Config, samples: int) -> Any:
    """The mini-probe test split as a harness task (one doc per record and sample)."""
    from vlmrl.evals.metrics import mean_metrics
    from vlmrl.evals.tasks import Interaction, Task
    from vlmrl.toolloop.data import probe_records
    from vlmrl.toolloop.rollout import budget_curve, default_tools, search

    budgets = config.budgets
    turns = max(max(budgets), config.eval_turns)
    limits = dataclasses.replace(loop_limits(config, turns), max_images=max(config.max_images, turns + 1))
    tools = default_tools(config.min_pixels, config.max_pixels)
    copies = max(1, samples)

    def docs(limit: int | None) -> list[dict[str, Any]]:
        records = probe_records(
            config.eval_size, config.data_seed + 1000, config.difficulty_list, config.tile
        )
        return [{**r, "id": f"{r['id']}#{k}", "record_id": r["id"]} for r in records for k in range(copies)]

    def interact(vlm: Any, batch: list[dict[str, Any]], sampling: Any) -> list[Interaction]:
        trajectories = search(vlm, batch, sampling, tools, limits)
        results = []
        for doc, trajectory in zip(batch, trajectories):
            curve = budget_curve([trajectory], [doc["answer"]], sorted({*budgets, config.eval_turns}))
            score = {
                "accuracy": curve[config.eval_turns],  # at the test-time budget
                **{f"accuracy@{b}": curve[b] for b in budgets},
                "answered": float(trajectory.answer is not None),
                "turns": float(trajectory.turns),
                "tool_calls": float(trajectory.calls),
                "tool_failures": float(trajectory.tool_failures),
                "overturn": float(trajectory.overturn),
                "difficulty": doc["difficulty"],
            }
            transcript = {"turns": [g.text for g in trajectory.generations], "steps": trajectory.steps}
            results.append(Interaction(json.dumps(transcript), score))
        return results

    def aggregate(scores: list[dict[str, Any]]) -> dict[str, float]:
        grouped = ("accuracy", *(f"accuracy@{b}" for b in budgets))
        return mean_metrics(scores, group_key="difficulty", grouped=grouped)

    return Task(
        name="mini-probe" if samples == 0 else f"mini-probe-avg{copies}",
        docs=docs,
        interact=interact,
        aggregate=aggregate,
        max_new_tokens=config.max_new_tokens,
        description=f"mini visual probe ({config.difficulties}), {turns}-turn search",
        settings={
            "eval_size": config.eval_size,
            "seed": config.data_seed + 1000,
            "difficulties": config.difficulties,
            "tile": config.tile,
            "turns": turns,
            "budgets": budgets,
        },
    )


def evaluate_probe(policy: Any, config: MiniO3Config, name: str) -> dict[str, Any]:
    """Greedy and sampled (Avg@k) mini-probe accuracy with the budget curve, via the harness."""
    from vlmrl.evals import evaluate
    from vlmrl.model import SamplingParams

    out = Path(config.out) / "eval" / name
    summary: dict[str, Any] = {}
    runs = [("greedy", 0, None)]
    if config.eval_samples > 0:
        sampling = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=1.0, seed=config.seed)
        runs.append(("sampled", config.eval_samples, sampling))
    for label, samples, sampling in runs:
        task = probe_task(config, samples)
        results = evaluate(
            policy,
            [task],
            out_dir=out / label,
            sampling=sampling,
            batch_size=64,
            seed=config.seed,
            show_progress=False,
        )
        metrics = results["tasks"][task.name]["metrics"]
        summary[label] = {
            "accuracy": metrics["accuracy"],
            "interval": results["tasks"][task.name]["intervals"].get("accuracy"),
            "curve": {str(b): metrics[f"accuracy@{b}"] for b in config.budgets},
            "by_difficulty": {d: metrics.get(f"accuracy/{d}") for d in config.difficulty_list},
            "tool_calls": metrics.get("tool_calls"),
            "overturn": metrics.get("overturn"),
            "turns": metrics.get("turns"),
        }
    return summary


def plot_curves(results: dict[str, Any], path: Path, training_turns: int) -> Path | None:
    """Accuracy against the test-time turn budget, one line per evaluated model and decoding."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional; results.json has the numbers
        return None
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for stage in ("after_sft", "after_rl", "model"):
        for label in ("sampled", "greedy"):
            curve = results.get(stage, {}).get(label, {}).get("curve")
            if curve:
                budgets = sorted(int(b) for b in curve)
                axis.plot(budgets, [curve[str(b)] for b in budgets], marker="o", label=f"{stage} ({label})")
    axis.axvline(training_turns, color="gray", linestyle=":", label="training budget")
    axis.set_xlabel("test-time turn budget")
    axis.set_ylabel("accuracy")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------- the whole run


def run_mini_o3(config: MiniO3Config, callbacks: Sequence[Callable[..., None]] = ()) -> dict[str, Any]:
    """Cold start (unless skipped) -> eval -> GRPO with the tool loop -> eval -> results.json.

    `callbacks(trainer, metrics)` run after every RL step (e.g. to refresh a report); with
    `eval_size=0` nothing is evaluated (the caller evaluates through the harness itself)."""
    from vlmrl.model import SamplingParams
    from vlmrl.rl.trainer import RewardFunction, Trainer
    from vlmrl.runs import atomic_write_json, read_json, save_run_config
    from vlmrl.toolloop.data import probe_record
    from vlmrl.toolloop.rollout import ProbeSource, default_tools, make_reward

    config.validate()
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    policy = load_policy(config)
    results_path = directory / "results.json"
    results: dict[str, Any] = read_json(results_path) if results_path.is_file() else {}

    # 1-2. cold start, then the starting point of RL (kept when a run resumes).
    sft_model = directory / "sft-model"
    if config.coldstart_steps > 0:
        if (sft_model / "config.json").is_file():
            policy = load_policy(dataclasses.replace(config, model=str(sft_model)))
        else:
            results["coldstart"] = run_coldstart_sft(policy, config)[-1:]
            policy.save(sft_model)
    evaluating = config.eval_size > 0
    if evaluating and "after_sft" not in results:
        results["after_sft"] = evaluate_probe(policy, config, "after-sft")
        atomic_write_json(results_path, results)

    # 3. GRPO on tool-loop episodes.
    difficulties = config.difficulty_list
    reward = make_reward(config.accuracy_weight, config.format_weight, config.tool_penalty)
    source = ProbeSource(
        lambda i: probe_record(i, config.data_seed, difficulties[i % len(difficulties)], config.tile),
        config.group_size,
        SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature),
        default_tools(config.min_pixels, config.max_pixels),
        loop_limits(config),
        reward,
        dynamic_sampling=config.dynamic_sampling,
        max_rounds=config.max_sampling_rounds,
    )
    trainer = Trainer(
        policy,
        source,
        config,
        directory,
        rewards=[RewardFunction("accuracy", reward, 1.0, per_episode=True)],
        callbacks=callbacks,
    )
    history = trainer.fit()

    # 4. evaluation after RL, the curve, and the trained model.
    if evaluating:
        results["after_rl"] = evaluate_probe(policy, config, "after-rl")
        primary = "sampled" if config.eval_samples > 0 else "greedy"
        results["primary"] = primary
        results["gain"] = results["after_rl"][primary]["accuracy"] - results["after_sft"][primary]["accuracy"]
        results["greedy_gain"] = (
            results["after_rl"]["greedy"]["accuracy"] - results["after_sft"]["greedy"]["accuracy"]
        )
    results["steps"] = trainer.step
    results["overturn_rate"] = [h.get("rollout/overturn_rate") for h in history]
    atomic_write_json(results_path, results)
    if evaluating:
        plot_curves(results, directory / "budget_curve.png", config.max_turns)
    policy.save(directory / "model")
    return results


def run_eval(config: MiniO3Config) -> dict[str, Any]:
    """Evaluate `config.model` on the mini-probe test split: accuracy and the budget curve."""
    from vlmrl.runs import atomic_write_json

    policy = load_policy(config)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    results = {"model": evaluate_probe(policy, config, "model")}
    atomic_write_json(directory / "results.json", results)
    plot_curves(results, directory / "budget_curve.png", config.max_turns)
    return results
