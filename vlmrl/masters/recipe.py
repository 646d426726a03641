"""Recipe: Masters, masked-teacher progressive distillation with offline RL (Lee et al., 2025).

Read top to bottom:
1. `generate`: for every training step i the masked teacher at ratio r[i] (Eq. 3: 0.20, 0.15,
   0.10, 0.05, 0 over equal stages) and the initial student each answer the step's questions
   (4 + 4 responses per question, temperature 1.0, top-p 0.9, top-k 50, repetition penalty
   1.05). The responses are stored as episodes (`vlmrl.rl.episode`), one file per part, so a
   killed run resumes. The baselines' data (8 responses of the full teacher) is generated
   for the same questions.
2. `distill`: the shared Trainer replays the episodes (`OfflineSource`) in step order. Each
   response's reward is R_acc (the task's verifier, or `--judge MODEL`) + R_distill (Eq. 7,
   from its JSD between the masked teacher and the student); GRPO advantages over the 8
   responses of a question, one update per batch (ratio 1), KL 0.1 to the initial student,
   plus the JSD between the masked teacher's and the student's token distributions (Eq. 8).
   `--method sft` and `--method logit-kd` train the baselines in the same code at the same
   number of student updates.
3. Held-out accuracy before and after through `vlmrl.evals` (bootstrap intervals).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.config import option
from vlmrl.rl.settings import TrainerConfig

METHODS = ("masters", "sft", "logit-kd")
BASELINE_DATA = "full-teacher"


@dataclass
class GenerateConfig:
    """Pre-generate Masters' offline data: masked-teacher and student responses per stage."""

    teacher: str = option("tiny", help="Teacher model: 'tiny', a local directory or a hub id.")
    student: str = option(
        "tiny-student",
        help="Student model: 'tiny-student' (the teacher's first language layer only) or any model spec.",
    )
    student_layers: str = option("0", help="tiny-student: the teacher's language layers it keeps.")
    data_dir: str = option("runs/masters-data", help="Where the offline episodes are written.")
    steps: int = option(40, help="Student updates the data is for (questions = steps x questions per step).")
    episodes_per_step: int = option(64, help="Episodes per update (a multiple of --responses).")
    responses: int = option(8, help="Responses per question (the GRPO group).")
    teacher_responses: int = option(
        4, help="Of those, how many come from the masked teacher (the rest: student)."
    )
    ratio_max: float = option(0.20, help="Mask ratio of the first stage (r_max).")
    ratio_step: float = option(
        0.05, help="Ratio decrease between stages (s); the last stage is the full teacher."
    )
    temperature: float = option(1.0, help="Sampling temperature of the data.")
    top_p: float = option(0.9, help="Nucleus sampling of the data.")
    top_k: int = option(50, help="Top-k sampling of the data.")
    repetition_penalty: float = option(1.05, help="Repetition penalty of the data.")
    max_new_tokens: int = option(24, help="Most tokens per response.")
    baselines: bool = option(True, help="Also generate the baselines' data (full-teacher responses).")
    min_objects: int = option(1, help="shapes-qa: fewest objects per scene (the tiny teacher reads 1-2).")
    max_objects: int = option(2, help="shapes-qa: most objects per scene (at least 2).")
    resolution: int = option(168, help="shapes-qa image side in pixels.")
    data_seed: int = option(0, help="Seed of the training questions.")
    part_size: int = option(64, help="Questions per stored file (the unit of resumption).")
    seed: int = option(0, help="Seed of the sampling.")
    threads: int = option(0, help="torch threads (0: torch's default).")


