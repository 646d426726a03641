"""TTRV's part in `vlmrl demo --method ttrv` (the demo itself is `vlmrl/demo.py`).

The metric is the one TTRV's learning test measures: greedy accuracy on `shapes-recognition`
(one object per image; its shape, colour or material as a choice among A-D). The paper adapts
on the unlabeled test set itself and scores that same set. The demo adapts on unlabeled items
drawn from another seed and evaluates held-out ones, so its before/after figures say whether
what was learnt without labels carries over to items adaptation never saw (`vlmrl ttrv adapt`
runs the paper's setting).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlmrl.demo import DemoConfig

TASK = "shapes-recognition"
HELD_OUT_SEED_OFFSET = 1000  # held-out items come from the seed the harness's own tasks start at
# 2-3 s a step with 1 thread on the shared 2-core CPU: the whole demo took 2 minutes of its five.
DEMO_STEPS = 30
ITEMS_PER_STEP = 8  # episodes_per_step / samples below: the learning test's batch


def make_data(config: DemoConfig, data_directory: Path) -> list[Any]:
    """The held-out recognition items (generated from a seed, so nothing is written)."""
    from vlmrl.evals.builtin import shapes_recognition_task

    return [shapes_recognition_task(n=config.eval_size, seed=config.seed + HELD_OUT_SEED_OFFSET)]


def train(config: DemoConfig, run_directory: Path, callbacks: list[Callable[..., None]]) -> Path:
    """Adapt on unlabeled recognition items of the training seed; returns the model directory."""
    from vlmrl.ttrv.recipe import TTRVConfig, run_ttrv

    steps = config.steps or DEMO_STEPS
    # As many items as make the reference's two passes (EPISODE=2) in these steps.
    items = max(ITEMS_PER_STEP, steps * ITEMS_PER_STEP // 2)
    ttrv = TTRVConfig(
        model=config.model,
        task=TASK,
        task_options=[f"n={items}", f"seed={config.seed}"],
        out=str(run_directory),
        steps=steps,
        # The learning test's settings (tests/ttrv/test_ttrv_learning.py): 8 votes, 4 trained,
        # 8 items per step, lr 5e-4; its figures are the ones the README gives.
        votes=8,
        samples=4,
        episodes_per_step=ITEMS_PER_STEP * 4,
        micro_batch_size=64,
        learning_rate=5e-4,
        # The demo evaluates held-out items through the harness before and after; the recipe's
        # own evaluations would score the adaptation items, and cost the time twice.
        evaluation=False,
        self_consistency=False,
        seed=config.seed,
        threads=config.threads,
        checkpoint_every=0,  # a short run: the final model is all the demo reads
        save_samples_every=max(1, steps // 4),
    )
    run_ttrv(ttrv, callbacks=callbacks)
    return run_directory / "model"
