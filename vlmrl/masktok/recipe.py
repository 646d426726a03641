"""Recipe: SAMTok on a VLM. Masks become two words; SFT teaches them; RL sharpens them.

Read top to bottom:
1. `load_tokenizer` and `prepare_vlm`: a trained mask tokenizer and a VLM with the 514 mask
   tokens added (`vlm.add_tokens`).
2. Data (`vlmrl.masktok.data`): referring segmentation (answers are mask strings, several
   masks for several objects, 'none' for no target) mixed with region captioning / region
   QA (mask strings in the prompt), on shapes scenes, targets encoded by the tokenizer.
3. `run_sft`: the shared SFT loop (`vlmrl.rl.sft.train_sft`) on those conversations.
4. `run_rl`: the shared Trainer (GRPO) on referring segmentation prompts with SAMTok's textual
   answer-matching reward (`vlmrl.masktok.rewards`), optionally plus the IoU of decoded masks.
5. Before/after: the harness (`vlmrl.evals.evaluate`) on the `refseg` task (gIoU, cIoU, N-acc)
   and region captioning, with a whole-image and an empty prediction as floors.
6. Samples: each saved episode carries `info["replay"]` of kind "mask" for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig

REWARDS = ("match", "iou", "match+iou")


# --------------------------------------------------------------------------- configs


@dataclass
class SFTConfig:
    """`vlmrl samtok sft`: teach a VLM the mask tokens (referring segmentation + region captions)."""

    model: str = option("tiny", help="VLM: 'tiny', a local directory or a hub id.")
    tokenizer: str = option("samtok-tiny", help="Mask tokenizer directory ('samtok-tiny': the shipped one).")
    out: str = option("runs/samtok-sft", help="Run directory (metrics, results.json, model/).")
    steps: int = option(300, help="SFT steps.")
    batch_size: int = option(32, help="Conversations per step.")
    learning_rate: float = option(1e-3, help="Peak AdamW learning rate.")
    warmup_steps: int = option(20, help="Linear warmup steps.")
    train_size: int = option(4000, help="Training examples (encoded once by the tokenizer, then cycled).")
    understanding_rate: float = option(0.25, help="Share of region caption / region QA examples.")
    no_target_rate: float = option(0.1, help="Share of referring expressions that name no object.")
    multi_rate: float = option(0.1, help="Share of expressions that name every object of the scene.")
    min_objects: int = option(1, help="Fewest objects per scene.")
    max_objects: int = option(2, help="Most objects per scene (tiny reads scenes of 1-2 objects).")
    resolution: int = option(128, help="Scene side in pixels.")
    eval_size: int = option(
        100, help="Held-out refseg and caption examples for before/after (0: no evaluation)."
    )
    data_seed: int = option(0, help="Seed of the training scenes (held out: data_seed + 1000).")
    seed: int = option(0, help="Seed of the weights' updates.")
    threads: int = option(0, help="torch threads (0: torch's default).")


@dataclass
class RLConfig(TrainerConfig):
    """`vlmrl samtok rl`: GRPO on referring segmentation with the textual answer-matching reward."""

    model: str = option("runs/samtok-sft/model", help="VLM that already knows the mask tokens (after sft).")
    tokenizer: str = option("samtok-tiny", help="Mask tokenizer directory ('samtok-tiny': the shipped one).")
    out: str = option(
        "runs/samtok-rl", help="Run directory (metrics, checkpoints, samples, results.json, model/)."
    )
    reward: str = option("match", help=f"Reward: {', '.join(REWARDS)} (match = textual answer matching).")
    first_level_credit: float = option(
        0.5, help="Answer matching: credit for a mask whose first code alone matches."
    )
    format_weight: float = option(0.1, help="Weight of the mask-format reward.")
    group_size: int = option(8, help="Samples per prompt (GRPO group).")
    max_new_tokens: int = option(16, help="Most tokens per answer.")
    train_size: int = option(4000, help="Training prompts.")
    eval_size: int = option(100, help="Held-out refseg examples for before/after (0: no evaluation).")
    no_target_rate: float = option(0.1, help="Share of referring expressions that name no object.")
    multi_rate: float = option(0.1, help="Share of expressions that name every object of the scene.")
    min_objects: int = option(1, help="Fewest objects per scene.")
    max_objects: int = option(2, help="Most objects per scene.")
    resolution: int = option(128, help="Scene side in pixels.")
    data_seed: int = option(0, help="Seed of the training scenes (held out: data_seed + 1000).")
    threads: int = option(0, help="torch threads (0: torch's default).")
    steps: int = option(30, help="Training steps (one collect + update each).")
    episodes_per_step: int = option(64, help="Episodes per step (prompts x group size).")
    micro_batch_size: int = option(32, help="Episodes per forward/backward pass.")
    learning_rate: float = option(5e-5, help="Peak AdamW learning rate.")
    warmup_steps: int = option(2, help="Linear warmup steps.")
    max_length: int = option(16, help="The constant of token_sum_norm (set it to max_new_tokens).")
    checkpoint_every: int = option(10, help="Write a checkpoint every N steps (0: only at the end).")
    save_samples_every: int = option(5, help="Save the step's episodes (mask replays) every N steps.")


@dataclass
class EvalConfig:
    """`vlmrl samtok eval`: refseg (gIoU, cIoU, N-acc) and region captioning on held-out scenes."""

    model: str = option("runs/samtok-sft/model", help="VLM to evaluate.")
    tokenizer: str = option("samtok-tiny", help="Mask tokenizer directory.")
    out: str = option("runs/samtok-eval", help="Output directory (results.json, predictions).")
    eval_size: int = option(100, help="Held-out examples per task.")
    no_target_rate: float = option(0.1, help="Share of no-target expressions.")
    multi_rate: float = option(0.1, help="Share of expressions naming every object.")
    min_objects: int = option(1, help="Fewest objects per scene.")
    max_objects: int = option(2, help="Most objects per scene.")
    resolution: int = option(128, help="Scene side in pixels.")
    data_seed: int = option(0, help="Held-out scenes use data_seed + 1000.")
    threads: int = option(0, help="torch threads (0: torch's default).")


# --------------------------------------------------------------------------- 1. tokenizer and VLM


def load_tokenizer(spec: str):
    from vlmrl.masktok.model import MaskTokenizer

    return MaskTokenizer.load(spec)


def prepare_vlm(spec: str, tokenizer: Any):
    """Load a VLM and add the mask vocabulary (a no-op for a VLM that already has it)."""
    from vlmrl.masktok.tokens import mask_vocabulary
    from vlmrl.model import VLM

    vlm = VLM.load(spec)
    vocabulary = mask_vocabulary(tokenizer.config.codebook_size, tokenizer.config.levels)
    if vlm.tokenizer.convert_tokens_to_ids(vocabulary[-1]) in (None, vlm.tokenizer.unk_token_id):
        vlm.add_tokens(vocabulary)
    return vlm


# --------------------------------------------------------------------------- 2. data


def encoded_examples(
    tokenizer: Any,
    count: int,
    seed: int,
    *,
    understanding_rate: float = 0.0,
    no_target_rate: float = 0.1,
    multi_rate: float = 0.1,
    min_objects: int = 1,
    max_objects: int = 2,
    resolution: int = 128,
) -> list[tuple[Any, list[str]]]:
    """(example, its masks' token strings) for `count` examples of the seed's stream."""
    from vlmrl.masktok.data import mask_strings_of, refseg_example, understanding_example

    examples = []
    for index in range(count):
        # A fixed, seeded choice per index keeps the mixture a pure function of (seed, index).
        if np.random.default_rng([seed, index, 99]).random() < understanding_rate:
            examples.append(understanding_example(index, seed, resolution, min_objects, max_objects))
        else:
            examples.append(
                refseg_example(index, seed, resolution, min_objects, max_objects, no_target_rate, multi_rate)
            )
    return list(zip(examples, mask_strings_of(tokenizer, examples)))


# --------------------------------------------------------------------------- 5. evaluation


class TokenizerMaskDecoder:
    """Model text -> the union of its decoded masks (image-conditioned), for the refseg task."""

    uses_image = True

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, answer: str, image: Any):
        from vlmrl.masktok.rewards import union_mask
        from vlmrl.masktok.tokens import NO_TARGET, parse_masks
        from vlmrl.model.formats import FormatFailure

        codes = parse_masks(answer, self.tokenizer.config.codebook_size, self.tokenizer.config.levels)
        if isinstance(codes, FormatFailure):
            return codes
        shape = (image.height, image.width)
        if not codes:
            if answer.strip().lower().rstrip(".") != NO_TARGET:
                return FormatFailure("no mask tokens and not 'none'")
            return np.zeros(shape, dtype=bool)
        masks = self.tokenizer.decode([image] * len(codes), [list(c) for c in codes])
        return union_mask(masks, shape)


def refseg_docs(examples: list[tuple[Any, list[str]]]) -> list[dict[str, Any]]:
    from vlmrl.masktok.data import prompt_text
    from vlmrl.masktok.rewards import union_mask

    docs = []
    for example, strings in examples:
        shape = (example.image.height, example.image.width)
        docs.append(
            {
                "id": example.id,
                "images": [example.image],
                "question": prompt_text(example, strings),
                "mask": union_mask(example.masks, shape),
                "expression": example.expression,
                "reference": "".join(strings),
            }
        )
    return docs


def refseg_task(tokenizer: Any, examples: list[tuple[Any, list[str]]]):
    """The harness's refseg task on our held-out scenes, decoding with this tokenizer."""
    from vlmrl.evals.builtin import refseg_aggregate, refseg_score
    from vlmrl.evals.loaders import qa_messages
    from vlmrl.evals.tasks import Task

    decoder = TokenizerMaskDecoder(tokenizer)
    docs = refseg_docs(examples)
    return Task(
        name="refseg",
        docs=lambda limit: docs[:limit] if limit else docs,
        to_messages=qa_messages,
        score=lambda doc, output: refseg_score(doc, output, decoder),
        aggregate=refseg_aggregate,
        max_new_tokens=16,
        primary_metric="gIoU",
        description="referring segmentation through SAMTok mask tokens (gIoU, cIoU, N-acc)",
        settings={"docs": len(docs), "first": docs[0]["id"] if docs else None},
    )


def region_caption_task(examples: list[tuple[Any, list[str]]]):
    """Region captioning / region QA accuracy: exact answer match, per kind."""
    from vlmrl.evals.loaders import extract_answer, qa_messages
    from vlmrl.evals.metrics import mean_metrics, normalize_answer
    from vlmrl.evals.tasks import Task
    from vlmrl.masktok.data import prompt_text

    docs = [
        {
            "id": e.id,
            "images": [e.image],
            "question": prompt_text(e, s),
            "answer": e.answer_text,
            "kind": e.kind,
        }
        for e, s in examples
    ]

    def score(doc: dict[str, Any], output: str) -> dict[str, Any]:
        answer, formatted = extract_answer(output)
        return {
            "accuracy": float(normalize_answer(answer) == normalize_answer(doc["answer"])),
            "format": float(formatted),
            "kind": doc["kind"],
        }

    return Task(
        name="region-caption",
        docs=lambda limit: docs[:limit] if limit else docs,
        to_messages=qa_messages,
        score=score,
        aggregate=lambda scores: mean_metrics(scores, group_key="kind", grouped=["accuracy"]),
        max_new_tokens=16,
        primary_metric="accuracy",
        description="describe or answer about the object a mask-token string points at",
        settings={"docs": len(docs)},
    )


def held_out(tokenizer: Any, config: Any, understanding: bool) -> list[tuple[Any, list[str]]]:
    return encoded_examples(
        tokenizer,
        config.eval_size,
        config.data_seed + 1000 + (1 if understanding else 0),
        understanding_rate=1.0 if understanding else 0.0,
        no_target_rate=config.no_target_rate,
        multi_rate=config.multi_rate,
        min_objects=config.min_objects,
        max_objects=config.max_objects,
        resolution=config.resolution,
    )


def floors(examples: list[tuple[Any, list[str]]]) -> dict[str, float]:
    """gIoU of predicting the whole image, and of predicting nothing, on the same docs."""
    from vlmrl.evals.metrics import generalized_iou, mask_iou
    from vlmrl.masktok.rewards import union_mask

    whole, empty = [], []
    for example, _ in examples:
        shape = (example.image.height, example.image.width)
        truth = union_mask(example.masks, shape)
        whole.append(mask_iou(np.ones(shape, dtype=bool), truth))
        empty.append(mask_iou(np.zeros(shape, dtype=bool), truth))
    return {"whole_image_gIoU": generalized_iou(whole), "empty_gIoU": generalized_iou(empty)}


def evaluate_vlm(vlm: Any, tokenizer: Any, config: Any, out: Path, captions: bool = True) -> dict[str, Any]:
    """Harness results on held-out refseg (and region captioning) docs."""
    from vlmrl.evals import evaluate

    tasks = [refseg_task(tokenizer, held_out(tokenizer, config, understanding=False))]
    if captions:
        tasks.append(region_caption_task(held_out(tokenizer, config, understanding=True)))
    results = evaluate(vlm, tasks, out_dir=out, batch_size=50, show_progress=False, resamples=200)
    summary = {name: task["metrics"] for name, task in results["tasks"].items()}
    summary["intervals"] = {name: task["intervals"] for name, task in results["tasks"].items()}
    return summary


# --------------------------------------------------------------------------- 3. SFT


def run_sft(config: SFTConfig) -> dict[str, Any]:
    """SFT on mixed refseg / region-caption conversations; with `eval_size=0` nothing is
    evaluated (the caller, e.g. `vlmrl demo`, evaluates through the harness itself)."""
    import torch

    from vlmrl.masktok.data import messages, target_text
    from vlmrl.rl.sft import SFTSettings, train_sft
    from vlmrl.runs import MetricsLogger, atomic_write_json, save_run_config

    if config.threads:
        torch.set_num_threads(config.threads)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    tokenizer = load_tokenizer(config.tokenizer)
    vlm = prepare_vlm(config.model, tokenizer)
    examples = encoded_examples(
        tokenizer,
        config.train_size,
        config.data_seed,
        understanding_rate=config.understanding_rate,
        no_target_rate=config.no_target_rate,
        multi_rate=config.multi_rate,
        min_objects=config.min_objects,
        max_objects=config.max_objects,
        resolution=config.resolution,
    )
    conversations = [
        messages(e, s) + [{"role": "assistant", "content": [{"type": "text", "text": target_text(e, s)}]}]
        for e, s in examples
    ]
    evaluating = config.eval_size > 0
    before = evaluate_vlm(vlm, tokenizer, config, directory / "eval-before") if evaluating else None
    order = np.random.default_rng(config.seed).permutation(len(conversations))

    def batch_for_step(step: int):
        start = (step * config.batch_size) % len(order)
        chosen = [order[(start + i) % len(order)] for i in range(config.batch_size)]
        return [conversations[i] for i in chosen]

    logger = MetricsLogger(directory)
    try:
        history = train_sft(
            vlm,
            batch_for_step,
            SFTSettings(
                steps=config.steps,
                learning_rate=config.learning_rate,
                warmup_steps=config.warmup_steps,
                seed=config.seed,
                log_every=10,
            ),
            log=logger.log,
            progress_description="samtok sft",
        )
    finally:
        logger.close()
    results: dict[str, Any] = {"final_loss": history[-1]["loss"] if history else None}
    if evaluating:
        after = evaluate_vlm(vlm, tokenizer, config, directory / "eval-after")
        results.update(
            before=before,
            after=after,
            floors=floors(held_out(tokenizer, config, understanding=False)),
            gIoU_gain=after["refseg"]["gIoU"] - before["refseg"]["gIoU"],
        )
    atomic_write_json(directory / "results.json", results)
    vlm.save(directory / "model")
    return results


# --------------------------------------------------------------------------- 4. RL


class RefsegSource:
    """GRPO groups of referring segmentation prompts; each episode knows its reference codes
    and masks, and carries a mask replay for the report."""

    def __init__(self, tokenizer: Any, config: RLConfig):
        from vlmrl.masktok.data import messages
        from vlmrl.model import SamplingParams
        from vlmrl.rl.prompts import Prompt, PromptSource

        self.tokenizer = tokenizer
        examples = encoded_examples(
            tokenizer,
            config.train_size,
            config.data_seed,
            no_target_rate=config.no_target_rate,
            multi_rate=config.multi_rate,
            min_objects=config.min_objects,
            max_objects=config.max_objects,
            resolution=config.resolution,
        )
        self.examples = {e.id: (e, s) for e, s in examples}
        prompts = [
            Prompt(id=e.id, messages=messages(e, s), answer="".join(s) or "none", info={"example": e.id})
            for e, s in examples
        ]
        sampling = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
        self.prompts = PromptSource(prompts, config.group_size, sampling, seed=config.data_seed)

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Any]:
        from vlmrl.masktok.tokens import parse_masks

        episodes = self.prompts.collect(policy, n, rng)
        for episode in episodes:
            example, strings = self.examples[episode.info.pop("example")]
            size = self.tokenizer.config.codebook_size
            episode.info["reference_codes"] = [list(parse_masks(s, size)[0]) for s in strings]
            episode.info["expression"] = example.expression
        return episodes

    def state_dict(self) -> dict[str, Any]:
        return self.prompts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state)

    def mask_replay(self, episode: Any) -> dict[str, Any]:
        """info['replay'] of kind 'mask': expression, tokens, truth and predicted RLE, IoU."""
        from vlmrl.data_recipes.masks import encode_rle
        from vlmrl.evals.loaders import extract_answer
        from vlmrl.evals.metrics import mask_iou
        from vlmrl.masktok.rewards import union_mask
        from vlmrl.model.formats import FormatFailure

        example, _ = self.examples[episode.info["prompt_id"]]
        shape = (example.image.height, example.image.width)
        truth = union_mask(example.masks, shape)
        answer, _ = extract_answer(episode.text)
        predicted = TokenizerMaskDecoder(self.tokenizer)(answer, example.image)
        valid = not isinstance(predicted, FormatFailure)
        iou = mask_iou(predicted, truth) if valid else 0.0
        episode.info["correct"] = bool(valid and iou >= 0.5)
        return {
            "kind": "mask",
            "expression": example.expression,
            "tokens": answer,
            "truth_rle": encode_rle(truth),
            "predicted_rle": encode_rle(predicted) if valid else None,
            "iou": float(iou),
        }


