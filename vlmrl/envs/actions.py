"""The text action format of VL-DAC's worlds, and its total parser.

The policy answers each step with a JSON object `{"thoughts": ..., "action": ...}` (the
reference's format). Model text is untrusted: `parse_action` returns the index of a valid
action or a `FormatFailure`, never raises, never evaluates code. A failure is not fatal to
the rollout: `choose_action` then falls back to a uniformly random valid action (the
reference's rule for MiniWorld and gym-cards), and the step is counted as invalid.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmrl.model.formats import FormatFailure

_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_LEADING_NUMBER = re.compile(r"^\s*(\d+)\s*(?::.*)?$", re.DOTALL)


def format_action(action: str, thoughts: str = "") -> str:
    """The reply that takes `action` (used for format warm-up targets and tests)."""
    return json.dumps({"thoughts": thoughts, "action": action})


def _as_object(text: str) -> dict[str, Any] | FormatFailure:
    candidates = [text.strip()]
    found = _OBJECT.search(text)
    if found:
        candidates.append(found.group(0))
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return FormatFailure("no JSON object in the reply")


def parse_action(text: Any, action_names: list[str]) -> int | FormatFailure:
    """Index into `action_names` of the reply's "action", or why it names no valid action.

    The action may be given by its name (case and surrounding spaces ignored) or, for worlds
    whose prompt numbers the actions, by its number ("2" or "2: move forward").
    """
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    parsed = _as_object(text)
    if isinstance(parsed, FormatFailure):
        return parsed
    if "action" not in parsed:
        return FormatFailure('the JSON object has no "action" key')
    value = parsed["action"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return FormatFailure(f'"action" must be a string or a number, got {type(value).__name__}')
    if isinstance(value, float):
        if not value.is_integer():
            return FormatFailure(f'"action" {value} is not a whole number')
        value = int(value)
    wanted = str(value).strip().lower()
    names = [name.lower() for name in action_names]
    if wanted in names:
        return names.index(wanted)
    number = _LEADING_NUMBER.match(wanted)
    if number and not any(name.isdigit() for name in names):
        index = int(number.group(1))
        if 0 <= index < len(names):
            return index
    return FormatFailure(f'"action" {str(value)[:40]!r} is not one of {action_names}')


@dataclass
class ChosenAction:
    index: int
    valid: bool
    reason: str = ""


def choose_action(text: Any, action_names: list[str], rng: np.random.Generator) -> ChosenAction:
    """The parsed action, or a uniformly random valid one when the reply names none."""
    parsed = parse_action(text, action_names)
    if isinstance(parsed, FormatFailure):
        return ChosenAction(int(rng.integers(0, len(action_names))), False, parsed.reason)
    return ChosenAction(parsed, True)
