"""Replay views: one saved episode as HTML, with the view its method's `info["replay"]` asks for.

Every episode gets the conversation view (messages with their images, each assistant turn with
its reward and advantage). An episode whose `info["replay"]` has a known `kind` also gets that
kind's view, which makes the method legible (DESIGN 9.6): `spy_game`, `tool_trajectory`, `mask`,
`env_episode`. The schemas are the contract with the method packages; the report never imports
them. Replays are untrusted data (they hold model text), so every value goes through `escape`,
unknown or malformed fields are shown as missing rather than raised, and images are only ever
the episode's own files inside the run directory.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmrl.report.readers import Sample


def escape(value: Any) -> str:
    """Text for HTML element content and quoted attributes: nothing in it can open a tag."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(value) if value is not None else "-"
    if isinstance(value, float) and not math.isfinite(value):
        return escape(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def image_tag(sample: Sample, index: Any, css_class: str = "thumb", caption: str = "") -> str:
    """The episode's image number `index` (0-based order of appearance in its messages)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(sample.images):
        return f'<span class="missing">image {escape(index)} not in this episode</span>'
    url = sample.images[index]
    if url is None:
        return f'<span class="missing">image {index} is missing on disk</span>'
    label = escape(caption or f"image {index}")
    return (
        f'<img class="{escape(css_class)}" src="{escape(url)}" alt="{label}" title="{label}" loading="lazy">'
    )


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {escape(kind)}">{escape(text)}</span>'


def table(headers: list[str], rows: list[list[str]], css_class: str = "") -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{escape(css_class)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# ----------------------------------------------------------------------------- conversation


def _advantages(record: dict[str, Any]) -> list[Any]:
    """Per assistant turn: the advantage the update used (saved by the trainer), if any."""
    value = record.get("advantage")
    turns = len(_list(record.get("turns")))
    if isinstance(value, list):
        return value + [None] * (turns - len(value))
    return [value] * turns


def first_assistant_index(record: dict[str, Any]) -> int:
    """Index of the first assistant message (the end of the prompt), or the message count."""
    messages = _list(record.get("messages"))
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            return index
    return len(messages)


def conversation_view(sample: Sample, start: int = 0, stop: int | None = None) -> str:
    """Messages `start` to `stop` (all by default); images keep their episode-wide numbers."""
    record = sample.record
    turns = _list(record.get("turns"))
    step_rewards = _list(record.get("step_rewards"))
    advantages = _advantages(record)
    parts = []
    image_index = 0
    assistant_index = 0
    for message_index, message in enumerate(_list(record.get("messages"))):
        if not isinstance(message, dict):
            continue
        shown = start <= message_index and (stop is None or message_index < stop)
        role = str(message.get("role", "?"))
        content = message.get("content", "")
        pieces = []
        for part in [content] if isinstance(content, str) else _list(content):
            if isinstance(part, str):
                pieces.append(f'<div class="text">{escape(part)}</div>')
            elif isinstance(part, dict) and part.get("type") == "image":
                pieces.append(image_tag(sample, image_index))
                image_index += 1
            elif isinstance(part, dict) and "text" in part:
                pieces.append(f'<div class="text">{escape(part.get("text"))}</div>')
        notes = ""
        if role == "assistant":
            turn = _dict(turns[assistant_index]) if assistant_index < len(turns) else {}
            facts = [f"turn {assistant_index}"]
            if turn:
                facts.append(f"{len(_list(turn.get('token_ids')))} tokens")
                logprobs = [v for v in _list(turn.get("logprobs")) if isinstance(v, (int, float))]
                if logprobs:
                    facts.append(f"mean log-prob {sum(logprobs) / len(logprobs):.3f}")
                if turn.get("finish_reason") not in (None, "stop"):
                    facts.append(f"finish: {turn.get('finish_reason')}")
            if assistant_index < len(step_rewards):
                facts.append(f"step reward {number(step_rewards[assistant_index])}")
            if assistant_index < len(advantages) and advantages[assistant_index] is not None:
                facts.append(f"advantage {number(advantages[assistant_index])}")
            notes = f'<div class="turn-facts">{escape(" · ".join(facts))}</div>'
            assistant_index += 1
        if not shown:
            continue
        parts.append(
            f'<div class="message {escape(role)}"><div class="who">{escape(role)}</div>'
            f"{''.join(pieces)}{notes}</div>"
        )
    return f'<div class="conversation">{"".join(parts)}</div>'


# ----------------------------------------------------------------------------- spy game


def spy_game_view(sample: Sample, replay: dict[str, Any]) -> str:
    """Players' images with the spy marked, clues by round, votes, rewards by role."""
    spy = replay.get("spy")
    cards = []
    for player in _list(replay.get("players")):
        player = _dict(player)
        is_spy = player.get("role") == "spy" or (player.get("number") == spy and spy is not None)
        label = f"player {player.get('number', '?')}" + (" (spy)" if is_spy else "")
        cards.append(
            f'<figure class="player{" spy" if is_spy else ""}">'
            f"{image_tag(sample, player.get('image'), 'player-image', label)}"
            f"<figcaption>{escape(label)}</figcaption></figure>"
        )
    clues = sorted(
        (_dict(c) for c in _list(replay.get("clues"))),
        key=lambda c: (str(c.get("round", "")), str(c.get("player", ""))),
    )
    clue_rows = [
        [
            escape(c.get("round", "?")),
            escape(c.get("player", "?")),
            f'<span class="text">{escape(c.get("text", ""))}</span>',
        ]
        for c in clues
    ]
    vote_rows = []
    for decision in _list(replay.get("decisions")):
        decision = _dict(decision)
        vote = decision.get("vote")
        right = vote is not None and vote == spy
        vote_rows.append(
            [
                escape(decision.get("voter", "?")),
                escape("no vote (unparseable)" if vote is None else vote) + (" ✓" if right else ""),
                f'<span class="text">{escape(decision.get("raw", ""))}</span>',
            ]
        )
    reward_rows = [[escape(who), number(value)] for who, value in _dict(replay.get("rewards")).items()]
    return (
        f'<div class="replay spy-game"><div class="replay-title">spy game {escape(replay.get("game", ""))} · '
        f"stage {escape(replay.get('stage', '?'))} · spy: player {escape(spy)}</div>"
        f'<div class="players">{"".join(cards)}</div>'
        f"<h4>clues</h4>{table(['round', 'player', 'clue'], clue_rows)}"
        f"<h4>votes</h4>{table(['voter', 'vote', 'raw text'], vote_rows)}"
        f"<h4>rewards</h4>{table(['player / role', 'reward'], reward_rows)}</div>"
    )


# ----------------------------------------------------------------------------- tool trajectory


def _box(value: Any) -> list[float] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in value)
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def tool_trajectory_view(sample: Sample, replay: dict[str, Any]) -> str:
    """The original image with each box drawn, the crops in order, the text of each turn."""
    steps = [_dict(s) for s in _list(replay.get("steps"))]
    boxes = []
    for number_, step in enumerate(steps, start=1):
        box = _box(step.get("bbox"))
        if box is None or step.get("source", "original_image") != "original_image":
            continue
        x0, y0, x1, y1 = box
        boxes.append(
            f'<rect x="{x0 * 100:.2f}%" y="{y0 * 100:.2f}%" width="{(x1 - x0) * 100:.2f}%" '
            f'height="{(y1 - y0) * 100:.2f}%" class="box"/>'
            f'<text x="{x0 * 100 + 1:.2f}%" y="{y0 * 100 + 6:.2f}%" class="box-label">{number_}</text>'
        )
    overlay = f'<svg class="boxes" xmlns="http://www.w3.org/2000/svg">{"".join(boxes)}</svg>'
    original = f'<div class="boxed">{image_tag(sample, 0, "original", "original image")}{overlay}</div>'
    turns = _list(sample.record.get("turns"))
    rows = []
    for number_, step in enumerate(steps, start=1):
        box = _box(step.get("bbox"))
        crop = step.get("crop_image")
        turn = step.get("turn")
        text = ""
        if isinstance(turn, int) and not isinstance(turn, bool) and 0 <= turn < len(turns):
            text = _dict(turns[turn]).get("text", "")
        rows.append(
            [
                str(number_),
                escape(turn),
                escape(step.get("source", "?")),
                escape("invalid" if box is None else ", ".join(f"{v:.2f}" for v in box)),
                image_tag(sample, crop, "crop", f"crop of step {number_}") if crop is not None else "-",
                escape(step.get("crop_size", "-")),
                f'<span class="error">{escape(step["error"])}</span>' if step.get("error") else "",
                f'<span class="text">{escape(text)}</span>',
            ]
        )
    correct = replay.get("correct")
    verdict = (
        badge("correct", "good") if correct is True else badge("wrong", "bad") if correct is False else ""
    )
    overturn = badge("over-turn (masked from the loss)", "warn") if replay.get("overturn") else ""
    return (
        f'<div class="replay tool-trajectory"><div class="replay-title">tool trajectory · '
        f"{len(steps)} tool call(s) {verdict} {overturn}</div>"
        f'<div class="question">question: <span class="text">{escape(replay.get("question", ""))}</span></div>'
        f'<div class="trajectory">{original}</div>'
        f"{table(['#', 'turn', 'on', 'box (x0, y0, x1, y1)', 'crop', 'crop size', 'error', 'turn text'], rows)}"
        f'<div class="answer">answer: <span class="text">{escape(replay.get("answer", ""))}</span> · '
        f"truth: {escape(replay.get('truth', ''))}</div></div>"
    )


