"""Recipe: pretrain the embedded default `tiny` (or `tiny-teacher`) on the shapes world.

No pretrained VLM can be downloaded here, so the suite makes its own: a Qwen2.5-VL-architecture
model of a few million parameters, trained from scratch with the shared SFT loop
(`vlmrl.rl.sft`, a thin loop over `vlm.score`) on freshly rendered scenes. Each step's batch is
a pure function of (seed, step), so a run is reproducible by seed.

The mixture teaches every skill and output format the methods start from:
- shapes QA, several questions per image, answers in <answer> tags (RLVR, TTRV, evals);
- captions and one-object clues (the spy game's clue stage);
- votes on a spy-game transcript (the decision stage);
- zoom tool calls on an enlarged scene, then the answer from the crop (Mini-o3's format).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vlmrl.config import command, option

app = typer.Typer(help="Pretrain the embedded tiny default model on the shapes world.", no_args_is_help=True)

SKILLS = ("qa", "caption", "clue", "vote", "zoom")


@dataclass
class PretrainConfig:
    """Pretrain a tiny VLM from scratch on generated scenes."""

    name: str = option("tiny", help="Which default to build: 'tiny' or 'tiny-teacher' (larger).")
    out: str = option("runs/pretrain-tiny", help="Run directory (metrics, model, model card).")
    steps: int = option(2500, help="Optimizer steps.")
    batch_size: int = option(24, help="Conversations per step.")
    questions_per_image: int = option(4, help="QA turns per shapes conversation.")
    resolution: int = option(168, help="Scene resolution in pixels (the tiny processor's budget is 168).")
    min_objects: int = option(
        3, help="Fewest objects per scene (after the curriculum, and in the held-out eval)."
    )
    max_objects: int = option(
        10, help="Most objects per scene (after the curriculum, and in the held-out eval)."
    )
    curriculum_steps: int = option(
        0,
        help="Over the first N SFT steps, scenes hold 1 up to a bound that grows linearly to max_objects "
        "(0: no curriculum).",
    )
    learning_rate: float = option(2e-3, help="Peak AdamW learning rate.")
    warmup_steps: int = option(100, help="Linear warmup steps.")
    mixture: str = option("qa=0.6,caption=0.08,clue=0.1,vote=0.1,zoom=0.12", help="Skill weights.")
    align_steps: int = option(
        300,
        help="Vision alignment steps before SFT: dense per-cell attribute heads on the vision tower (0: skip).",
    )
    freeze_vision: bool = option(
        True,
        help="Keep the aligned vision tower, and the word embeddings its tokens were aligned to, fixed during SFT.",
    )
    eval_questions: int = option(400, help="Held-out shapes questions for the final evaluation.")
    eval_every: int = option(500, help="Evaluate on held-out questions every N steps (0: only at the end).")
    seed: int = option(0, help="Seed of the initial weights and of the data stream.")
    init: str = option(
        "",
        help="Continue from this model (a directory or 'tiny') instead of random weights; alignment is skipped.",
    )
    threads: int = option(0, help="torch threads (0: torch's default).")
    dtype: str = option(
        "auto",
        help="Compute dtype: auto (bf16 autocast only where the device runs bf16 natively, "
        "else float32), float32, bfloat16.",
    )
    install: bool = option(
        False, help="Copy the trained model into vlmrl/assets/<name> (the shipped default)."
    )


def parse_mixture(text: str, skills: tuple[str, ...] = SKILLS) -> dict[str, float]:
    """'qa=3,caption=1' -> {'qa': 0.75, 'caption': 0.25}: weights of `skills`, normalised."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in skills:
            raise ValueError(f"mixture: unknown skill '{name}'; expected some of {skills}")
        try:
            weights[name] = float(value)
        except ValueError as error:
            raise ValueError(f"mixture: weight of '{name}' is not a number: {value!r}") from error
    if not weights or sum(weights.values()) <= 0 or min(weights.values()) < 0:
        raise ValueError(f"mixture '{text}' gives no positive weight (or a negative one)")
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


# ----------------------------------------------------------------------------- conversations


