"""Helpers of the tool-loop tests: a scripted VLM whose replies are a function of the conversation."""

from __future__ import annotations

from collections.abc import Callable

from vlmrl.model.types import Generation


class ScriptedVLM:
    def __init__(
        self, reply: Callable[[list[dict]], str], prompt_tokens: Callable[[list[dict]], int] | None = None
    ):
        self.reply = reply
        self.prompt_tokens = prompt_tokens or (lambda conversation: 10 * len(conversation))
        self.calls: list[int] = []
        self.stops: list[list[str]] = []

    def generate(self, conversations, sampling=None):
        self.calls.append(len(conversations))
        self.stops.append(list(sampling.stop) if sampling is not None else [])
        return [
            Generation(self.reply(c), [5, 6, 7], [-0.1, -0.2, -0.3], index, 0, "stop_string")
            for index, c in enumerate(conversations)
        ]

    def encode(self, conversations, add_generation_prompt=True):
        class Encoded:
            def __init__(self, count):
                self.input_ids = [0] * count

        return [Encoded(self.prompt_tokens(c)) for c in conversations]


def assistant_turns(conversation: list[dict]) -> int:
    return sum(1 for m in conversation if m["role"] == "assistant")