# ----------------------------------------------------------------------------- mask


def _decode(rle: Any) -> Any:
    """A COCO RLE dict as a boolean array, or None when it is not a valid RLE."""
    if not isinstance(rle, dict) or not isinstance(rle.get("size"), list) or "counts" not in rle:
        return None
    try:
        from vlmrl.data_recipes.masks import decode_rle

        return decode_rle(rle).astype(bool)
    except Exception:  # malformed counts from a model are data, not a crash of the report
        return None


def _overlay_png(image_path: Path, masks: list[tuple[Any, tuple[int, int, int]]]) -> str | None:
    """The image with each mask tinted in its colour, as a data URL (PNG)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(image_path) as opened:
            base = np.asarray(opened.convert("RGB"), dtype=np.float32)
    except (OSError, ValueError):
        return None
    for mask, colour in masks:
        if mask is None:
            continue
        if mask.shape != base.shape[:2]:
            mask = np.asarray(
                Image.fromarray(mask.astype(np.uint8) * 255).resize(
                    (base.shape[1], base.shape[0]), Image.NEAREST
                )
            ).astype(bool)
        base[mask] = 0.45 * base[mask] + 0.55 * np.asarray(colour, dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


TRUTH_COLOUR = (40, 200, 80)
PREDICTED_COLOUR = (220, 40, 200)


def mask_view(sample: Sample, replay: dict[str, Any], run_directory: Path) -> str:
    """The scene, ground truth and decoded mask overlaid, the mask tokens and the IoU."""
    truth = _decode(replay.get("truth_rle"))
    predicted = _decode(replay.get("predicted_rle"))
    panels = [f"<figure>{image_tag(sample, 0, 'scene', 'scene')}<figcaption>scene</figcaption></figure>"]
    url = sample.images[0] if sample.images else None
    if url is not None:
        from urllib.parse import unquote

        path = run_directory / unquote(url)
        for label, masks in (
            ("ground truth (green)", [(truth, TRUTH_COLOUR)]),
            ("decoded (magenta)", [(predicted, PREDICTED_COLOUR)]),
            ("both", [(truth, TRUTH_COLOUR), (predicted, PREDICTED_COLOUR)]),
        ):
            data = _overlay_png(path, masks)
            if data is not None:
                panels.append(
                    f'<figure><img class="scene" src="{escape(data)}" alt="{escape(label)}">'
                    f"<figcaption>{escape(label)}</figcaption></figure>"
                )
    notes = []
    if truth is None:
        notes.append("ground-truth RLE missing or invalid")
    if predicted is None:
        notes.append("no decodable predicted mask (format failure)")
    return (
        f'<div class="replay mask"><div class="replay-title">mask · IoU {number(replay.get("iou"))}</div>'
        f'<div class="question">expression: <span class="text">{escape(replay.get("expression", ""))}</span></div>'
        f'<div class="panels">{"".join(panels)}</div>'
        f'<div class="answer">mask tokens: <code class="text">{escape(replay.get("tokens", ""))}</code></div>'
        + (f'<div class="note">{escape("; ".join(notes))}</div>' if notes else "")
        + "</div>"
    )


# ----------------------------------------------------------------------------- environment


def env_episode_view(sample: Sample, replay: dict[str, Any]) -> str:
    """Frames, actions (raw and parsed), validity, the critic's values and rewards per step."""
    rows = []
    total = 0.0
    for index, step in enumerate(_list(replay.get("steps"))):
        step = _dict(step)
        reward = step.get("reward")
        if isinstance(reward, (int, float)) and not isinstance(reward, bool):
            total += float(reward)
        valid = step.get("valid")
        rows.append(
            [
                str(index),
                image_tag(sample, step.get("frame"), "frame", f"frame of step {index}"),
                f'<span class="text">{escape(step.get("action", ""))}</span>',
                escape(json.dumps(step.get("parsed_action"), default=str)),
                badge("valid", "good")
                if valid is True
                else badge("invalid", "bad")
                if valid is False
                else "-",
                number(step.get("value")),
                number(reward),
            ]
        )
    success = replay.get("success")
    verdict = (
        badge("success", "good") if success is True else badge("failure", "bad") if success is False else ""
    )
    return (
        f'<div class="replay env-episode"><div class="replay-title">environment {escape(replay.get("env", "?"))} · '
        f"{len(rows)} step(s) · return {total:.3f} {verdict}</div>"
        f"{table(['step', 'frame', 'action', 'parsed', 'valid', 'value', 'reward'], rows)}</div>"
    )