def _user(image: Any, text: str) -> dict:
    return {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def qa_conversation(rng: np.random.Generator, config: PretrainConfig) -> list[dict]:
    from vlmrl.data_recipes import shapes
    from vlmrl.model.formats import format_answer

    scene = shapes.sample_scene(rng, config.min_objects, config.max_objects)
    image, _, _ = shapes.render_scene(scene, config.resolution)
    questions = shapes.generate_questions(scene, rng)
    order = rng.permutation(len(questions))[: config.questions_per_image]
    messages: list[dict] = []
    for turn, index in enumerate(order):
        question = questions[int(index)]
        if turn == 0:
            messages.append(_user(image, question["question"]))
        else:
            messages.append({"role": "user", "content": question["question"]})
        messages.append(_assistant(format_answer(question["answer"])))
    return messages


def caption_conversation(rng: np.random.Generator, config: PretrainConfig) -> list[dict]:
    from vlmrl.data_recipes import shapes

    scene = shapes.sample_scene(rng, config.min_objects, config.max_objects)
    image, _, _ = shapes.render_scene(scene, config.resolution)
    return [_user(image, "Describe the image."), _assistant(shapes.caption(scene))]


def _clue(obj: Any) -> str:
    from vlmrl.data_recipes import shapes

    return f"I see {shapes._article(shapes.describe(obj))}."


def clue_conversation(rng: np.random.Generator, config: PretrainConfig) -> list[dict]:
    from vlmrl.data_recipes import shapes
    from vlmrl.model.formats import CLUE_INSTRUCTION

    scene = shapes.sample_scene(rng, config.min_objects, config.max_objects)
    image, _, _ = shapes.render_scene(scene, config.resolution)
    player = int(rng.integers(1, 5))
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    return [_user(image, CLUE_INSTRUCTION.format(player=player)), _assistant(_clue(obj))]


def vote_conversation(rng: np.random.Generator, config: PretrainConfig) -> list[dict]:
    """A civilian's view: civilians' clues name objects in its image, the spy's clue does not."""
    from vlmrl.data_recipes import shapes
    from vlmrl.model.formats import VOTE_INSTRUCTION, format_answer, format_clues

    scene = shapes.sample_scene(rng, config.min_objects, config.max_objects)
    image, _, _ = shapes.render_scene(scene, config.resolution)
    players = int(rng.integers(3, 5))
    spy = int(rng.integers(1, players + 1))
    voter = int(rng.choice([p for p in range(1, players + 1) if p != spy]))
    present = {shapes.describe(o) for o in scene.objects}
    clues = []
    for player in range(1, players + 1):
        if player == spy:
            # The spy describes its own image's edited object: a recoloured copy of one object
            # whose description matches nothing in the civilians' image.
            for _ in range(50):
                original = scene.objects[int(rng.integers(len(scene.objects)))]
                colour = str(rng.choice([c for c in shapes.COLORS if c != original.color]))
                edited = dataclasses.replace(original, color=colour)
                if shapes.describe(edited) not in present:
                    break
            clues.append((player, _clue(edited)))
        else:
            clues.append((player, _clue(scene.objects[int(rng.integers(len(scene.objects)))])))
    prompt = VOTE_INSTRUCTION.format(player=voter, clues=format_clues(clues))
    return [_user(image, prompt), _assistant(format_answer(str(spy)))]


def zoom_conversation(rng: np.random.Generator, config: PretrainConfig) -> list[dict]:
    """An enlarged scene, a zoom call on the asked object's box, the crop, then the answer."""
    from vlmrl.data_recipes import shapes
    from vlmrl.model.formats import ZOOM_INSTRUCTION, ZOOM_RESULT, format_answer, format_tool_call

    scale = 2
    for _ in range(50):
        scene = shapes.sample_scene(
            rng, max(config.min_objects, min(5, config.max_objects)), config.max_objects
        )
        question = shapes.question_of_type(
            scene, str(rng.choice(["query_color", "query_material", "query_shape"])), rng
        )
        if question is not None and question.get("object_indices"):
            break
    else:
        return qa_conversation(rng, config)
    image, _, boxes = shapes.render_scene(scene, config.resolution * scale)
    x0, y0, x1, y1 = boxes[int(question["object_indices"][0])]
    margin = int(0.25 * max(x1 - x0, y1 - y0)) + 4
    box = [
        max(0, x0 - margin),
        max(0, y0 - margin),
        min(image.width, x1 + margin),
        min(image.height, y1 + margin),
    ]
    crop = image.crop(tuple(box))
    call = format_tool_call("zoom", {"bbox": box})
    return [
        _user(image, ZOOM_INSTRUCTION.format(question=question["question"])),
        _assistant(call),
        {
            "role": "tool",
            "content": [
                {"type": "image", "image": crop},
                {"type": "text", "text": ZOOM_RESULT.format(x0=box[0], y0=box[1], x1=box[2], y1=box[3])},
            ],
        },
        _assistant(format_answer(question["answer"])),
    ]


BUILDERS = {
    "qa": qa_conversation,
    "caption": caption_conversation,
    "clue": clue_conversation,
    "vote": vote_conversation,
    "zoom": zoom_conversation,
}


def scene_bounds(step: int, config: PretrainConfig) -> tuple[int, int]:
    """(fewest, most) objects per scene at an SFT step.

    During the curriculum a question's referent is often the only object, or one of two, so the
    language model first learns to read attributes off visual tokens and only then, as scenes
    fill up, to pick out the object a question names.
    """
    if step >= config.curriculum_steps:
        return config.min_objects, config.max_objects
    most = 1 + (config.max_objects - 1) * (step + 1) // config.curriculum_steps
    return 1, max(1, min(most, config.max_objects))


def batch_for_step(step: int, config: PretrainConfig, weights: dict[str, float]) -> list[list[dict]]:
    rng = np.random.default_rng([config.seed, 7919, step])
    fewest, most = scene_bounds(step, config)
    if (fewest, most) != (config.min_objects, config.max_objects):
        config = dataclasses.replace(config, min_objects=fewest, max_objects=most)
    names = list(weights)
    picks = rng.choice(len(names), size=config.batch_size, p=[weights[n] for n in names])
    return [BUILDERS[names[int(i)]](rng, config) for i in picks]


# ----------------------------------------------------------------------------- vision alignment

# Attribute vocabularies of the per-cell heads; index 0 of each is "no object here".
CELL_ATTRIBUTES = {
    "color": ("none", "gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
    "shape": ("none", "sphere", "cube", "cylinder", "cone"),
    "material": ("none", "rubber", "metal"),
    "size": ("none", "small", "large"),
}


def cell_labels(scene: Any, masks: list[np.ndarray], cell: int) -> dict[str, np.ndarray]:
    """For each cell of a grid of `cell`-pixel squares, the attributes of the object owning most of it.

    A cell belongs to an object when the object's visible mask covers at least a quarter of it;
    otherwise it is background (label 0). Row-major order, the order of Qwen2.5-VL's merged
    visual tokens.
    """
    height, width = masks[0].shape if masks else (cell, cell)
    rows, columns = height // cell, width // cell
    coverage = np.zeros((len(masks) + 1, rows, columns))
    coverage[0] = cell * cell / 4  # background wins unless an object covers a quarter
    for index, mask in enumerate(masks):
        trimmed = mask[: rows * cell, : columns * cell].reshape(rows, cell, columns, cell)
        coverage[index + 1] = trimmed.sum(axis=(1, 3))
    owner = coverage.argmax(axis=0).reshape(-1)
    labels = {}
    for attribute, vocabulary in CELL_ATTRIBUTES.items():
        values = [0] + [vocabulary.index(getattr(obj, attribute)) for obj in scene.objects]
        labels[attribute] = np.asarray(values)[owner]
    return labels


BACKGROUND_WORD = " no"  # what a visual token with no object under it should look like (one token)


def anchor_token_ids(tokenizer: Any, word_prefix: str = "") -> dict[str, Any]:
    """The token ids visual tokens are aligned to: per attribute, each value's word with
    `word_prefix` before it (tiny: the bare word answers use, e.g. "red" in <answer>red</answer>;
    a pretrained tokenizer: " red", the form running text uses), plus `background` for empty
    cells. Each must be a single token of the tokenizer."""
    import torch

    def single(text: str) -> int:
        pieces = tokenizer.encode(text, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(
                f"vision alignment needs '{text}' to be one token of the tokenizer; it encodes to "
                f"{len(pieces)} tokens"
            )
        return pieces[0]

    ids = {
        a: torch.tensor([single(word_prefix + w) for w in vocabulary[1:]])
        for a, vocabulary in CELL_ATTRIBUTES.items()
    }
    ids["background"] = torch.tensor([single(BACKGROUND_WORD)])
    return ids


def freeze_anchor_words(vlm: Any) -> Any:
    """Stop SFT's gradients from moving the embeddings the aligned vision tower points at (returns
    the hook's handle): the frozen tower keeps emitting them, so they must keep meaning the same
    words. (AdamW's decoupled weight decay still shrinks them slightly: 1 - lr * decay per step.)"""
    import torch

    embedding = vlm.model.get_input_embeddings().weight
    rows = torch.cat([ids.reshape(-1) for ids in anchor_token_ids(vlm.processor.tokenizer).values()])
    keep = torch.ones(embedding.shape[0], 1, dtype=embedding.dtype, device=embedding.device)
    keep[rows.to(embedding.device)] = 0.0
    return embedding.register_hook(lambda grad: grad * keep)


def align_vision(
    vlm: Any, config: PretrainConfig, log: Any = None, word_prefix: str = ""
) -> list[dict[str, float]]:
    """Stage 1: train the vision tower so every merged visual token looks like the words naming
    the object under it, in the language model's own embedding space.

    A language-model loss alone teaches a from-scratch vision tower slowly (the signal reaches
    it only through answers). Here dense supervision from the renderer's exact masks regresses
    each merged visual token onto the sum of the input embeddings of its object's colour, shape,
    material and size words (the embeddings answers use, tied to the output layer), and empty
    cells onto the embedding of " no" (as in "no object"). A red metal cube's tokens then are, to the language
    model, nearly the words "red", "metal" and "cube" at that place in the image, with the norm
    of ordinary word embeddings.

    Why not classify: with separate linear heads (the first shipped tiny), or with cosine
    similarity to the words, the attributes were readable but carried by small directions of
    large vectors (norm ~30 against ~1 for words), and a 4-layer language model trained from
    scratch did not learn to read them within 800 steps even on one-object scenes, while it
    learned from word-like tokens within 200. SFT then keeps these embedding rows fixed
    (`freeze_anchor_words`) while the tower stays frozen.
    """
    import torch
    from rich.progress import Progress

    from vlmrl.data_recipes import shapes
    from vlmrl.model import precision

    visual = vlm.model.model.visual
    merge = visual.spatial_merge_size * visual.config.patch_size
    embedding = vlm.model.get_input_embeddings().weight
    if embedding.shape[1] != visual.config.out_hidden_size:
        raise ValueError(
            f"vision output width {visual.config.out_hidden_size} differs from the word embedding "
            f"width {embedding.shape[1]}"
        )
    ids = {k: v.to(vlm.device) for k, v in anchor_token_ids(vlm.processor.tokenizer, word_prefix).items()}
    table = embedding.detach().float().clone()
    background = table[ids["background"]][0]
    # per attribute: (values + 1, width) with row 0 (no object) contributing nothing
    words = {
        attribute: torch.cat([torch.zeros(1, table.shape[1], device=table.device), table[ids[attribute]]])
        for attribute in CELL_ATTRIBUTES
    }
    optimizer = torch.optim.AdamW(visual.parameters(), lr=config.learning_rate, weight_decay=0.01)
    image_processor = vlm.processor.image_processor
    history: list[dict[str, float]] = []
    visual.train()
    with Progress(transient=False) as progress:
        task = progress.add_task("align vision", total=config.align_steps)
        for step in range(config.align_steps):
            rng = np.random.default_rng([config.seed, 104729, step])
            images, targets = [], {a: [] for a in CELL_ATTRIBUTES}
            for _ in range(config.batch_size):
                scene = shapes.sample_scene(rng, config.min_objects, config.max_objects)
                image, masks, _ = shapes.render_scene(scene, config.resolution)
                images.append(image)
                for attribute, values in cell_labels(scene, masks, merge).items():
                    targets[attribute].append(torch.as_tensor(values))
            inputs = image_processor(images=images, return_tensors="pt")
            grid = inputs["image_grid_thw"]
            if not bool((grid[:, 1] * visual.config.patch_size == config.resolution).all()):
                raise ValueError(
                    f"resolution {config.resolution} must be a multiple of {merge} within the processor budget"
                )
            with precision.autocast(vlm.device, config.dtype):
                features = visual(
                    inputs["pixel_values"].to(vlm.device), grid_thw=grid.to(vlm.device)
                ).pooler_output
            features = features.float()
            labels = {a: torch.cat(targets[a]).to(vlm.device) for a in CELL_ATTRIBUTES}
            empty = labels["color"] == 0
            target = sum(words[a][labels[a]] for a in CELL_ATTRIBUTES)
            target = torch.where(empty[:, None], background.expand_as(target), target)
            # Relative squared error (independent of the embeddings' scale), with the few object
            # cells weighing as much in total as the many empty ones: otherwise "empty
            # everywhere" is a cheap optimum on sparse scenes.
            error = ((features - target) ** 2).sum(-1) / (target**2).sum(-1).mean()
            objects = ~empty
            loss = 0.5 * error[empty].mean() + 0.5 * (error[objects].mean() if objects.any() else 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(visual.parameters(), 1.0)
            optimizer.step()
            record = {"align/loss": float(loss.detach())}
            with torch.no_grad():  # read each attribute back as the nearest of its words
                for attribute in CELL_ATTRIBUTES:
                    candidates = torch.cat([background[None], words[attribute][1:]])
                    predicted = (features @ candidates.T).argmax(-1)
                    # on object cells only: empty cells are most cells and easy
                    hits = (predicted == labels[attribute])[objects]
                    record[f"align/{attribute}_accuracy"] = (
                        float(hits.float().mean()) if objects.any() else 0.0
                    )
            history.append(record)
            if log is not None and (step + 1) % 10 == 0:
                recent = history[-10:]
                log(step + 1, {key: float(np.mean([h[key] for h in recent])) for key in recent[0]})
            progress.advance(task)
    visual.eval()
    return history


# ----------------------------------------------------------------------------- evaluation


def evaluate_shapes_qa(
    vlm: Any,
    questions: int,
    seed: int,
    resolution: int,
    out_dir: str | Path,
    min_objects: int = 3,
    max_objects: int = 10,
) -> dict[str, float]:
    """Held-out shapes QA through the evaluation harness: accuracy by type, small counts, format."""
    from vlmrl.evals.builtin import shapes_qa_task
    from vlmrl.evals.runner import evaluate

    results = evaluate(
        vlm,
        [shapes_qa_task(questions, seed, resolution, min_objects, max_objects)],
        batch_size=64,
        out_dir=out_dir,
        show_progress=False,
        resamples=200,
    )
    metrics = results["tasks"]["shapes-qa"]["metrics"]
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


# ----------------------------------------------------------------------------- recipe


def pretrain(config: PretrainConfig) -> dict[str, Any]:
    import torch

    from vlmrl.model.tiny import build_random_tiny
    from vlmrl.rl.sft import SFTSettings, train_sft
    from vlmrl.runs import MetricsLogger, atomic_write_json, run_directory, save_run_config

    if config.threads:
        torch.set_num_threads(config.threads)
    weights = parse_mixture(config.mixture)
    directory = run_directory(config.out, root=".")  # --out is a path, as in every other command
    save_run_config(directory, config)
    if config.init:
        from vlmrl.model import VLM

        vlm = VLM.load(config.init, dtype="float32", device="cpu")
    else:
        vlm = build_random_tiny(config.name, seed=config.seed)
    logger = MetricsLogger(directory)
    if config.align_steps and not config.init:
        align_vision(vlm, config, log=lambda step, record: logger.log(step - config.align_steps, record))
    if config.freeze_vision:
        vlm.model.model.visual.requires_grad_(False)
        freeze_anchor_words(vlm)
    eval_seed = config.seed + 10_000  # held out: the training stream never draws this seed

    def evaluate(step: int) -> dict[str, float]:
        return evaluate_shapes_qa(
            vlm,
            min(config.eval_questions, 200),
            eval_seed,
            config.resolution,
            directory / "eval" / f"step-{step}",
            config.min_objects,
            config.max_objects,
        )

    settings = SFTSettings(
        steps=config.steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        seed=config.seed,
        dtype=config.dtype,
    )
    started = time.time()
    train_sft(
        vlm,
        lambda step: batch_for_step(step, config, weights),
        settings,
        log=logger.log,
        evaluate=evaluate,
        evaluate_every=config.eval_every,
        progress_description=f"pretrain {config.name}",
    )
    minutes = (time.time() - started) / 60
    final = evaluate_shapes_qa(
        vlm,
        config.eval_questions,
        eval_seed,
        config.resolution,
        directory / "eval" / "final",
        config.min_objects,
        config.max_objects,
    )
    logger.log(config.steps, {f"final/{k}": v for k, v in final.items()})
    logger.close()
    model_directory = vlm.save(directory / "model")
    from vlmrl.model import precision

    summary = {
        "name": config.name,
        "parameters": vlm.parameter_count(),
        "training_minutes": round(minutes, 2),
        "measured_on": precision.summary_line(vlm.device),
        "config": dataclasses.asdict(config),
        "eval": final,
    }
    atomic_write_json(directory / "summary.json", summary)
    write_model_card(model_directory, summary)
    if config.install:
        install(model_directory, config.name)
    return summary


def write_model_card(directory: Path, summary: dict[str, Any]) -> None:
    from vlmrl.runs import atomic_write_text

    evaluation = summary["eval"]
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in evaluation.items())
    config = summary["config"]
    text = f"""# {summary["name"]}: the embedded default of vlmrl

A Qwen2.5-VL-architecture model with {summary["parameters"] / 1e6:.2f} M parameters, trained
from random initialisation by `vlmrl pretrain tiny --steps {config["steps"]} --seed {config["seed"]}`
({summary["training_minutes"]} minutes on CPU: {summary.get("measured_on", "capability not recorded")}), on freshly rendered shapes-world scenes with the
project's offline byte-level BPE tokenizer.

Skills (mixture `{config["mixture"]}`): shapes QA with answers in `<answer>` tags, captions,
spy-game clues and votes, and zoom tool calls (`<tool_call>` JSON) followed by an answer.

## Held-out evaluation ({config["eval_questions"]} shapes questions, seed {config["seed"] + 10_000}, greedy)

| metric | value |
|---|---|
{rows}

`accuracy_count_le6` is counting accuracy on questions whose answer is at most 6; `format` is
the share of outputs with a parseable `<answer>` block. The same figures come from
`vlmrl eval run --model tiny --tasks shapes-qa --limit 400` (seed 1000 stream there).
"""
    atomic_write_text(directory / "README.md", text)


def install(model_directory: Path, name: str) -> Path:
    from vlmrl.model.tiny import ASSETS

    target = ASSETS / name
    from vlmrl.runs import atomic_directory

    with atomic_directory(target) as temporary:
        for file in Path(model_directory).iterdir():
            if file.is_file():
                shutil.copy2(file, temporary / file.name)
    return target


@command(app, PretrainConfig, name="tiny")
def tiny(config: PretrainConfig) -> None:
    """Pretrain the tiny default (or tiny-teacher) from scratch and write its model card."""
    from vlmrl.model import precision

    typer.echo(precision.summary_line())
    summary = pretrain(config)
    typer.echo(json.dumps(summary["eval"], indent=2))


# `vlmrl pretrain smol` lives in its own recipe file; importing it registers the command.
from vlmrl import pretrain_smol  # noqa: E402,F401
