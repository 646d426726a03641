import pytest

from vlmrl.masktok.rewards import (
    answer_matching_reward,
    answer_matching_score,
    mask_format_reward,
    pair_score,
    parse_answer_masks,
)
from vlmrl.masktok.tokens import (
    MASK_END,
    MASK_START,
    mask_string,
    mask_vocabulary,
    masks_answer,
    parse_masks,
)
from vlmrl.model.formats import FormatFailure
from vlmrl.rl.episode import Episode, Turn


def test_vocabulary_and_strings():
    vocabulary = mask_vocabulary()
    assert len(vocabulary) == 514 and vocabulary[:2] == [MASK_START, MASK_END]
    assert vocabulary[2] == "<|mt_0000|>" and vocabulary[-1] == "<|mt_0511|>"
    assert mask_string((12, 44)) == "<|mt_start|><|mt_0012|><|mt_0300|><|mt_end|>"
    assert masks_answer([]) == "none"
    with pytest.raises(ValueError, match="outside"):
        mask_string((256, 0))


def test_parse_round_trip_and_text_around():
    text = "the cubes: " + mask_string((1, 2)) + " and " + mask_string((255, 255))
    assert parse_masks(text) == [(1, 2), (255, 255)]
    assert parse_masks("none") == []
    assert isinstance(parse_masks("none", allow_empty=False), FormatFailure)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<|mt_start|><|mt_0012|><|mt_end|>", "needs 2 codes"),  # one code only
        ("<|mt_start|><|mt_0300|><|mt_0012|><|mt_end|>", "wrong order"),  # levels swapped
        ("<|mt_start|><|mt_0012|><|mt_0012|><|mt_end|>", "wrong order"),  # second code from level 0
        ("<|mt_start|><|mt_0012|><|mt_0999|><|mt_end|>", "unknown mask code"),  # unknown id
        ("<|mt_start|><|mt_0012|><|mt_0300|>", "no <|mt_end|>"),  # missing end
        ("<|mt_start|><|mt_0012|> x<|mt_0300|><|mt_end|>", "something other"),  # text inside
        ("<|mt_0012|><|mt_0300|>", "outside"),  # codes without delimiters
        ("<|mt_start|><|mt_0012|><|mt_0300|><|mt_0301|><|mt_end|>", "needs 2 codes"),
        ("<|mt_end|>", "outside"),
        ("<|mt_start|><|mt_12|><|mt_0300|><|mt_end|>", "something other"),
    ],
)
def test_parser_is_total_on_malformed_masks(text, reason):
    parsed = parse_masks(text)
    assert isinstance(parsed, FormatFailure) and reason in parsed.reason


def test_parser_never_raises_on_random_text():
    import random

    pieces = [
        MASK_START,
        MASK_END,
        "<|mt_0001|>",
        "<|mt_0257|>",
        "<|mt_9999|>",
        "<|mt_",
        "|>",
        "x",
        " ",
        "none",
    ]
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        parsed = parse_masks(text)
        assert isinstance(parsed, (list, FormatFailure))
    assert isinstance(parse_masks(None), FormatFailure) and isinstance(parse_masks(b"x"), FormatFailure)


def test_pair_and_matching_scores_by_hand():
    assert pair_score((1, 2), (1, 2)) == 1.0
    assert pair_score((1, 3), (1, 2)) == 0.5
    assert pair_score((4, 2), (1, 2)) == 0.0
    # Two references; the prediction gets one right and the other's first level: (1 + 0.5) / 2.
    assert answer_matching_score([(7, 7), (1, 2)], [(1, 2), (7, 9)]) == pytest.approx(0.75)
    # An extra predicted mask dilutes: 1 / max(2, 1).
    assert answer_matching_score([(1, 2), (3, 3)], [(1, 2)]) == pytest.approx(0.5)
    # A missed object: 1 / 2.
    assert answer_matching_score([(1, 2)], [(1, 2), (3, 3)]) == pytest.approx(0.5)
    assert answer_matching_score([], []) == 1.0  # a correct 'none'
    assert answer_matching_score([(1, 2)], []) == 0.0 and answer_matching_score([], [(1, 2)]) == 0.0
    assert answer_matching_score([(1, 9)], [(1, 2)], first_level=0.25) == 0.25


def _episode(text, reference):
    return Episode(messages=[], turns=[Turn([1], [0.0], text)], info={"reference_codes": reference})


def test_episode_rewards_and_format():
    right = _episode("<answer>" + mask_string((5, 6)) + "</answer>", [[5, 6]])
    assert answer_matching_reward(right) == 1.0 and mask_format_reward(right) == 1.0
    none = _episode("<answer>none</answer>", [])
    assert answer_matching_reward(none) == 1.0 and mask_format_reward(none) == 1.0
    broken = _episode("<answer><|mt_start|><|mt_0005|></answer>", [[5, 6]])
    assert answer_matching_reward(broken) == 0.0 and mask_format_reward(broken) == 0.0
    chatter = _episode("<answer>a red cube</answer>", [[5, 6]])
    assert isinstance(parse_answer_masks(chatter.text), FormatFailure)
    assert answer_matching_reward(_episode("no answer tags", [[5, 6]])) == 0.0