# ----------------------------------------------------------------------------- dispatch

VIEWS: dict[str, Callable[..., str]] = {
    "spy_game": lambda sample, replay, run: spy_game_view(sample, replay),
    "tool_trajectory": lambda sample, replay, run: tool_trajectory_view(sample, replay),
    "mask": mask_view,
    "env_episode": lambda sample, replay, run: env_episode_view(sample, replay),
}


def replay_kind(sample: Sample) -> str:
    replay = sample.replay
    kind = replay.get("kind") if replay else None
    return kind if isinstance(kind, str) and kind in VIEWS else "conversation"


def episode_view(sample: Sample, run_directory: Path, start: int = 0) -> str:
    """The whole card body: the method's replay view (if any) and the conversation from
    message `start` (a group's shared prompt is shown once above its episodes)."""
    kind = replay_kind(sample)
    conversation = conversation_view(sample, start=start)
    if kind == "conversation":
        return conversation
    try:
        view = VIEWS[kind](sample, sample.replay, run_directory)
    except Exception as error:  # a malformed replay shows as such; the rest of the page stands
        view = f'<div class="note">replay of kind {escape(kind)} could not be drawn: {escape(error)}</div>'
    return f'{view}<details class="transcript"><summary>conversation</summary>{conversation}</details>'
