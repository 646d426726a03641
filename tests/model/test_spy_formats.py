"""Total parsers of spy-game output: boxed clues, decisions with N/A, reasoning."""

from __future__ import annotations

import random

import pytest

from vlmrl.model.formats import (
    ABSTAIN,
    FormatFailure,
    format_boxed,
    parse_boxed,
    parse_clue,
    parse_spy_vote,
    reasoning_before_answer,
)


def test_boxed_first_block_with_nested_braces():
    assert (
        parse_boxed("think... \\boxed{The {red} cube is left} and \\boxed{2}", first=True)
        == "The {red} cube is left"
    )
    assert parse_boxed(format_boxed("3", "Player 3 saw green."), first=True) == "3"
    assert isinstance(parse_boxed("\\boxed{", first=True), FormatFailure)
    assert isinstance(parse_boxed("\\boxed{  }", first=True), FormatFailure)
    assert isinstance(parse_boxed("no box", first=True), FormatFailure)
    assert isinstance(parse_boxed(None, first=True), FormatFailure)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I reason. \\boxed{3}", 3),
        ("\\boxed{Player 2}", 2),
        ("\\boxed{PLAYER 4.}", 4),
        ("<think>hm</think><answer>1</answer>", 1),
        ("\\boxed{N/A}", ABSTAIN),
        ("<answer>na</answer>", ABSTAIN),
        ("\\boxed{ n / a }", ABSTAIN),
        ("\\boxed{2} <answer>3</answer>", 2),  # the box wins, as in the reference
    ],
)
def test_spy_votes(text, expected):
    assert parse_spy_vote(text, 4) == expected


@pytest.mark.parametrize(
    "text",
    ["", "3", "\\boxed{7}", "\\boxed{0}", "<answer>nobody</answer>", "\\boxed{2.5}", "<answer>", None, 5],
)
def test_bad_votes_are_failures(text):
    assert isinstance(parse_spy_vote(text, 4), FormatFailure)


def test_clues_boxed_answer_or_plain():
    assert parse_clue("It is red, so \\boxed{The cube is red}.") == "The cube is red"
    assert parse_clue("<answer>a cube</answer>") == "a cube"
    assert isinstance(parse_clue("I see a red cube."), FormatFailure)
    assert parse_clue("\n I see a red cube.\nmore", require_box=False) == "I see a red cube."
    assert isinstance(parse_clue("  \n ", require_box=False), FormatFailure)


def test_reasoning_before_answer():
    assert reasoning_before_answer("<think>two reds</think><answer>2</answer>") == "two reds"
    assert reasoning_before_answer("Because blue. \\boxed{1}") == "Because blue."
    assert reasoning_before_answer("no answer at all") == ""
    assert reasoning_before_answer(None) == ""


def test_parsers_are_total_on_random_text():
    rng = random.Random(0)
    alphabet = "\\boxed{}<answer></answer>N/A 0123456789 player{}\n"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        for result in (
            parse_spy_vote(text, 4),
            parse_clue(text),
            parse_clue(text, False),
            parse_boxed(text, first=True),
        ):
            assert result is not None
        vote = parse_spy_vote(text, 4)
        assert isinstance(vote, FormatFailure) or vote == ABSTAIN or 1 <= vote <= 4
