"""Mini-o3's part in `vlmrl demo --method mini-o3`: held-out mini-probe records, and a short
cold start + GRPO run of the recipe (`run_mini_o3`) on the demo's model.

The metric is the recipe's own: greedy mini-probe accuracy at the test-time turn budget (with
the accuracy-against-budget curve), through the harness task `probe_task` builds. Held-out
records use seed + 1000, the training and cold-start records the seed itself, as in the
recipe. On the tiny default this shows the path, not a gain: after the cold start the tiny
writes grounding calls whose JSON is still garbled, so RL sees no reward yet (the package
README has the figures).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

# RL steps when --steps is not given; with the cold start below, the whole demo stays within
# its 5-minute budget on 2 cores (measured figures in the package README).
DEMO_STEPS = 2
# The learning test's cold start (60 steps of 8 trajectories, about 1.5 CPU-seconds a step):
# after it the tiny writes the search's shape (a think, then a grounding call, still garbled),
# which the report's trajectories show; after 6 steps it answered at once or wrote fragments.
DEMO_COLDSTART_STEPS = 60
# A mini-probe record is a multi-turn search (up to DEMO_EVAL_TURNS turns of up to 96 new
# tokens each, every turn re-reading the canvas and the crops so far), several times the
# cost of one shapes question: the demo evaluates a quarter of --eval-size records.
EVAL_SIZE_DIVISOR = 4
MIN_EVAL_SIZE = 10  # the demo's own floor for meaningful intervals
TRAINING_TURNS = 3  # the learning test's training budget (the recipe's 6 costs twice the time)
DEMO_EVAL_TURNS = 2 * TRAINING_TURNS  # test at twice the training budget, as the learning test


def eval_records(eval_size: int) -> int:
    """Held-out mini-probe records for the demo's --eval-size (see EVAL_SIZE_DIVISOR)."""
    return max(MIN_EVAL_SIZE, eval_size // EVAL_SIZE_DIVISOR)


def demo_config(config: Any, run_directory: Path, *, eval_size: int = 0) -> Any:
    """The recipe's config for the demo: the tiny-scale defaults, except where commented."""
    from vlmrl.toolloop.recipe import MiniO3Config

    steps = config.steps or DEMO_STEPS
    return MiniO3Config(
        model=config.model,
        out=str(run_directory),
        data_seed=config.seed,
        seed=config.seed,
        threads=config.threads,
        steps=steps,
        # The demo evaluates before and after through the harness itself; the recipe's own
        # evaluation (eval_size > 0) is used only to describe the held-out task.
        eval_size=eval_size,
        eval_samples=0,  # greedy: sampled Avg@k would multiply the evaluation's cost by k
        eval_turns=DEMO_EVAL_TURNS,
        curve_budgets=f"1,2,{TRAINING_TURNS},{DEMO_EVAL_TURNS}",
        max_turns=TRAINING_TURNS,
        coldstart_steps=DEMO_COLDSTART_STEPS,
        coldstart_batch=8,  # the learning test's batch; the default 16 doubles each step
        # 4 records x 4 trajectories per step (the learning test's group size): the default
        # 64 episodes cost about a minute per step on 2 cores.
        episodes_per_step=16,
        group_size=4,
        learning_rate=1e-4,  # the learning test's rate: a handful of steps must move the policy
        # One sampling round: regenerating uninformative groups (the default allows 3 rounds)
        # would triple a step's cost when, as on the tiny after a short cold start, every
        # reward is 0; the dropped groups are then topped up and the counts still logged.
        max_sampling_rounds=1,
        save_samples_every=1,  # every step's trajectories feed the report's replays
    )


def make_data(config: Any, data_directory: Path) -> list[Any]:
    """The held-out mini-probe task (greedy accuracy at the test-time turn budget)."""
    from vlmrl.runs import atomic_write_json
    from vlmrl.toolloop.data import probe_records
    from vlmrl.toolloop.recipe import probe_task

    mini_o3 = demo_config(config, data_directory, eval_size=eval_records(config.eval_size))
    task = probe_task(mini_o3, samples=0)
    # The records are generated from the seed on demand; this listing shows what was asked.
    records = probe_records(mini_o3.eval_size, task.settings["seed"], mini_o3.difficulty_list, mini_o3.tile)
    atomic_write_json(
        data_directory / "mini-probe-held-out.json",
        {
            "task": task.name,
            "settings": task.settings,
            "records": [
                {key: record[key] for key in ("id", "difficulty", "question", "answer", "target_tile")}
                for record in records
            ],
        },
    )
    return [task]


def train(config: Any, run_directory: Path, callbacks: list[Callable[..., None]]) -> Path:
    """Cold start then GRPO with the tool loop; returns the trained model's directory."""
    from vlmrl.toolloop.recipe import run_mini_o3

    run_mini_o3(demo_config(config, run_directory), callbacks=callbacks)
    return run_directory / "model"
