"""SAMTok's part in `vlmrl demo --method samtok`: a mask tokenizer, held-out referring
segmentation, and a short SFT + GRPO run of the recipe (`run_sft`, then `run_rl`).

No trained mask tokenizer ships with the suite (the package README says why), and the
held-out task needs one: its references are mask-token strings and the model's answers are
decoded back to masks through it. So the data step trains a short one into the demo's data
directory (or uses `samtok-tiny` when one ships). The metric is the recipe's own: refseg gIoU
(with cIoU, N-acc and the format rate) through the harness's `refseg` task, on scenes of 1-2
objects from seed + 1000; SFT and RL train on the seed's own scenes. On the tiny default this
shows the path, not a gain: the tiny does not know the mask tokens before SFT, and the short
tokenizer run collapses onto a few codes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_STEPS = 4  # RL steps when --steps is not given (the 5-minute budget; README figures)
# SFT steps before RL: the tiny default has never seen the mask tokens, and RL samples only
# what the policy already writes. In 40 steps of 16 the loss falls to about 1.4 and answers
# take the mask string's shape (its delimiters), not yet its codes; 80 steps reached 1.1.
DEMO_SFT_STEPS = 40
SFT_BATCH = 16
# Tokenizer steps, about 0.4 CPU-seconds each: 30 reach held-out reconstruction mIoU 0.42
# on 1-2 object scenes (seed 0); the recipe's 800-step run on 1-3 objects ended at 0.42 too.
DEMO_TOKENIZER_STEPS = 30
TOKENIZER_HELD_OUT_MASKS = 32  # its reconstruction mIoU, printed and saved with it
TOKENIZER_DIRECTORY = "samtok-tokenizer"
# Each refseg answer is generated, then decoded through the tokenizer when it parses: about
# twice a shapes question's cost, so the demo evaluates half of --eval-size examples.
EVAL_SIZE_DIVISOR = 2
MIN_EVAL_SIZE = 10  # the demo's own floor for meaningful intervals
RL_GROUP_SIZE = 4
RL_EPISODES_PER_STEP = 16  # 4 prompts x 4 samples: seconds per step on 2 cores


def eval_examples(eval_size: int) -> int:
    """Held-out refseg examples for the demo's --eval-size (see EVAL_SIZE_DIVISOR)."""
    return max(MIN_EVAL_SIZE, eval_size // EVAL_SIZE_DIVISOR)


def tokenizer_path(config: Any, data_directory: Path) -> Path:
    """The shipped tokenizer when there is one, else a short run trained here once."""
    from vlmrl.masktok.model import MaskTokenizer
    from vlmrl.masktok.train import TokenizerTrainConfig, train_tokenizer

    try:
        MaskTokenizer.load("samtok-tiny")
        return Path("samtok-tiny")
    except FileNotFoundError:
        pass
    directory = data_directory / TOKENIZER_DIRECTORY
    trained = directory / "tokenizer"
    if not (trained / "model.safetensors").is_file():
        train_tokenizer(
            TokenizerTrainConfig(
                out=str(directory),
                data_seed=config.seed,
                seed=config.seed,
                min_objects=1,  # the scenes the demo segments
                max_objects=2,
                steps=DEMO_TOKENIZER_STEPS,
                eval_size=TOKENIZER_HELD_OUT_MASKS,
                eval_every=0,
                checkpoint_every=0,  # a rerun of the demo starts over; nothing to resume
                threads=config.threads,
            )
        )
    return trained


def make_data(config: Any, data_directory: Path) -> list[Any]:
    """The held-out `refseg` task (gIoU, cIoU, N-acc) on scenes of 1-2 objects."""
    from vlmrl.masktok.recipe import RLConfig, held_out, load_tokenizer, refseg_task

    tokenizer = load_tokenizer(str(tokenizer_path(config, data_directory)))
    settings = RLConfig(eval_size=eval_examples(config.eval_size), data_seed=config.seed)
    return [refseg_task(tokenizer, held_out(tokenizer, settings, understanding=False))]


def train(config: Any, run_directory: Path, callbacks: list[Callable[..., None]]) -> Path:
    """SFT on mask-token conversations (run/sft), then GRPO with answer matching (run/)."""
    from vlmrl.masktok.recipe import RLConfig, SFTConfig, run_rl, run_sft

    tokenizer = str(tokenizer_path(config, run_directory / "data"))
    steps = config.steps or DEMO_STEPS
    sft_directory = run_directory / "sft"
    run_sft(
        SFTConfig(
            model=config.model,
            tokenizer=tokenizer,
            out=str(sft_directory),
            steps=DEMO_SFT_STEPS,
            batch_size=SFT_BATCH,
            warmup_steps=1,  # the default 20 is longer than the whole demo SFT
            # Each example once: encoding the recipe's 4000 through the tokenizer costs minutes.
            train_size=DEMO_SFT_STEPS * SFT_BATCH,
            eval_size=0,  # the demo evaluates through the harness, before and after
            data_seed=config.seed,
            seed=config.seed,
            threads=config.threads,
        )
    )
    run_rl(
        RLConfig(
            model=str(sft_directory / "model"),
            tokenizer=tokenizer,
            out=str(run_directory),
            steps=steps,
            episodes_per_step=RL_EPISODES_PER_STEP,
            group_size=RL_GROUP_SIZE,
            micro_batch_size=RL_EPISODES_PER_STEP,
            # Prompts are encoded once up front: as many as the steps consume.
            train_size=steps * RL_EPISODES_PER_STEP // RL_GROUP_SIZE,
            eval_size=0,
            save_samples_every=1,  # every step's mask replays feed the report
            data_seed=config.seed,
            seed=config.seed,
            threads=config.threads,
        ),
        callbacks=callbacks,
    )
    return run_directory / "model"