@dataclass
class MastersConfig(TrainerConfig):
    """Distil a teacher into a student with Masters (or a baseline) on pre-generated data."""

    method: str = option("masters", help=f"What to train: {', '.join(METHODS)}.")
    teacher: str = option("tiny", help="Teacher model (the one the data was generated with).")
    student: str = option("tiny-student", help="Student model: 'tiny-student' or any model spec.")
    student_layers: str = option("0", help="tiny-student: the teacher's language layers it keeps.")
    data_dir: str = option(
        "runs/masters-data", help="Offline episodes from `vlmrl masters generate` (made if missing)."
    )
    out: str = option("runs/masters", help="Run directory (metrics, checkpoints, results.json, model/).")
    responses: int = option(8, help="Responses per question (the GRPO group), as generated.")
    teacher_responses: int = option(4, help="Masked-teacher responses per question, as generated.")
    ratio_max: float = option(0.20, help="Mask ratio of the first stage (r_max).")
    ratio_step: float = option(0.05, help="Ratio decrease between stages (s).")
    jsd_weight: float = option(1.0, help="Weight of the JSD distillation term in the loss (Eq. 8).")
    distill_reward_weight: float = option(
        1.0, help="Weight of R_distill in the reward (R = R_acc + R_distill)."
    )
    judge: str = option(
        "", help="R_acc from this judge model (a spec, or 'teacher'); '' uses the task's verifier."
    )
    eval_size: int = option(
        400,
        help="Held-out shapes-qa questions for accuracy before and after (0: none, when a caller evaluates).",
    )
    eval_seed: int = option(1000, help="Seed of the held-out questions (training questions use --data-seed).")
    min_objects: int = option(1, help="shapes-qa: fewest objects per scene.")
    max_objects: int = option(2, help="shapes-qa: most objects per scene.")
    resolution: int = option(168, help="shapes-qa image side in pixels.")
    data_seed: int = option(0, help="Seed of the training questions.")
    top_p: float = option(0.9, help="Data sampling: nucleus.")
    top_k: int = option(50, help="Data sampling: top-k.")
    repetition_penalty: float = option(1.05, help="Data sampling: repetition penalty.")
    max_new_tokens: int = option(24, help="Data sampling: most tokens per response.")
    part_size: int = option(64, help="Questions per stored data file.")
    threads: int = option(0, help="torch threads (0: torch's default).")
    # The paper's update: one pass per batch (ratio 1), KL 0.1, fixed learning rate; the step
    # count and rate suit the tiny student on a CPU.
    steps: int = option(40, help="Student updates.")
    episodes_per_step: int = option(
        64, help="Episodes per update (whole questions: a multiple of --responses)."
    )
    micro_batch_size: int = option(32, help="Episodes per forward/backward pass.")
    learning_rate: float = option(1e-3, help="AdamW learning rate (the paper: fixed 1e-6 on 7B models).")
    min_learning_rate_ratio: float = option(
        1.0, help="Cosine floor; 1.0 keeps the rate fixed as the paper does."
    )
    beta: float = option(0.1, help="KL(student || initial student) coefficient (masters only).")
    checkpoint_every: int = option(10, help="Write a checkpoint every N steps (0: only at the end).")
    save_samples_every: int = option(10, help="Save the step's episodes to samples/ every N steps.")

    def generate_config(self, data_dir: str | None = None) -> GenerateConfig:
        shared = {f.name for f in dataclasses.fields(GenerateConfig)} & {
            f.name for f in dataclasses.fields(self)
        }
        values = {name: getattr(self, name) for name in shared}
        values.update(data_dir=data_dir or self.data_dir, baselines=self.method != "masters")
        return GenerateConfig(**values)


# ----------------------------------------------------------------------------- data


def _check_sizes(steps: int, episodes_per_step: int, responses: int, teacher_responses: int) -> int:
    if responses < 1 or episodes_per_step % responses:
        raise ValueError(
            f"episodes_per_step={episodes_per_step} must be a multiple of responses={responses} (whole questions)"
        )
    if not 0 <= teacher_responses <= responses:
        raise ValueError(f"teacher_responses={teacher_responses} must be in [0, responses={responses}]")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return episodes_per_step // responses


def question_prompts(start: int, count: int, seed: int, resolution: int, min_objects: int, max_objects: int):
    """shapes-qa questions start..start+count-1 as prompts (a pure function of the seed)."""
    from vlmrl.data_recipes.shapes import shapes_qa_record
    from vlmrl.rl.prompts import question_prompt

    if not 1 <= min_objects <= max_objects or max_objects < 2:
        raise ValueError(
            f"shapes-qa scenes: need 1 <= min_objects <= max_objects and max_objects >= 2, got {min_objects}, {max_objects}"
        )
    return [
        question_prompt(
            shapes_qa_record(i, seed, resolution, min_objects, max_objects), f"shapes-qa[{seed}:{i}]"
        )
        for i in range(start, start + count)
    ]


