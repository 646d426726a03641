"""The zoom tool of visual search (visual-probe here, Mini-o3's tool loop later).

The model writes `<tool_call>{"name": "zoom", "arguments": {"bbox": [x0, y0, x1, y1]}}</tool_call>`
with pixel coordinates of the original image; the tool crops that box, enlarges it and hands
it back as a new image in a "tool" turn. Everything the model wrote is untrusted: parsing and
validation are total and return a `ToolFailure` naming what was wrong, which the loop shows
to the model and counts, instead of raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vlmrl.model.formats import ZOOM_RESULT, FormatFailure, parse_tool_call


@dataclass(frozen=True)
class ToolFailure:
    """Why a tool call could not run ('format', 'unknown_tool', 'arguments', 'box')."""

    kind: str
    reason: str

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class ZoomResult:
    image: Image.Image  # the enlarged crop
    box: tuple[int, int, int, int]  # the crop actually taken (clipped to the image), x1/y1 exclusive


def validate_bbox(
    value: Any, width: int, height: int, min_side: int = 4
) -> tuple[int, int, int, int] | ToolFailure:
    """A box inside the image from the model's `bbox` argument, or why it is unusable.

    Corners are rounded outward and clipped to the image; a box entirely outside it, with its
    corners in the wrong order, or thinner than `min_side` pixels is rejected.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return ToolFailure("arguments", f"bbox must be a list [x0, y0, x1, y1], got {value!r}"[:200])
    numbers = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            return ToolFailure("arguments", f"bbox values must be finite numbers, got {item!r}"[:200])
        numbers.append(float(item))
    x0, y0, x1, y1 = numbers
    if x1 <= x0 or y1 <= y0:
        return ToolFailure("box", f"bbox {value} needs x0 < x1 and y0 < y1")
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if right - left < min_side or bottom - top < min_side:
        return ToolFailure(
            "box", f"bbox {value} leaves less than {min_side} pixels inside the {width}x{height} image"
        )
    return left, top, right, bottom


def zoom(
    image: Image.Image, bbox: Any, output_side: int = 336, min_side: int = 4
) -> ZoomResult | ToolFailure:
    """Crop `bbox` and resize it so its longer side is `output_side` (aspect ratio kept)."""
    box = validate_bbox(bbox, image.width, image.height, min_side)
    if isinstance(box, ToolFailure):
        return box
    crop = image.crop(box)
    scale = output_side / max(crop.width, crop.height)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return ZoomResult(crop.resize(size, Image.Resampling.BICUBIC), box)


def run_zoom_call(text: str, image: Image.Image, output_side: int = 336) -> ZoomResult | ToolFailure:
    """Parse a model turn and run its zoom call; any other outcome is a typed failure."""
    call = parse_tool_call(text)
    if isinstance(call, FormatFailure):
        return ToolFailure("format", call.reason)
    if call.name != "zoom":
        return ToolFailure("unknown_tool", f"unknown tool '{call.name[:40]}'; the only tool is 'zoom'")
    if "bbox" not in call.arguments:
        return ToolFailure("arguments", "zoom needs the argument 'bbox': [x0, y0, x1, y1]")
    return zoom(image, call.arguments["bbox"], output_side)


def tool_message(result: ZoomResult | ToolFailure) -> dict[str, Any]:
    """The "tool" turn that answers a call: the crop with its box, or the error in words."""
    if isinstance(result, ToolFailure):
        return {"role": "tool", "content": [{"type": "text", "text": f"Tool error: {result.reason}"}]}
    x0, y0, x1, y1 = result.box
    return {
        "role": "tool",
        "content": [
            {"type": "image", "image": result.image},
            {"type": "text", "text": ZOOM_RESULT.format(x0=x0, y0=y0, x1=x1, y1=y1)},
        ],
    }


# ----------------------------------------------------------------------------- tool registry


@dataclass
class ToolOutcome:
    """What one tool call produced: the observation turn to append, and what to record.

    `image` is the new observation image (None after a failure); `failure` says why the call
    could not run (a format error the loop counts); `details` is JSON-able bookkeeping for
    replays (box, source, crop size).
    """

    message: dict[str, Any]
    image: Image.Image | None = None
    failure: str | None = None
    details: dict[str, Any] | None = None


class Tool:
    """A tool the multi-turn loop can run (`vlmrl.evals.interactive.run_tool_loop`).

    A tool names the closing tag that ends a turn calling it (`stop`, so generation can stop
    there and the tool runs between turns), says whether a turn calls it (`detect`), and runs
    the call (`run`) on the episode's images: image 0 is the original, image i the i-th
    observation. `run` must be total: any malformed call becomes a `ToolOutcome` with a
    `failure`, never an exception. Subclasses override `detect` and `run`.
    """

    name = "tool"
    stop = ""

    def detect(self, text: str) -> bool:
        raise NotImplementedError

    def run(self, text: str, images: list[Image.Image], turn: int) -> ToolOutcome:
        raise NotImplementedError


class ZoomTool(Tool):
    """The `<tool_call>` zoom dialect: pixel boxes of the original image, a "tool" turn back."""

    name = "zoom"
    stop = "</tool_call>"

    def __init__(self, output_side: int = 336):
        self.output_side = output_side

    def detect(self, text: str) -> bool:
        return not isinstance(parse_tool_call(text), FormatFailure)

    def run(self, text: str, images: list[Image.Image], turn: int) -> ToolOutcome:
        result = run_zoom_call(text, images[0], self.output_side)
        message = tool_message(result)
        if isinstance(result, ToolFailure):
            return ToolOutcome(message, failure=result.reason, details={"error": result.reason})
        x0, y0, x1, y1 = result.box
        width, height = images[0].size
        details = {
            "source": "original_image",
            "bbox": [x0 / width, y0 / height, x1 / width, y1 / height],
            "crop_size": list(result.image.size),
            "error": None,
        }
        return ToolOutcome(message, image=result.image, details=details)
