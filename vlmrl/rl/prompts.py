"""Prompt datasets as a rollout source, and verifiable rewards on their answers.

`PromptSource` turns any indexable collection of prompts into GRPO groups: each prompt is
sampled `group_size` times and its completions form one group. It is the rollout source of
RLVR (`vlmrl rlvr`), of Vision-Zero's RLVR phase and of TTRV (with labels kept out of reach
of the reward). Its state is a cursor, so a resumed run continues with the same prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmrl.model.formats import FormatFailure, parse_answer
from vlmrl.rl.episode import Episode, Turn


@dataclass
class Prompt:
    """One prompt: the conversation up to the assistant's turn, and what grading needs."""

    id: str
    messages: list[dict[str, Any]]
    answer: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def question_prompt(record: dict[str, Any], where: str = "record") -> Prompt:
    """A `Prompt` from a QA record with `image`, `question`, `answer` (and optionally `id`)."""
    missing = [key for key in ("image", "question", "answer") if key not in record]
    if missing:
        raise ValueError(f"{where}: missing {missing}; expected keys image, question, answer")
    content = [{"type": "image", "image": record["image"]}, {"type": "text", "text": str(record["question"])}]
    info = {k: record[k] for k in ("question_type",) if k in record}
    return Prompt(
        id=str(record.get("id", where)),
        messages=[{"role": "user", "content": content}],
        answer=str(record["answer"]),
        info=info,
    )


class PromptSource:
    """GRPO groups from a prompt collection: `collect(policy, n)` samples n / group_size prompts.

    Prompts are visited in a seeded permutation per pass (epoch), so the order is a pure
    function of (seed, cursor). Under several processes every process advances the cursor by
    the global number of prompts and samples its own contiguous share.
    """

    def __init__(
        self,
        prompts: Sequence[Prompt] | Callable[[int], Prompt],
        group_size: int,
        sampling: Any,
        *,
        size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        generate_batch_size: int | None = None,
    ):
        if callable(prompts) and not isinstance(prompts, Sequence):
            if size is None:
                raise ValueError("a prompt function needs `size`, the number of prompts")
            self._get, self.size = prompts, size
        else:
            self._get, self.size = prompts.__getitem__, len(prompts)
        if self.size < 1:
            raise ValueError("PromptSource needs at least one prompt")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size
        self.sampling = sampling
        self.shuffle = shuffle
        self.seed = seed
        self.generate_batch_size = generate_batch_size
        self.cursor = 0  # prompts consumed since the start, over all processes

    def _prompt_at(self, position: int) -> Prompt:
        epoch, offset = divmod(position, self.size)
        if self.shuffle:
            offset = int(np.random.default_rng([self.seed, epoch]).permutation(self.size)[offset])
        return self._get(offset)

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Episode]:
        import dataclasses

        from vlmrl.rl.distributed import rank_and_world

        if n % self.group_size:
            raise ValueError(f"asked for {n} episodes, not a multiple of group_size={self.group_size}")
        rank, world = rank_and_world()
        count = n // self.group_size
        start = self.cursor + rank * count
        prompts = [self._prompt_at(start + i) for i in range(count)]
        self.cursor += count * world
        sampling = dataclasses.replace(self.sampling, n=self.group_size)
        generations = policy.generate(
            [p.messages for p in prompts], sampling, batch_size=self.generate_batch_size
        )
        episodes = []
        for generation in generations:
            prompt = prompts[generation.prompt_index]
            episodes.append(
                Episode(
                    messages=[*prompt.messages, generation.as_message()],
                    turns=[
                        Turn(
                            token_ids=list(generation.token_ids),
                            logprobs=list(generation.logprobs),
                            text=generation.text,
                            finish_reason=generation.finish_reason,
                        )
                    ],
                    group=f"{start + generation.prompt_index}:{prompt.id}",
                    truncated=generation.finish_reason == "length",
                    info={"prompt_id": prompt.id, "answer": prompt.answer, **prompt.info},
                )
            )
        return episodes

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])


# --------------------------------------------------------------------------- verifiable rewards


def normalise_answer(text: str) -> str:
    """Case- and space-insensitive form of an answer for exact matching."""
    return " ".join(text.strip().lower().rstrip(".").split())


def answer_matches(text: str, answer: str | None) -> bool:
    parsed = parse_answer(text)
    if isinstance(parsed, FormatFailure) or answer is None:
        return False
    return normalise_answer(parsed) == normalise_answer(answer)


def accuracy_reward(episode: Episode) -> float:
    """1 when the last turn's <answer> equals the reference answer (normalised), else 0."""
    return 1.0 if answer_matches(episode.text, episode.info.get("answer")) else 0.0


def format_reward(episode: Episode) -> float:
    """1 when the last turn parses as an answer block, else 0 (a format failure)."""
    return 0.0 if isinstance(parse_answer(episode.text), FormatFailure) else 1.0


def answer_accuracy(
    policy: Any,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 32,
    batch_size: int = 64,
    samples: int = 0,
    seed: int = 0,
) -> dict:
    """Greedy held-out accuracy and format rate of `policy` on prompts with answers.

    With `samples` > 0 it also reports `sampled_accuracy`: the mean accuracy of that many
    temperature-1 samples per prompt (seeded), i.e. the policy's expected accuracy reward on
    held-out prompts, the quantity RL optimises. Greedy accuracy moves only once the argmax
    answer flips; the expected reward shows learning earlier.
    """
    from vlmrl.model import SamplingParams

    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    correct = formatted = 0
    by_type: dict[str, list[int]] = {}
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        for prompt, generation in zip(chunk, policy.generate([p.messages for p in chunk], sampling)):
            right = answer_matches(generation.text, prompt.answer)
            correct += right
            formatted += not isinstance(parse_answer(generation.text), FormatFailure)
            kind = str(prompt.info.get("question_type", "all"))
            by_type.setdefault(kind, []).append(int(right))
    total = max(1, len(prompts))
    sampled = None
    if samples > 0:
        stochastic = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, n=samples, seed=seed)
        hits = 0
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            for generation in policy.generate([p.messages for p in chunk], stochastic):
                hits += answer_matches(generation.text, chunk[generation.prompt_index].answer)
        sampled = hits / (total * samples)
    return {
        "accuracy": correct / total,
        "sampled_accuracy": sampled,
        "format_rate": formatted / total,
        "count": len(prompts),
        "accuracy_by_type": {k: sum(v) / len(v) for k, v in sorted(by_type.items())},
    }
