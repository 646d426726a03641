"""Mini-o3's grounding tool: parse a `<grounding>` call, crop the chosen image, resize the crop.

The model writes `<grounding>{"bbox_2d": [x0, y0, x1, y1], "source": "original_image"}</grounding>`
with coordinates in [0, 1] of the source image (the reference's `use_relative_coordinates`);
`source` is "original_image" or "observation_i", the i-th zoomed view so far ("observation_0"
is the original too). Model text is untrusted: `parse_grounding` is total (a `GroundingCall`
or a `FormatFailure`, never an exception, never `eval`), and every way a call can be wrong
(bad JSON, boxes out of [0, 1], inverted or empty boxes, aspect ratio of 200 or more, an
unknown source) becomes an error observation the loop shows to the model and counts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vlmrl.evals.tools import Tool, ToolOutcome
from vlmrl.model.formats import FormatFailure

GROUNDING_OPEN, GROUNDING_CLOSE = "<grounding>", "</grounding>"
_GROUNDING = re.compile(r"<grounding>(.*?)</grounding>", re.DOTALL)
_OBSERVATION = re.compile(r"observation_(\d{1,4})")
MAX_ASPECT_RATIO = 200  # the reference rejects boxes this elongated (and Qwen's resizer refuses them)

# Prompts, in our words, carrying the reference's content (TOOL_CROP system prompt, the
# multi-turn observation template and the error template of Mini-o3's verl constants).
SEARCH_INSTRUCTION = (
    "{question} Think in <think></think>. Zoom with "
    '<grounding>{{"bbox_2d": [x0, y0, x1, y1], "source": "original_image"}}</grounding> '
    "(0 to 1 of the image, or of observation_i). Answer in <answer></answer>."
)
OBSERVATION_TEXT = (
    "Observation {observation}, from action {action}. Think in <think></think>, zoom again on the "
    "image or an observation with <grounding></grounding>, or answer in <answer></answer>."
)
ERROR_TEXT = "The tool failed: {reason}. Fix the call and keep thinking in <think></think>."


@dataclass(frozen=True)
class GroundingCall:
    bbox: tuple[float, float, float, float]  # normalised [0, 1] of the source image
    source: int  # 0: the original image; i >= 1: the i-th observation


def format_grounding(bbox: list[float] | tuple[float, ...], source: int = 0) -> str:
    """The call text for a normalised box, at most two decimals ("0.33", "0.5", "1"): short
    numbers are fewer tokens for the tiny's byte-level tokenizer."""
    name = "original_image" if source == 0 else f"observation_{source}"
    numbers = ", ".join(f"{float(v):.2f}".rstrip("0").rstrip(".") for v in bbox)
    return f'{GROUNDING_OPEN}{{"bbox_2d": [{numbers}], "source": "{name}"}}{GROUNDING_CLOSE}'


def has_grounding(text: Any) -> bool:
    return isinstance(text, str) and GROUNDING_OPEN in text


def parse_source(value: Any) -> int | FormatFailure:
    if not isinstance(value, str):
        return FormatFailure(f"source must be a string, got {type(value).__name__}")
    if value == "original_image":
        return 0
    match = _OBSERVATION.fullmatch(value)
    if match is None:
        return FormatFailure(f"unknown source {value[:40]!r}; expected 'original_image' or 'observation_i'")
    return int(match.group(1))


def parse_grounding(text: Any) -> GroundingCall | FormatFailure:
    """The last `<grounding>` call of a turn (as the reference reads it), or why it is malformed."""
    if not isinstance(text, str):
        return FormatFailure(f"expected text, got {type(text).__name__}")
    matches = _GROUNDING.findall(text)
    if not matches:
        if GROUNDING_OPEN in text:
            return FormatFailure("unclosed <grounding> tag")
        return FormatFailure("no <grounding>...</grounding> block")
    try:
        payload = json.loads(matches[-1])
    except (json.JSONDecodeError, RecursionError) as error:
        return FormatFailure(f"grounding call is not valid JSON: {str(error)[:80]}")
    if not isinstance(payload, dict):
        return FormatFailure("grounding call must be a JSON object")
    box = payload.get("bbox_2d")
    if not isinstance(box, list) or len(box) != 4:
        return FormatFailure("bbox_2d must be a list of four numbers [x0, y0, x1, y1]")
    numbers = []
    for value in box:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return FormatFailure(f"bbox_2d values must be finite numbers, got {str(value)[:40]!r}")
        numbers.append(float(value))
    if any(v < 0.0 or v > 1.0 for v in numbers):
        return FormatFailure(f"bbox_2d {numbers} leaves [0, 1]; coordinates are fractions of the image")
    x0, y0, x1, y1 = numbers
    if x1 <= x0 or y1 <= y0:
        return FormatFailure(f"bbox_2d {numbers} needs x0 < x1 and y0 < y1")
    source = parse_source(payload.get("source", "original_image"))
    if isinstance(source, FormatFailure):
        return source
    return GroundingCall((x0, y0, x1, y1), source)


