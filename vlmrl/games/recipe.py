"""Recipe: Vision-Zero, "Who is the spy" self-play on image pairs with Iterative-SPO.

Read top to bottom: image pairs (train, and held-out pairs never trained on) -> the model ->
held-out evaluation before (spy identification on held-out games, shapes QA on the same scene
sizes) through `vlmrl.evals` -> the game source (one policy in every seat; rewards from the
game; role baselines for clues, group-normalised decisions; the phase schedule) -> the shared
`Trainer` -> the same evaluation after -> results.json and the trained model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig


@dataclass
class VisionZeroConfig(TrainerConfig):
    """Vision-Zero: spy-game self-play with Iterative-SPO (defaults: the CPU miniature on tiny)."""

    model: str = option("tiny", help="Model: 'tiny', a local directory or a hub id.")
    pairs: str = option(
        "shapes",
        help="Image pairs: 'shapes', 'charts', a `vlmrl data pairs` output directory, or a folder of your images.",
    )
    out: str = option("runs/vision-zero", help="Run directory (metrics, checkpoints, samples, eval, model/).")
    train_pairs: int = option(
        4096, help="Training pairs (generated sources: how many; a directory: first N)."
    )
    eval_games: int = option(
        100,
        help="Held-out games (pairs never trained on) for spy identification (0: skip, e.g. when the harness evaluates).",
    )
    eval_questions: int = option(200, help="Held-out shapes-QA questions before and after (0: skip).")
    data_seed: int = option(0, help="Seed of the training pairs; held-out pairs use data_seed + 1.")
    resolution: int = option(168, help="Side of generated images in pixels.")
    min_objects: int = option(1, help="shapes pairs and QA: fewest objects per scene.")
    max_objects: int = option(2, help="shapes pairs and QA: most objects per scene.")
    edits: str = option(
        "recolor",
        help="shapes edits, comma-separated: recolor, reshape, remove, add, move, replace (two objects).",
    )
    max_side: int = option(512, help="Images from a folder are shrunk to this longer side.")
    players: int = option(4, help="Players per game (one of them the spy).")
    rounds: int = option(2, help="Clue rounds per game.")
    decision: str = option(
        "observer", help="Decision stage: 'observer' (the reference code) or 'players' (the paper's votes)."
    )
    group_size: int = option(8, help="G: observer decisions sampled per game (the decision group).")
    prompt_style: str = option(
        "short",
        help="'short': the instructions tiny was pretrained on; 'reference': the full Vision-Zero prompts.",
    )
    clue_tokens: int = option(24, help="Most new tokens per clue turn.")
    decision_tokens: int = option(16, help="Most new tokens per decision.")
    top_p: float = option(1.0, help="Nucleus sampling (below 1 implies recomputed old log-probs).")
    clue_beta: float = option(0.1, help="Clue reward beta: weight of the votes on the spy (zero-sum).")
    clue_lambda: float = option(0.1, help="Clue reward lambda: penalty on a civilian's extra votes.")
    role_alpha: float = option(0.9, help="EMA coefficient of the per-role clue baselines.")
    min_reasoning_chars: int = option(
        0,
        help="Decision format reward needs more reasoning characters than this before the answer (reference: 10).",
    )
    phase_mode: str = option(
        "fixed", help="Iterative-SPO switch: 'fixed' (reference code) or 'adaptive' (paper)."
    )
    cycle_length: int = option(1, help="fixed: L decision steps then L clue steps, repeated.")
    window: int = option(64, help="adaptive: decisions in the accuracy / N/A window.")
    accuracy_high: float = option(0.6, help="adaptive: go to clue training at this window accuracy or above.")
    accuracy_low: float = option(0.4, help="adaptive: back to decision training below this window accuracy.")
    abstain_max: float = option(0.2, help="adaptive: go to clue training only with an N/A rate at most this.")
    save_games_every: int = option(5, help="Save whole games to samples/games/ every N steps (0: never).")
    lora_rank: int = option(0, help="LoRA rank (0: full fine-tuning).")
    threads: int = option(0, help="torch threads (0: torch's default).")
    # Defaults suited to the tiny model on a CPU; the bundled configs set the paper's.
    steps: int = option(40, help="Training steps (one batch of games + update each).")
    episodes_per_step: int = option(
        64, help="Episodes per step: games x (N*R clue turns in clue steps, G decisions in decision steps)."
    )
    micro_batch_size: int = option(32, help="Episodes per forward/backward pass.")
    learning_rate: float = option(2e-5, help="Peak AdamW learning rate.")
    temperature: float = option(0.8, help="Sampling temperature of every turn (scoring divides by it too).")
    max_length: int = option(24, help="The constant of token_sum_norm (set it to the longest turn).")
    checkpoint_every: int = option(10, help="Write a checkpoint every N steps (0: only at the end).")
    save_samples_every: int = option(5, help="Save the step's trained episodes to samples/ every N steps.")

    def validate(self) -> None:
        super().validate()
        from vlmrl.games.schedule import MODES

        if self.phase_mode not in MODES:
            raise ValueError(f"--phase-mode {self.phase_mode!r}: expected one of {MODES}")
        settings = game_settings(self)
        settings.validate()
        for phase, per_game in (
            ("clue", self.players * self.rounds),
            ("decision", settings.decisions_per_game()),
        ):
            if self.episodes_per_step % per_game:
                raise ValueError(
                    f"--episodes-per-step {self.episodes_per_step} must be a multiple of the {per_game} "
                    f"episodes a game gives in a {phase} step"
                )


def game_settings(config: VisionZeroConfig):
    from vlmrl.games.engine import GameSettings

    return GameSettings(
        players=config.players,
        rounds=config.rounds,
        decision=config.decision,
        decision_samples=config.group_size,
        style=config.prompt_style,
        clue_tokens=config.clue_tokens,
        decision_tokens=config.decision_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        beta=config.clue_beta,
        lam=config.clue_lambda,
        min_reasoning_chars=config.min_reasoning_chars,
        role_alpha=config.role_alpha,
    )


def pair_pools(config: VisionZeroConfig):
    """(training pairs, held-out pairs): generated ones differ by seed (held out: data_seed + 1);
    without held-out games (`eval_games` 0) the second is None."""
    from vlmrl.games.engine import PairPool

    edits = tuple(e.strip() for e in config.edits.split(",") if e.strip())
    common = dict(
        resolution=config.resolution,
        min_objects=config.min_objects,
        max_objects=config.max_objects,
        edits=edits,
        max_side=config.max_side,
    )
    train = PairPool(config.pairs, config.data_seed, config.train_pairs, **common)
    held_out = (
        PairPool(config.pairs, config.data_seed + 1, config.eval_games, **common)
        if config.eval_games
        else None
    )
    return train, held_out


def held_out_spy_game_task(config: VisionZeroConfig, held_out: Any) -> Any:
    """Held-out spy identification: `eval_games` games on pairs training never sees."""
    from vlmrl.games.evaluation import spy_game_task

    return spy_game_task(held_out, game_settings(config), config.eval_games, config.data_seed + 1)


def evaluate_model(
    policy: Any, config: VisionZeroConfig, held_out: Any, out_dir: Path
) -> dict[str, Any] | None:
    """Held-out spy identification (and shapes QA on the same scene sizes) through vlmrl.evals;
    None when both are switched off."""
    from vlmrl.evals import evaluate
    from vlmrl.evals.builtin import shapes_qa_task

    tasks = [held_out_spy_game_task(config, held_out)] if held_out is not None else []
    if config.eval_questions:
        tasks.append(
            shapes_qa_task(
                config.eval_questions,
                resolution=config.resolution,
                min_objects=config.min_objects,
                max_objects=max(2, config.max_objects),
            )
        )
    if not tasks:
        return None
    results = evaluate(policy, tasks, out_dir=out_dir, batch_size=50, seed=config.seed, show_progress=False)
    summary = {}
    for name, task in results["tasks"].items():
        summary[name] = {**task["metrics"], "interval": task["intervals"].get(task["primary_metric"])}
    return summary


def run_vision_zero(
    config: VisionZeroConfig, callbacks: Sequence[Callable[..., None]] = ()
) -> dict[str, Any]:
    """Train; `callbacks(trainer, metrics)` run after every step (e.g. to refresh a report)."""
    import torch

    from vlmrl.games.schedule import PhaseSchedule
    from vlmrl.games.source import GameSource, given_advantages
    from vlmrl.model import VLM, LoraSettings
    from vlmrl.rl.distributed import is_main_process
    from vlmrl.rl.trainer import Trainer
    from vlmrl.runs import atomic_write_json, read_json, save_run_config

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.top_p < 1.0:
        config.recompute_old_logprobs = True  # the sampler's truncated log-probs are not the policy's
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)

    # 1. Data: training pairs and held-out pairs that training never sees.
    train_pairs, held_out_pairs = pair_pools(config)

    # 2. The model, and the held-out figures before training (kept across a resume).
    lora = LoraSettings(rank=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
    policy = VLM.load(config.model, lora=lora)
    results_path = directory / "results.json"
    before = read_json(results_path).get("before") if results_path.is_file() else None
    if before is None:
        before = evaluate_model(policy, config, held_out_pairs, directory / "eval" / "before")
        if before is not None and is_main_process():
            atomic_write_json(results_path, {"before": before})

    # 3. Self-play: games as a rollout source, phases by the Iterative-SPO schedule.
    schedule = PhaseSchedule(
        config.phase_mode,
        config.cycle_length,
        config.window,
        config.accuracy_high,
        config.accuracy_low,
        config.abstain_max,
    )
    source = GameSource(
        train_pairs,
        game_settings(config),
        schedule,
        seed=config.data_seed,
        samples_directory=directory / "samples",
        save_games_every=config.save_games_every,
    )

    # 4. Train with the shared trainer: rewards come from the games, advantages from the source
    #    (clues: reward minus the role's EMA baseline; decisions: normalised over the G samples).
    trainer = Trainer(
        policy, source, config, directory, advantage_function=given_advantages, callbacks=callbacks
    )
    history = trainer.fit()

    # 5. The same evaluation after, and the trained model.
    after = evaluate_model(policy, config, held_out_pairs, directory / "eval" / "after")
    results = {
        "before": before,
        "after": after,
        "spy_accuracy_gain": _change(before, after, "spy-game"),
        "shapes_qa_change": _change(before, after, "shapes-qa"),
        "steps": trainer.step,
        "phase_switches": schedule.switches[-50:],
        "final_reward_mean": history[-1]["reward_mean"] if history else None,
    }
    if is_main_process():
        atomic_write_json(results_path, results)
        policy.save(directory / "model")
    return results


def _change(before: dict[str, Any] | None, after: dict[str, Any] | None, task: str) -> float | None:
    """after - before of a task's accuracy, or None when it was not evaluated."""
    if before is None or after is None or task not in before or task not in after:
        return None
    return after[task]["accuracy"] - before[task]["accuracy"]