def _episodes(prompts: list, generations: list, source: str, ratio: float, stage: int) -> list:
    from vlmrl.rl.episode import Episode, Turn
    from vlmrl.rl.prompts import answer_matches

    episodes = []
    for generation in generations:
        prompt = prompts[generation.prompt_index]
        correct = answer_matches(generation.text, prompt.answer)
        text = next(p["text"] for p in prompt.messages[0]["content"] if p.get("type") == "text")
        episodes.append(
            Episode(
                messages=[*prompt.messages, generation.as_message()],
                # No sampler log-probs: they are the generating model's, never the student's.
                turns=[Turn(list(generation.token_ids), [], generation.text, generation.finish_reason)],
                group=prompt.id,
                truncated=generation.finish_reason == "length",
                info={
                    "answer": prompt.answer,
                    "question": text,
                    **prompt.info,
                    "source": source,
                    "ratio": ratio,
                    "stage": stage,
                    "correct": correct,
                    "replay": {
                        "kind": "qa",
                        "question": text,
                        "answer": generation.text,
                        "truth": prompt.answer,
                        "correct": correct,
                        "source": source,
                        "ratio": ratio,
                    },
                },
            )
        )
    return episodes


def part_path(data_dir: Path, kind: str, part: int) -> Path:
    return data_dir / kind / f"part-{part:05d}.jsonl"


def run_generate(config: GenerateConfig, teacher: Any = None, student: Any = None) -> dict[str, Any]:
    """Write the offline data of every step; parts already on disk are kept (resume)."""
    import torch

    from vlmrl.masters.masking import masked, ratio_at, stage_ratios
    from vlmrl.masters.student import load_student
    from vlmrl.model import VLM, SamplingParams
    from vlmrl.rl.episode import save_episodes
    from vlmrl.runs import atomic_write_json

    if config.threads:
        torch.set_num_threads(config.threads)
    per_step = _check_sizes(
        config.steps, config.episodes_per_step, config.responses, config.teacher_responses
    )
    ratios = stage_ratios(config.ratio_max, config.ratio_step)
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher = teacher or VLM.load(config.teacher)
    student = student or load_student(config.student, config.teacher, config.student_layers)
    total = config.steps * per_step
    # Parts never straddle a stage: a part holds the questions of consecutive steps of one ratio.
    parts: list[tuple[int, int, float]] = []  # (first question, count, ratio)
    for step in range(config.steps):
        ratio = ratio_at(step, config.steps, config.ratio_max, config.ratio_step)
        first = step * per_step
        if parts and parts[-1][2] == ratio and parts[-1][1] + per_step <= max(config.part_size, per_step):
            parts[-1] = (parts[-1][0], parts[-1][1] + per_step, ratio)
        else:
            parts.append((first, per_step, ratio))

    def sampling(n: int, salt: int) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repetition_penalty=config.repetition_penalty,
            n=n,
            seed=config.seed * 1_000_003 + salt,
        )

    written = 0
    for index, (first, count, ratio) in enumerate(parts):
        prompts = None
        stage = ratios.index(ratio)
        path = part_path(data_dir, "masters", index)
        if not path.is_file():
            prompts = question_prompts(
                first, count, config.data_seed, config.resolution, config.min_objects, config.max_objects
            )
            conversations = [p.messages for p in prompts]
            episodes: list = []
            if config.teacher_responses:
                with masked(teacher.model, ratio):
                    generations = teacher.generate(
                        conversations, sampling(config.teacher_responses, 2 * index)
                    )
                episodes += _episodes(prompts, generations, "teacher", ratio, stage)
            if config.responses > config.teacher_responses:
                generations = student.generate(
                    conversations, sampling(config.responses - config.teacher_responses, 2 * index + 1)
                )
                episodes += _episodes(prompts, generations, "student", ratio, stage)
            # Group each question's responses together: a step's batch is whole questions.
            order = {p.id: k for k, p in enumerate(prompts)}
            episodes.sort(key=lambda e: order[e.group])
            save_episodes(episodes, path, "images")
            written += 1
        baseline = part_path(data_dir, BASELINE_DATA, index)
        if config.baselines and not baseline.is_file():
            prompts = prompts or question_prompts(
                first, count, config.data_seed, config.resolution, config.min_objects, config.max_objects
            )
            generations = teacher.generate(
                [p.messages for p in prompts], sampling(config.responses, 10**6 + index)
            )
            save_episodes(
                _episodes(prompts, generations, "teacher", 0.0, len(ratios) - 1), baseline, "images"
            )
            written += 1
    summary = {
        "questions": total,
        "parts": len(parts),
        "parts_written_now": written,
        "ratios_by_part": [ratio for _, _, ratio in parts],
        "seconds": time.perf_counter() - started,
        "config": dataclasses.asdict(config),
    }
    atomic_write_json(data_dir / "manifest.json", summary)
    return summary