def to_pixels(
    bbox: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int] | FormatFailure:
    """Normalised box -> pixel box of a width x height image, or why it is unusable.

    As the reference: scale by the source's size, truncate to integers, clamp to
    [0, width - 1] x [0, height - 1], then require at least one pixel each way and an aspect
    ratio below 200. The returned box is PIL's (left, top, right, bottom).
    """
    x0, y0, x1, y1 = bbox
    left = min(max(int(x0 * width), 0), width - 1)
    right = min(max(int(x1 * width), 0), width - 1)
    top = min(max(int(y0 * height), 0), height - 1)
    bottom = min(max(int(y1 * height), 0), height - 1)
    box_width, box_height = right - left, bottom - top
    if box_width < 1 or box_height < 1:
        return FormatFailure(f"bbox_2d {list(bbox)} covers no pixel of the {width}x{height} image")
    if max(box_width, box_height) / min(box_width, box_height) >= MAX_ASPECT_RATIO:
        return FormatFailure(f"bbox_2d {list(bbox)} is too elongated (aspect ratio >= {MAX_ASPECT_RATIO})")
    return left, top, right, bottom


def resized_crop_size(width: int, height: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The crop's size after the reference's pixel rules, through qwen-vl-utils' `smart_resize`:
    sides multiples of 28 (so at least 28), area within [min_pixels, max_pixels]."""
    from qwen_vl_utils import smart_resize

    resized_height, resized_width = smart_resize(
        height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return resized_width, resized_height


def crop(
    image: Image.Image, bbox: tuple[float, float, float, float], min_pixels: int, max_pixels: int
) -> Image.Image | FormatFailure:
    """Crop the normalised box from the full-resolution image and resize it by the pixel rules."""
    box = to_pixels(bbox, image.width, image.height)
    if isinstance(box, FormatFailure):
        return box
    region = image.crop(box)
    size = resized_crop_size(region.width, region.height, min_pixels, max_pixels)
    if size != region.size:
        region = region.resize(size, Image.Resampling.LANCZOS)
    return region.convert("RGB")


def observation_message(image: Image.Image, observation: int, action: int) -> dict[str, Any]:
    """The user turn that returns a crop (the reference returns observations as user turns)."""
    return {
        "role": "user",
        "content": [
            {"type": "image", "image": image},
            {"type": "text", "text": OBSERVATION_TEXT.format(observation=observation, action=action)},
        ],
    }


def error_message(reason: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": ERROR_TEXT.format(reason=reason)}]}


class GroundingTool(Tool):
    """The grounding crop as a tool of the shared loop (`vlmrl.evals.interactive.run_tool_loop`)."""

    name = "grounding"
    stop = GROUNDING_CLOSE

    def __init__(self, min_pixels: int, max_pixels: int):
        if not 0 < min_pixels <= max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    def detect(self, text: str) -> bool:
        return has_grounding(text)

    def run(self, text: str, images: list[Image.Image], turn: int) -> ToolOutcome:
        call = parse_grounding(text)
        if isinstance(call, FormatFailure):
            return self._failure(call.reason)
        if call.source >= len(images):
            return self._failure(
                f"source observation_{call.source} does not exist yet (observations 1..{len(images) - 1})"
            )
        result = crop(images[call.source], call.bbox, self.min_pixels, self.max_pixels)
        if isinstance(result, FormatFailure):
            return self._failure(result.reason, call)
        details = {
            "source": "original_image" if call.source == 0 else f"observation_{call.source}",
            "bbox": list(call.bbox),
            "crop_size": list(result.size),
            "error": None,
        }
        return ToolOutcome(observation_message(result, len(images), turn), image=result, details=details)

    @staticmethod
    def _failure(reason: str, call: GroundingCall | None = None) -> ToolOutcome:
        details = {
            "source": None
            if call is None
            else ("original_image" if call.source == 0 else f"observation_{call.source}"),
            "bbox": None if call is None else list(call.bbox),
            "crop_size": None,
            "error": reason,
        }
        return ToolOutcome(error_message(reason), failure=reason, details=details)
