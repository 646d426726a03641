"""One phase of a bundled config's dry run, run as its own process by test_bundled_configs.py.

    python tests/realscale/dry_run.py YAML MODELS OUT STEPS

Loads the YAML into its method's config, keeps its own settings except the model (the shrunk
real architecture under MODELS, see `shrunk_models`) and the sizes (batch, tokens, evaluation)
cut down by `CUTS`, trains to STEPS (resuming from OUT's checkpoint when there is one), then
loads the saved model and generates.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

# The real model a bundled config's model id names (fine-tunes share their base's shapes).
REAL_MODELS = {
    "Qwen/Qwen2.5-VL-7B-Instruct": "Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen2.5-VL-3B-Instruct": "Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2-VL-7B-Instruct": "Qwen2-VL-7B-Instruct",
    "OpenGVLab/InternVL3-2B-hf": "InternVL3-2B",
    "Mini-o3/Mini-o3-7B-SFT": "Qwen2.5-VL-7B-Instruct",
}

# Sizes cut down in every config that has the field; the rest of the settings are the config's.
CUTS: dict[str, Any] = {
    "ppo_epochs": 1,
    "minibatches": 1,
    "micro_batch_size": 2,
    "max_new_tokens": 8,
    "max_length": 8,
    "checkpoint_every": 1,
    "save_samples_every": 1,
    "threads": 1,
    "eval_size": 0,
    "eval_episodes": 0,
    "format_warmup_steps": 0,
    "warmup_steps": 0,
}


def _vldac():
    from vlmrl.vldac.recipe import VLDACConfig, run_vldac

    return VLDACConfig, run_vldac, {"episodes_per_step": 2, "value_widths": "64,32"}


def _ttrv():
    from vlmrl.ttrv.recipe import TTRVConfig, run_ttrv

    cuts = {"votes": 4, "samples": 2, "adapt_items": 1, "episodes_per_step": 2, "evaluation": False}
    return TTRVConfig, run_ttrv, {**cuts, "task_options": ["n=4"], "warmup_ratio": 0.0}


def _masters():
    from vlmrl.masters.recipe import MastersConfig, run_distill

    cuts = {"responses": 4, "teacher_responses": 2, "episodes_per_step": 4, "part_size": 1}
    return MastersConfig, run_distill, {**cuts, "judge": "", "resolution": 112}


def _games():
    from vlmrl.games.recipe import VisionZeroConfig, run_vision_zero

    cuts = {"episodes_per_step": 8, "train_pairs": 4, "eval_games": 0, "eval_questions": 0}
    return (
        VisionZeroConfig,
        run_vision_zero,
        {**cuts, "clue_tokens": 8, "decision_tokens": 8, "resolution": 112},
    )


# What runs a package's configs: its config class, its run function, its own cuts.
PACKAGES = {"vldac": _vldac, "ttrv": _ttrv, "masters": _masters, "games": _games}
MODEL_FIELDS = ("model", "teacher", "student")


def dry_config(yaml_path: Path, models: Path, out: Path, steps: int) -> tuple[Any, Any]:
    from vlmrl.config import load_yaml

    config_class, run, cuts = PACKAGES[yaml_path.parent.parent.name]()
    config = load_yaml(config_class, yaml_path)
    names = {f.name for f in fields(config)}
    for name, value in {**CUTS, **cuts}.items():
        if name in names:
            setattr(config, name, value)
    for name in MODEL_FIELDS:
        if name in names:
            setattr(config, name, str(models / REAL_MODELS[getattr(config, name)]))
    for name in ("out", "data_dir"):
        if name in names:
            setattr(config, name, str(out / name))
    config.steps = steps
    return config, run


def main(yaml_path: str, models: str, out: str, steps: str) -> None:
    from PIL import Image

    from vlmrl.model import VLM, SamplingParams

    config, run = dry_config(Path(yaml_path), Path(models), Path(out), int(steps))
    run(config)
    trained = VLM.load(str(Path(config.out) / "model"))
    image = Image.new("RGB", (96, 64), "red")
    conversation = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Hi"}]}
    ]
    generation = trained.generate([conversation], SamplingParams(max_new_tokens=4, temperature=1.0))[0]
    assert 1 <= len(generation.token_ids) <= 4
    print("generated", generation.token_ids)


if __name__ == "__main__":
    main(*sys.argv[1:])
