import numpy as np
import pytest
from PIL import Image

from vlmrl.model import SamplingParams
from vlmrl.rl.episode import Episode, Turn
from vlmrl.rl.prompts import (
    Prompt,
    PromptSource,
    accuracy_reward,
    answer_matches,
    format_reward,
    question_prompt,
)


def _episode(text: str, answer: str | None) -> Episode:
    return Episode(messages=[], turns=[Turn([1], [0.0], text)], info={"answer": answer})


def test_verifiable_rewards():
    assert accuracy_reward(_episode("<answer> Red. </answer>", "red")) == 1.0
    assert accuracy_reward(_episode("<think>hm</think><answer>3</answer>", "4")) == 0.0
    assert accuracy_reward(_episode("red", "red")) == 0.0  # no answer block: a format failure
    assert accuracy_reward(_episode("<answer>red</answer>", None)) == 0.0
    assert format_reward(_episode("<answer>x</answer>", "y")) == 1.0
    assert format_reward(_episode("<answer>x", "x")) == 0.0
    assert answer_matches("<answer>large  metal cube</answer>", "Large metal cube")


def test_question_prompt_and_errors():
    prompt = question_prompt({"image": Image.new("RGB", (4, 4)), "question": "Q?", "answer": 3, "id": "a"})
    assert prompt.answer == "3" and prompt.id == "a"
    assert prompt.messages[0]["content"][1] == {"type": "text", "text": "Q?"}
    with pytest.raises(ValueError, match=r"rec: missing \['answer'\]"):
        question_prompt({"image": None, "question": "Q"}, "rec")


class _FakePolicy:
    """Records the prompts it is asked to continue; answers with the prompt's own number."""

    def __init__(self):
        self.asked = []

    def generate(self, conversations, sampling, batch_size=None):
        from vlmrl.model import Generation

        self.asked.append([c[0]["content"] for c in conversations])
        return [
            Generation(
                f"<answer>{c[0]['content']}</answer>", [7, 8], [-0.1, -0.2], p, s, "stop" if s else "length"
            )
            for p, c in enumerate(conversations)
            for s in range(sampling.n)
        ]


def test_prompt_source_groups_cursor_and_resume():
    prompts = [
        Prompt(id=str(i), messages=[{"role": "user", "content": str(i)}], answer=str(i % 2)) for i in range(5)
    ]
    source = PromptSource(prompts, group_size=3, sampling=SamplingParams(max_new_tokens=4), seed=1)
    policy = _FakePolicy()
    rng = np.random.default_rng(0)
    episodes = source.collect(policy, 6, rng)
    assert len(episodes) == 6 and source.cursor == 2
    assert len({e.group for e in episodes}) == 2
    assert [e.group for e in episodes[:3]] == [episodes[0].group] * 3
    assert episodes[0].truncated and not episodes[1].truncated
    assert episodes[0].messages[-1]["token_ids"] == [7, 8]
    state = source.state_dict()
    following = source.collect(policy, 9, rng)
    again = PromptSource(prompts, group_size=3, sampling=SamplingParams(), seed=1)
    again.load_state_dict(state)
    assert [e.info["prompt_id"] for e in again.collect(_FakePolicy(), 9, rng)] == [
        e.info["prompt_id"] for e in following
    ]
    # a full pass over 5 prompts visits each once, in a seeded order
    seen = [p for asked in policy.asked for p in asked]
    assert sorted(seen) == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="multiple of group_size"):
        source.collect(policy, 4, rng)
    with pytest.raises(ValueError, match="needs `size`"):
        PromptSource(lambda i: prompts[i], 2, SamplingParams())
