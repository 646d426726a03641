"""The output formats models are taught, and total parsers for them.

Model output is untrusted input: every parser here returns a value or a `FormatFailure`
(never raises on any string), so a malformed answer, tool call or vote is counted and
rewarded as a format error instead of killing a run.

Formats (the tiny default is pretrained on exactly these):
- answer:    optional `<think>...</think>` then `<answer>VALUE</answer>`
- tool call: `<tool_call>{"name": "zoom", "arguments": {...}}</tool_call>`
- vote:      an answer whose value names a player, e.g. `<answer>3</answer>`
- boxed:     `\\boxed{VALUE}`, the final-answer convention of math-style reasoning models
- box:       `[x0, y0, x1, y1]`, a bounding box in pixels (exclusive ends), as Qwen2.5-VL writes one

`extract_final_answer` turns any of these into the plain answer a stock benchmark parser expects
(lmms-eval tasks, user datasets whose references are plain answers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"

_TOOL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_INTEGER = re.compile(r"[-+]?\d+")
_BOXED = re.compile(r"\\boxed\s*\{")
_BOX_NUMBER = r"\s*([-+]?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_BOX_NUMBER] * 4) + r"\]")


@dataclass(frozen=True)
class FormatFailure:
    """Why a model output could not be parsed."""

    reason: str

    def __bool__(self) -> bool:  # lets callers write `if not parsed: ...`
        return False


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


def format_answer(value: str, thought: str | None = None) -> str:
    prefix = f"{THINK_OPEN}{thought}{THINK_CLOSE}" if thought else ""
    return f"{prefix}{ANSWER_OPEN}{value}{ANSWER_CLOSE}"


def _answer_blocks(text: str) -> list[str]:
    """What `re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)` returns, in linear time (the
    regex rescans to the end from every unclosed `<answer>`: quadratic on hostile output)."""
    blocks = []
    position = 0
    while (start := text.find(ANSWER_OPEN, position)) != -1:
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
        if end == -1:
            break
        blocks.append(text[start + len(ANSWER_OPEN) : end])
        position = end + len(ANSWER_CLOSE)
    return blocks


def parse_answer(text: Any) -> str | FormatFailure:
    """The stripped content of the last `<answer>` block, or why there is none."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    matches = _answer_blocks(text)
    if not matches:
        if ANSWER_OPEN in text:
            return FormatFailure("unclosed <answer> tag")
        return FormatFailure("no <answer>...</answer> block")
    value = matches[-1].strip()
    if not value:
        return FormatFailure("empty answer")
    if ANSWER_OPEN in value:
        return FormatFailure("nested <answer> tag")
    return value


