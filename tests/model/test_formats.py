"""Final-answer extraction: hand cases, and totality on arbitrary text (hypothesis)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.model.formats import (
    FinalAnswer,
    FormatFailure,
    extract_final_answer,
    format_answer,
    parse_answer,
    parse_boxed,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{3}", "3"),
        ("so the answer is \\boxed{ 12 } .", "12"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # braces inside are balanced, not cut
        ("first \\boxed{a} then \\boxed{b}", "b"),
        ("\\boxed{\\boxed{x}}", "x"),  # the last one opened
        ("\\boxed{a} and an unclosed \\boxed{b", "a"),
        ("\\boxed {yes}", "yes"),
        ("} stray \\boxed{no} }", "no"),
    ],
)
def test_parse_boxed(text, expected):
    assert parse_boxed(text) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no box here", "no \\boxed"),
        ("\\boxed{", "unclosed"),
        ("\\boxed{a{b}", "unclosed"),
        ("\\boxed{  }", "empty"),
        (None, "expected text"),
    ],
)
def test_parse_boxed_failures(text, reason):
    parsed = parse_boxed(text)
    assert isinstance(parsed, FormatFailure) and reason in parsed.reason


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>it is red, so no</think><answer>yes</answer>", FinalAnswer("yes", "answer")),
        ("<answer>a</answer> later <answer> b </answer>", FinalAnswer("b", "answer")),
        ("<answer>\\boxed{42}</answer>", FinalAnswer("42", "answer")),
        ("<think>\\boxed{1}</think><answer>2</answer>", FinalAnswer("2", "answer")),
        ("reasoning... \\boxed{no}", FinalAnswer("no", "boxed")),
        ("Yes", FinalAnswer("Yes", "raw")),  # plain text goes through untouched
        (" yes\n", FinalAnswer(" yes\n", "raw")),
        ("", FinalAnswer("", "raw")),
        # Malformed blocks count as none: the raw text reaches the benchmark's parser.
        ("<think>x</think><answer>yes", FinalAnswer("<think>x</think><answer>yes", "raw")),
        ("<answer></answer>", FinalAnswer("<answer></answer>", "raw")),
        ("<answer><answer>yes</answer>", FinalAnswer("<answer><answer>yes</answer>", "raw")),
        ("<answer>yes</answer", FinalAnswer("<answer>yes</answer", "raw")),
        ("<answer></answer> \\boxed{7}", FinalAnswer("7", "boxed")),
        (None, FinalAnswer("", "raw")),
        (b"<answer>yes</answer>", FinalAnswer("", "raw")),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


# Text built from the pieces that matter to the parsers, so tags and braces collide often.
_PIECES = st.sampled_from(
    ["<answer>", "</answer>", "<think>", "</think>", "\\boxed{", "{", "}", "yes", "no", " ", "\n", "<", ">"]
)
_TAGGY = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_TAGGY, st.text()))
def test_extraction_is_total_and_consistent(text):
    final = extract_final_answer(text)
    assert isinstance(final.text, str) and final.source in ("answer", "boxed", "raw")
    if final.source == "raw":
        assert final.text == text  # nothing is dropped unless a well-formed block was found
        assert isinstance(parse_answer(text), FormatFailure)
        assert isinstance(parse_boxed(text), FormatFailure)
    else:
        assert final.text and final.text == final.text.strip()
        assert final.text in text
    if final.source == "boxed":
        assert isinstance(parse_answer(text), FormatFailure)
    boxed = parse_boxed(text)
    assert isinstance(boxed, (str, FormatFailure))


@settings(max_examples=200, deadline=None)
@given(
    thought=st.text(max_size=40).filter(lambda t: "</answer>" not in t and "<answer>" not in t),
    value=st.text(min_size=1, max_size=20).filter(
        lambda v: v.strip() and "<answer>" not in v and "</answer>" not in v and "\\boxed" not in v
    ),
)
def test_answer_after_any_reasoning_is_recovered(thought, value):
    # The reasoning may hold anything but answer tags (which would make it the answer block).
    assert extract_final_answer(format_answer(value, thought)) == FinalAnswer(value.strip(), "answer")


def test_extraction_is_linear_on_adversarial_text():
    import time

    text = "\\boxed{" * 20000 + "<answer>" * 20000
    started = time.perf_counter()
    assert extract_final_answer(text).source == "raw"
    assert time.perf_counter() - started < 2.0


@settings(max_examples=400, deadline=None)
@given(st.one_of(_TAGGY, st.text()))
def test_answer_blocks_match_the_non_greedy_regex(text):
    import re

    from vlmrl.model.formats import _answer_blocks

    assert _answer_blocks(text) == re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