def run_rl(config: RLConfig, callbacks: Sequence[Callable[..., None]] = ()) -> dict[str, Any]:
    """GRPO on refseg prompts; `callbacks(trainer, metrics)` run after every step (e.g. to
    refresh a report); with `eval_size=0` nothing is evaluated (the caller evaluates)."""
    import torch

    from vlmrl.masktok import rewards
    from vlmrl.rl.trainer import RewardFunction, Trainer
    from vlmrl.runs import atomic_write_json, read_json, save_run_config

    if config.reward not in REWARDS:
        raise ValueError(f"--reward must be one of {REWARDS}, got {config.reward!r}")
    if config.threads:
        torch.set_num_threads(config.threads)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    save_run_config(directory, config)
    tokenizer = load_tokenizer(config.tokenizer)
    policy = prepare_vlm(config.model, tokenizer)
    source = RefsegSource(tokenizer, config)
    results_path = directory / "results.json"
    evaluating = config.eval_size > 0
    before = read_json(results_path).get("before") if results_path.is_file() else None
    if evaluating and before is None:
        before = evaluate_vlm(policy, tokenizer, config, directory / "eval-before", captions=False)
        atomic_write_json(results_path, {"before": before})

    size = tokenizer.config.codebook_size

    def match(episode: Any) -> float:
        return rewards.answer_matching_reward(episode, config.first_level_credit, size)

    def mask_format(episode: Any) -> float:
        return rewards.mask_format_reward(episode, size)

    def decoded_iou(episode: Any) -> float:
        replay = source.mask_replay(episode)
        return replay["iou"]

    reward_functions = [RewardFunction("format", mask_format, config.format_weight, per_episode=True)]
    if "match" in config.reward:
        reward_functions.append(RewardFunction("answer_match", match, 1.0, per_episode=True))
    if "iou" in config.reward:
        reward_functions.append(RewardFunction("iou", decoded_iou, 1.0, per_episode=True))

    def replay_reward(episodes: list[Any]) -> list[float]:
        # Decoding every episode costs a tokenizer pass; only steps whose samples are saved pay it.
        if config.save_samples_every and trainer.step % config.save_samples_every == 0:
            for episode in episodes:
                episode.info["replay"] = source.mask_replay(episode)
        return [0.0] * len(episodes)

    reward_functions.append(RewardFunction("replay", replay_reward, 0.0))
    trainer = Trainer(policy, source, config, directory, rewards=reward_functions, callbacks=callbacks)
    history = trainer.fit()
    results: dict[str, Any] = {
        "steps": trainer.step,
        "final_reward_mean": history[-1]["reward_mean"] if history else None,
    }
    if evaluating:
        after = evaluate_vlm(policy, tokenizer, config, directory / "eval-after", captions=False)
        results.update(
            before=before, after=after, gIoU_gain=after["refseg"]["gIoU"] - before["refseg"]["gIoU"]
        )
    atomic_write_json(results_path, results)
    policy.save(directory / "model")
    return results
