"""Fakes shared by the evals tests: a scripted VLM that answers from the prompt text."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vlmrl.model.types import Generation


def last_text(conversation: list[dict]) -> str:
    content = conversation[-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part.get("type") == "text")


class ScriptedVLM:
    """Answers each conversation with `reply(conversation)`; records every call."""

    last_text = staticmethod(last_text)

    def __init__(
        self, reply: Callable[[list[dict]], str], name: str = "scripted", fail_after: int | None = None
    ):
        self.reply = reply
        self.name = name
        self.fail_after = fail_after
        self.calls: list[int] = []  # batch sizes
        self.prompts: list[str] = []

    def generate(self, conversations, sampling=None):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("injected failure: the run is killed here")
        self.calls.append(len(conversations))
        out = []
        for index, conversation in enumerate(conversations):
            text = self.reply(conversation)
            self.prompts.append(last_text(conversation))
            out.append(Generation(text, [1, 2], [0.0, 0.0], index, 0, "stop"))
        return out


@pytest.fixture
def scripted():
    return ScriptedVLM
