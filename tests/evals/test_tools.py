import math

import pytest
from PIL import Image

from vlmrl.evals.tools import ToolFailure, ZoomResult, run_zoom_call, tool_message, validate_bbox, zoom
from vlmrl.model.formats import format_tool_call


def test_validate_bbox_rounds_outward_and_clips():
    assert validate_bbox([10.2, 20.7, 30.1, 40.0], 100, 100) == (10, 20, 31, 40)
    assert validate_bbox([-5, -5, 50, 500], 100, 80) == (0, 0, 50, 80)


@pytest.mark.parametrize(
    "bbox, kind",
    [
        ([1, 2, 3], "arguments"),
        ("0 0 10 10", "arguments"),
        ([0, 0, math.nan, 10], "arguments"),
        ([0, 0, True, 10], "arguments"),
        ([10, 10, 5, 20], "box"),
        ([200, 200, 300, 300], "box"),
        ([0, 0, 2, 50], "box"),
    ],
)
def test_validate_bbox_failures(bbox, kind):
    result = validate_bbox(bbox, 100, 100)
    assert isinstance(result, ToolFailure) and result.kind == kind
    assert not result


def test_zoom_crops_the_box_and_enlarges_it():
    image = Image.new("RGB", (100, 100), "white")
    image.paste((255, 0, 0), (40, 40, 60, 50))
    result = zoom(image, [40, 40, 60, 50], output_side=80)
    assert isinstance(result, ZoomResult)
    assert result.box == (40, 40, 60, 50)
    assert result.image.size == (80, 40)  # aspect ratio 2:1 kept
    assert result.image.getpixel((40, 20)) == (255, 0, 0)


def test_run_zoom_call_parses_totally():
    image = Image.new("RGB", (64, 64))
    ok = run_zoom_call("look " + format_tool_call("zoom", {"bbox": [0, 0, 32, 32]}), image, output_side=48)
    assert isinstance(ok, ZoomResult) and ok.image.size == (48, 48)
    cases = {
        "no call here": "format",
        "<tool_call>{not json</tool_call>": "format",
        format_tool_call("crop", {"bbox": [0, 0, 8, 8]}): "unknown_tool",
        format_tool_call("zoom", {"box": [0, 0, 8, 8]}): "arguments",
    }
    for text, kind in cases.items():
        result = run_zoom_call(text, image)
        assert isinstance(result, ToolFailure) and result.kind == kind, text


def test_tool_message_carries_the_crop_or_the_error():
    image = Image.new("RGB", (64, 64))
    message = tool_message(zoom(image, [0, 0, 32, 32]))
    assert message["role"] == "tool"
    assert [part["type"] for part in message["content"]] == ["image", "text"]
    assert "[0, 0, 32, 32]" in message["content"][1]["text"]
    error = tool_message(ToolFailure("box", "too small"))
    assert error["content"] == [{"type": "text", "text": "Tool error: too small"}]