def load_data(data_dir: Path, kind: str, steps: int, episodes_per_step: int) -> list:
    """The first steps x episodes_per_step stored episodes of `kind`, in step order."""
    from vlmrl.rl.episode import load_episodes

    needed = steps * episodes_per_step
    episodes: list = []
    part = 0
    while len(episodes) < needed and part_path(data_dir, kind, part).is_file():
        episodes += load_episodes(part_path(data_dir, kind, part))
        part += 1
    if len(episodes) < needed:
        raise ValueError(
            f"--data-dir {data_dir}: {len(episodes)} '{kind}' episodes, the run needs {needed} "
            f"(steps x episodes_per_step); generate them with `vlmrl masters generate`"
        )
    return episodes[:needed]


# ----------------------------------------------------------------------------- teacher signals


class MaskedTeacher:
    """The teacher, with masks switched only when the ratio changes (a stage boundary)."""

    def __init__(self, vlm: Any):
        self.vlm = vlm
        self.ratio = 0.0

    def set_ratio(self, ratio: float) -> None:
        from vlmrl.masters.masking import apply_masks

        if ratio != self.ratio:
            apply_masks(self.vlm.model, ratio)
            self.ratio = ratio

    def log_distributions(
        self, episodes: list, temperature: float = 1.0, vocabulary: int | None = None
    ) -> list:
        """Per episode, the masked teacher's [action tokens, vocab] log-distributions.

        `vocabulary`: keep (and renormalise over) the first that many tokens only.
        """
        import torch

        from vlmrl.masters.rewards import shared_log_distributions

        results: list = [None] * len(episodes)
        for ratio in sorted({float(e.info.get("ratio", 0.0)) for e in episodes}, reverse=True):
            self.set_ratio(ratio)
            chosen = [i for i, e in enumerate(episodes) if float(e.info.get("ratio", 0.0)) == ratio]
            with torch.no_grad():
                scores = self.vlm.score(
                    [episodes[i].messages for i in chosen], temperature=temperature, distributions=True
                )
            rows = scores.action_log_distributions.float()
            if vocabulary is not None:
                rows = shared_log_distributions(rows, vocabulary)
            counts = scores.action_mask.sum(1).tolist()
            for i, piece in zip(chosen, torch.split(rows, counts)):
                results[i] = piece
        return results


def shared_vocabulary(
    teacher: Any, student: Any, teacher_name: str = "teacher", student_name: str = "student"
) -> int:
    """How many leading tokens the teacher's and the student's distributions are compared over.

    Equal output rows: all of them. Rows that differ (padding past the tokenizer's real tokens,
    as Qwen2.5-VL-7B's 152064 and 3B's 151936): the tokenizer's tokens, which both models must
    share and both must cover.
    """
    teacher_rows = teacher.model.get_output_embeddings().weight.shape[0]
    student_rows = student.model.get_output_embeddings().weight.shape[0]
    if teacher_rows == student_rows:
        return teacher_rows
    tokens = len(teacher.tokenizer)
    if len(student.tokenizer) != tokens or teacher.tokenizer.get_vocab() != student.tokenizer.get_vocab():
        raise ValueError(
            f"teacher '{teacher_name}' and student '{student_name}' must share a tokenizer "
            f"({tokens} and {len(student.tokenizer)} tokens; output rows {teacher_rows} and {student_rows})"
        )
    if tokens > min(teacher_rows, student_rows):
        raise ValueError(
            f"the tokenizer of '{teacher_name}' has {tokens} tokens but the models have only "
            f"{teacher_rows} and {student_rows} output rows"
        )
    return tokens