def parse_boxed(text: Any, first: bool = False) -> str | FormatFailure:
    """The stripped content of the last closed `\\boxed{...}`, braces inside it balanced, or why
    there is none. "Last" is by opening position, so `\\boxed{\\boxed{x}}` gives `x`.
    With `first`, the earliest-opened closed box instead (a spy-game clue is its first box)."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    boxed_starts = {match.end() - 1: match.end() for match in _BOXED.finditer(text)}
    if not boxed_starts:
        return FormatFailure("no \\boxed{...}")
    # One pass with a stack of open braces: linear even on adversarial text such as many
    # unclosed `\boxed{` in a row. A stray `}` with nothing open is ignored.
    open_braces: list[int] = []
    last: tuple[int, int] | None = None  # (content start, content end) of the last-opened closed box
    for position, character in enumerate(text):
        if character == "{":
            open_braces.append(position)
        elif character == "}" and open_braces:
            opened = open_braces.pop()
            if opened in boxed_starts and (
                last is None or (boxed_starts[opened] < last[0] if first else boxed_starts[opened] > last[0])
            ):
                last = (boxed_starts[opened], position)
    if last is None:
        return FormatFailure("unclosed \\boxed{")
    value = text[last[0] : last[1]].strip()
    if not value:
        return FormatFailure("empty \\boxed{}")
    return value


@dataclass(frozen=True)
class FinalAnswer:
    """The answer a benchmark should score, and where it came from."""

    text: str
    source: str  # "answer" (an <answer> block), "boxed" (a \boxed{}) or "raw" (the whole text)


def extract_final_answer(text: Any) -> FinalAnswer:
    """The final answer of a response, dropping the reasoning around it (never raises).

    The last `<answer>` block (a `\\boxed{}` inside it is unwrapped), else the last closed
    `\\boxed{}`, else the raw text unchanged, so a plain-text model is scored exactly as before.
    A malformed block (unclosed, nested or empty `<answer>`, unclosed `\\boxed{`) counts as no
    block: the raw text goes to the benchmark's own parser, which then usually marks it wrong.
    Non-text input gives an empty raw answer.
    """
    if not isinstance(text, str):
        return FinalAnswer("", "raw")
    answer = parse_answer(text)
    if not isinstance(answer, FormatFailure):
        inner = parse_boxed(answer)
        return FinalAnswer(answer if isinstance(inner, FormatFailure) else inner, "answer")
    boxed = parse_boxed(text)
    if not isinstance(boxed, FormatFailure):
        return FinalAnswer(boxed, "boxed")
    return FinalAnswer(text, "raw")


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    return f"{TOOL_OPEN}{json.dumps({'name': name, 'arguments': arguments}, separators=(', ', ': '))}{TOOL_CLOSE}"


def parse_tool_call(text: Any) -> ToolCall | FormatFailure:
    """The first `<tool_call>` block as a ToolCall, or why it is not one."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    match = _TOOL.search(text)
    if match is None:
        return FormatFailure("no <tool_call>...</tool_call> block")
    try:
        payload = json.loads(match.group(1))
    except (json.JSONDecodeError, RecursionError) as error:
        return FormatFailure(f"tool call is not valid JSON: {error}")
    if not isinstance(payload, dict):
        return FormatFailure("tool call must be a JSON object")
    name = payload.get("name")
    arguments = payload.get("arguments", {})
    if not isinstance(name, str) or not name:
        return FormatFailure("tool call has no string 'name'")
    if not isinstance(arguments, dict):
        return FormatFailure("tool call 'arguments' must be an object")
    return ToolCall(name=name, arguments=arguments)


def parse_vote(text: Any, players: int) -> int | FormatFailure:
    """A vote for player 1..players, from the answer block; 0 is not a player."""
    answer = parse_answer(text)
    if isinstance(answer, FormatFailure):
        return answer
    found = _INTEGER.search(answer)
    if found is None:
        return FormatFailure(f"vote {answer!r} names no player number")
    try:
        player = int(found.group())
    except ValueError:
        return FormatFailure(f"vote {answer!r} is not a number")
    if not 1 <= player <= players:
        return FormatFailure(f"vote for player {player}, but players are 1..{players}")
    return player


