import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmrl.model.formats import FormatFailure
from vlmrl.toolloop.grounding import (
    GroundingCall,
    GroundingTool,
    crop,
    format_grounding,
    parse_grounding,
    resized_crop_size,
    to_pixels,
)


def call(payload) -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"<think>look</think><grounding>{body}</grounding>"


def test_a_valid_call_parses_and_the_last_call_wins():
    text = call({"bbox_2d": [0.1, 0.2, 0.5, 0.6], "source": "original_image"})
    assert parse_grounding(text) == GroundingCall((0.1, 0.2, 0.5, 0.6), 0)
    two = text + call({"bbox_2d": [0, 0, 1, 1], "source": "observation_2"})
    assert parse_grounding(two) == GroundingCall((0.0, 0.0, 1.0, 1.0), 2)
    assert parse_grounding(format_grounding([0.25, 0.5, 0.75, 1.0], 1)) == GroundingCall(
        (0.25, 0.5, 0.75, 1.0), 1
    )


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no call at all", "no <grounding>"),
        ('<grounding>{"bbox_2d": [0, 0, 1, 1]', "unclosed"),
        (call("{bbox_2d: [0, 0, 1, 1]}"), "not valid JSON"),
        (call("[0, 0, 1, 1]"), "JSON object"),
        (call({"bbox_2d": [0, 0, 1]}), "four numbers"),
        (call({"bbox_2d": [0, 0, "1", 1]}), "finite numbers"),
        (call({"bbox_2d": [0, 0, True, 1]}), "finite numbers"),
        (call('{"bbox_2d": [0, 0, NaN, 1]}'), "finite numbers"),
        (call({"bbox_2d": [-0.1, 0, 0.5, 0.5]}), "leaves [0, 1]"),
        (call({"bbox_2d": [0.2, 0, 1.5, 0.5]}), "leaves [0, 1]"),
        (call({"bbox_2d": [0.6, 0.1, 0.4, 0.5]}), "x0 < x1"),
        (call({"bbox_2d": [0.1, 0.3, 0.4, 0.3]}), "x0 < x1"),
        (call({"bbox_2d": [0, 0, 1, 1], "source": "observation_x"}), "unknown source"),
        (call({"bbox_2d": [0, 0, 1, 1], "source": 3}), "source must be a string"),
        (call("[" * 5000 + "]" * 5000), "JSON"),
    ],
)
def test_malformed_calls_are_format_failures(text, reason):
    parsed = parse_grounding(text)
    assert isinstance(parsed, FormatFailure) and reason in parsed.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parser_is_total_on_any_text(text):
    for candidate in (text, f"<grounding>{text}</grounding>", call({"bbox_2d": text, "source": text})):
        assert isinstance(parse_grounding(candidate), (GroundingCall, FormatFailure))


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    box=st.one_of(
        json_values, st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=6)
    ),
    source=json_values,
)
def test_malformed_calls_never_raise_and_become_error_observations(box, source):
    image = Image.new("RGB", (64, 48), (200, 10, 10))
    tool = GroundingTool(min_pixels=784, max_pixels=4096)
    text = call({"bbox_2d": box, "source": source}) if not isinstance(box, str) else call(box)
    outcome = tool.run(text, [image], turn=1)
    if outcome.failure is None:
        assert outcome.image is not None and outcome.message["role"] == "user"
    else:
        assert outcome.image is None and "failed" in outcome.message["content"][0]["text"]


def test_coordinates_to_pixels_follow_the_reference():
    # int() truncation, clamping to [0, size - 1], as verl's grounding preparation does.
    assert to_pixels((0.25, 0.5, 0.75, 1.0), 200, 100) == (50, 50, 150, 99)
    assert to_pixels((0.0, 0.0, 1.0, 1.0), 10, 10) == (0, 0, 9, 9)
    assert isinstance(to_pixels((0.5, 0.5, 0.504, 0.9), 100, 100), FormatFailure)  # zero width
    # 1 x 250 pixels: aspect ratio 250 >= 200 is refused
    assert "elongated" in to_pixels((0.0, 0.0, 0.001, 1.0), 1000, 251).reason
    assert to_pixels((0.0, 0.0, 0.001, 1.0), 1000, 150) == (0, 0, 1, 149)


def test_crop_pixel_rules():
    # A small crop is enlarged to the pixel floor, a big one shrunk to the ceiling; sides are
    # multiples of 28 (qwen-vl-utils' smart_resize), so never below 28 pixels.
    assert resized_crop_size(10, 10, min_pixels=3136, max_pixels=28224) == (56, 56)
    width, height = resized_crop_size(1000, 500, min_pixels=3136, max_pixels=28224)
    assert width * height <= 28224 and width % 28 == 0 and height % 28 == 0 and width == 2 * height
    assert resized_crop_size(168, 168, 3136, 28224) == (168, 168)
    image = Image.new("RGB", (336, 336), (0, 0, 0))
    image.paste((255, 0, 0), (168, 0, 336, 168))
    tile = crop(image, (0.5, 0.0, 1.0, 0.5), 3136, 28224)
    assert tile.size == (168, 168) and tile.getpixel((84, 84)) == (255, 0, 0)


def test_grounding_tool_crops_observations_and_refuses_unknown_ones():
    image = Image.new("RGB", (336, 336), (0, 0, 255))
    tool = GroundingTool(3136, 28224)
    first = tool.run(format_grounding([0, 0, 0.5, 0.5]), [image], turn=1)
    assert first.failure is None and first.details["source"] == "original_image"
    assert first.details["crop_size"] == [168, 168]
    assert "Observation 1" in first.message["content"][1]["text"]
    second = tool.run(format_grounding([0, 0, 0.5, 0.5], 1), [image, first.image], turn=2)
    assert second.failure is None and second.details["source"] == "observation_1"
    assert second.details["crop_size"] == [84, 84]
    missing = tool.run(format_grounding([0, 0, 0.5, 0.5], 2), [image, first.image], turn=2)
    assert missing.failure and "does not exist" in missing.failure