def judge_accuracy(judge: Any, episodes: list, max_new_tokens: int = 8) -> list[float]:
    """R_acc from a judge model's yes/no verdict (Eq. 6); an unreadable verdict counts as 0."""
    from vlmrl.masters.rewards import judge_prompt, parse_judgement
    from vlmrl.model import SamplingParams
    from vlmrl.model.formats import FormatFailure

    conversations = [
        [
            {
                "role": "user",
                "content": judge_prompt(e.info.get("question", ""), str(e.info.get("answer")), e.text),
            }
        ]
        for e in episodes
    ]
    replies = judge.generate(conversations, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    verdicts = [parse_judgement(g.text) for g in replies]
    return [0.0 if isinstance(v, FormatFailure) else v for v in verdicts]


# ----------------------------------------------------------------------------- evaluation


def evaluate_shapes(vlm: Any, config: Any, out_dir: Path) -> dict[str, Any]:
    """Greedy held-out shapes-qa accuracy with its bootstrap interval, via the one harness."""
    from vlmrl.evals import evaluate
    from vlmrl.evals.builtin import shapes_qa_task

    task = shapes_qa_task(
        n=config.eval_size,
        seed=config.eval_seed,
        resolution=config.resolution,
        min_objects=config.min_objects,
        max_objects=config.max_objects,
    )
    results = evaluate(vlm, [task], out_dir=out_dir, batch_size=64, seed=config.seed, show_progress=False)
    entry = results["tasks"]["shapes-qa"]
    return {
        "accuracy": entry["metrics"]["accuracy"],
        "interval": list(entry["intervals"]["accuracy"]),
        "format": entry["metrics"].get("format"),
        "count": entry["count"],
    }


# ----------------------------------------------------------------------------- distillation


def run_distill(
    config: MastersConfig,
    teacher: Any = None,
    student: Any = None,
    callbacks: Sequence[Callable[..., None]] = (),
) -> dict[str, Any]:
    """Train; `callbacks(trainer, metrics)` run after every update (e.g. to refresh a report)."""
    import torch

    from vlmrl.masters.rewards import distill_rewards, jensen_shannon, shared_log_distributions
    from vlmrl.masters.student import load_student
    from vlmrl.model import VLM
    from vlmrl.rl.distributed import is_main_process
    from vlmrl.rl.episode import OfflineSource
    from vlmrl.rl.prompts import accuracy_reward
    from vlmrl.rl.trainer import RewardFunction, Trainer
    from vlmrl.runs import atomic_write_json, read_json, save_run_config

    if config.method not in METHODS:
        raise ValueError(f"--method '{config.method}' is not one of {METHODS}")
    if config.threads:
        torch.set_num_threads(config.threads)
    _check_sizes(config.steps, config.episodes_per_step, config.responses, config.teacher_responses)
    directory = Path(config.out)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher = teacher or VLM.load(config.teacher)
    student = student or load_student(config.student, config.teacher, config.student_layers)
    vocabulary = shared_vocabulary(teacher, student, config.teacher, config.student)
    data_dir = Path(config.data_dir)
    run_generate(config.generate_config(), teacher=teacher, student=student)

    # The paper's settings per method: Masters is GRPO + KL + JSD with R = R_acc + R_distill;
    # SFT is the token NLL of the full teacher's responses (advantage 1 at ratio 1); logit KD
    # is the JSD term alone (advantage 0). One update per batch throughout.
    config.ppo_epochs, config.minibatches, config.recompute_old_logprobs = 1, 1, True
    if config.method == "masters":
        config.advantage = "grpo"
        episodes = load_data(data_dir, "masters", config.steps, config.episodes_per_step)
    else:
        config.advantage, config.beta = "given", 0.0
        episodes = load_data(data_dir, BASELINE_DATA, config.steps, config.episodes_per_step)
        for episode in episodes:
            episode.info["advantage"] = 1.0 if config.method == "sft" else 0.0
    save_run_config(directory, config)

    masked_teacher = MaskedTeacher(teacher)
    judge = None
    if config.judge:
        judge = teacher if config.judge in ("teacher", config.teacher) else VLM.load(config.judge)
    step_tokens = {"count": 1.0}
    # Teacher and student distributions ([tokens, vocabulary] each: about 0.6 GB per
    # 1024-token response at Qwen's 152k vocabulary) are scored micro-batch by micro-batch and
    # dropped after it: the reward pass keeps one float per response, and the loss scores the
    # teacher again on the trainer's micro-batch.

    def accuracy(batch: list) -> list[float]:
        # Rewards see the whole step first: its token count normalises the JSD term.
        step_tokens["count"] = float(max(1, sum(e.action_token_count for e in batch)))
        if judge is None:
            return [accuracy_reward(e) for e in batch]
        if judge is teacher:
            masked_teacher.set_ratio(0.0)  # the judge is the full teacher, never a masked one
        return judge_accuracy(judge, batch)

    def distill(batch: list) -> list[float]:
        """R_distill (Eq. 7) from each response's mean token JSD to the masked teacher."""
        divergences: list[float] = []
        for start in range(0, len(batch), config.micro_batch_size):
            chunk = batch[start : start + config.micro_batch_size]
            teacher_rows = masked_teacher.log_distributions(chunk, config.temperature, vocabulary)
            with torch.no_grad():
                scores = student.score(
                    [e.messages for e in chunk], temperature=config.temperature, distributions=True
                )
            student_rows = torch.split(
                shared_log_distributions(scores.action_log_distributions.float(), vocabulary),
                scores.action_mask.sum(1).tolist(),
            )
            divergences += [
                float(jensen_shannon(t.to(s.device), s).mean()) for t, s in zip(teacher_rows, student_rows)
            ]
            del teacher_rows, student_rows, scores
        for episode, value in zip(batch, divergences):
            episode.info["jsd"] = value
        return distill_rewards(divergences, [e.group for e in batch])

    def jsd_loss(scores: Any, batch: list) -> tuple[torch.Tensor, dict[str, float]]:
        """The JSD term of Eq. 8, summed over tokens and divided by the step's token count."""
        teacher_rows = torch.cat(masked_teacher.log_distributions(batch, config.temperature, vocabulary))
        student_rows = shared_log_distributions(scores.action_log_distributions.float(), vocabulary)
        divergence = jensen_shannon(teacher_rows.to(student_rows.device), student_rows)
        loss = config.jsd_weight * divergence.sum() / step_tokens["count"]
        return loss, {"jsd": float(divergence.detach().mean())}

    rewards = [RewardFunction("accuracy", accuracy, 1.0)]
    if config.method == "masters":
        rewards.append(RewardFunction("distill", distill, config.distill_reward_weight))
    uses_jsd = config.method in ("masters", "logit-kd") and config.jsd_weight != 0
    results_path = directory / "results.json"
    before = read_json(results_path).get("before") if results_path.is_file() else None
    if before is None and config.eval_size:
        before = evaluate_shapes(student, config, directory / "eval-before")
        if is_main_process():
            atomic_write_json(results_path, {"before": before})
    trainer = Trainer(
        student,
        OfflineSource(episodes),
        config,
        directory,
        rewards=rewards,
        auxiliary_loss=jsd_loss if uses_jsd else None,
        score_distributions=uses_jsd,
        callbacks=callbacks,
    )
    try:
        history = trainer.fit()
    finally:
        masked_teacher.set_ratio(0.0)  # hand the caller's teacher back unmasked
    after = evaluate_shapes(student, config, directory / "eval-after") if config.eval_size else None
    results = {
        "method": config.method,
        "before": before,
        "after": after,
        "gain": after["accuracy"] - before["accuracy"] if before and after else None,
        "steps": trainer.step,
        "student_updates": sum(int(h.get("optimizer_steps", 0)) for h in history),
        "final_reward_mean": history[-1]["reward_mean"] if history else None,
        "seconds": time.perf_counter() - started,
    }
    if is_main_process():
        atomic_write_json(results_path, results)
        student.save(directory / "model")
    return results


def run_eval(model: Any, config: Any, out_dir: Path) -> dict[str, Any]:
    """Held-out accuracy of one model (teacher, student or a trained run's model/)."""
    return evaluate_shapes(model, config, out_dir)