def parse_number(text: Any) -> float | FormatFailure:
    """A float from an answer string such as '3', '-2.5', '1,204' or '42%'."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    cleaned = text.strip().replace(",", "").rstrip("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return FormatFailure(f"{text!r} is not a number")
    if value != value or value in (float("inf"), float("-inf")):
        return FormatFailure(f"{text!r} is not a finite number")
    return value


def parse_box(text: Any) -> tuple[float, float, float, float] | FormatFailure:
    """The last `[x0, y0, x1, y1]` in the text (four plain numbers in square brackets) as a box,
    or why there is none.

    The last one, as the final answer is the last `<answer>` block: a model that corrects itself
    is scored on its correction. Ends are exclusive, so a box must have x0 < x1 and y0 < y1: an
    empty or flipped box is a format error, not a box with zero overlap. Coordinates may be
    negative or past the image (a box partly outside it is wrong, not malformed).
    """
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    last = None
    for match in _BOX.finditer(text):
        last = match
    if last is None:
        return FormatFailure("no [x0, y0, x1, y1] box of four numbers")
    x0, y0, x1, y1 = (float(value) for value in last.groups())
    if not all(abs(value) < float("inf") for value in (x0, y0, x1, y1)):
        return FormatFailure(f"box {last.group()[:60]!r} has a coordinate too large to be a number")
    if not (x0 < x1 and y0 < y1):
        return FormatFailure(f"box {last.group()[:60]!r} is empty or flipped (needs x0 < x1 and y0 < y1)")
    return (x0, y0, x1, y1)


# Instructions the tiny default is pretrained to follow. Methods use these same texts so the
# embedded model understands them out of the box; a real checkpoint reads them as plain English.
CLUE_INSTRUCTION = "Who is the spy. You are player {player}. Give one clue about your image."
VOTE_INSTRUCTION = "Who is the spy. You are player {player}. Clues:\n{clues}\nWhich player is the spy?"
ZOOM_INSTRUCTION = (
    "{question} You may zoom: "
    '<tool_call>{{"name": "zoom", "arguments": {{"bbox": [x0, y0, x1, y1]}}}}</tool_call> in pixels.'
)
ZOOM_RESULT = "Zoomed view of [{x0}, {y0}, {x1}, {y1}]."


def format_clues(clues: list[tuple[int, str]]) -> str:
    """'player 1: ...' lines, the transcript format of VOTE_INSTRUCTION."""
    return "\n".join(f"player {player}: {clue}" for player, clue in clues)


# --------------------------------------------------------------------------- spy game (Vision-Zero)

ABSTAIN = "N/A"
_BOXED_OPEN = "\\boxed{"
# A whole number on its own: not part of a word or of a decimal such as 2.5.
_STANDALONE_INTEGER = re.compile(r"(?<![\w.])[-+]?\d+(?!\w|\.\d)")
_ABSTAIN_WORDS = re.compile(r"^\s*(n\s*/\s*a|na|none|abstain)\s*[.!]?\s*$", re.IGNORECASE)


def format_boxed(value: str, thought: str | None = None) -> str:
    prefix = f"{thought.rstrip()} " if thought else ""
    return f"{prefix}{_BOXED_OPEN}{value}}}"


def reasoning_before_answer(text: Any) -> str:
    """The text before the first `\\boxed{` or `<answer>` (a player's private reasoning)."""
    if not isinstance(text, str):
        return ""
    cuts = [i for i in (text.find(_BOXED_OPEN), text.find(ANSWER_OPEN)) if i >= 0]
    reasoning = text[: min(cuts)] if cuts else ""
    return reasoning.replace(THINK_OPEN, "").replace(THINK_CLOSE, "").strip()


def parse_clue(text: Any, require_box: bool = True) -> str | FormatFailure:
    """A spy-game clue: the first `\\boxed{}`, else an `<answer>` block; with `require_box=False`
    also a bare sentence (the first non-empty line: the embedded default's clue format)."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    boxed = parse_boxed(text, first=True)
    if not isinstance(boxed, FormatFailure):
        return boxed
    answer = parse_answer(text)
    if not isinstance(answer, FormatFailure):
        return answer
    if require_box:
        return FormatFailure("no clue in \\boxed{} or <answer>")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else FormatFailure("empty clue")


def parse_spy_vote(text: Any, players: int) -> int | str | FormatFailure:
    """A decision: player 1..players, `ABSTAIN` ('N/A'), or why it is neither.

    As the Vision-Zero reference reads votes: the first `\\boxed{}`, else the `<answer>` block;
    'N/A' (or 'NA', 'none', 'abstain') abstains; otherwise the first stand-alone number is the
    player voted for, and must be one of the players.
    """
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    value = parse_boxed(text, first=True)
    if isinstance(value, FormatFailure):
        value = parse_answer(text)
    if isinstance(value, FormatFailure):
        return FormatFailure(f"no \\boxed{{}} or <answer> block ({value.reason})")
    if _ABSTAIN_WORDS.match(value):
        return ABSTAIN
    found = _STANDALONE_INTEGER.search(value)
    if found is None:
        return FormatFailure(f"decision {value[:40]!r} names no player number and is not N/A")
    try:
        player = int(found.group())
    except ValueError:  # pragma: no cover - the pattern only matches integers
        return FormatFailure(f"decision {value[:40]!r} is not a number")
    if not 1 <= player <= players:
        return FormatFailure(f"decision for player {player}, but players are 1..{players}")
    return player
