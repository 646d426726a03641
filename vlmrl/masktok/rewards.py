"""Rewards on mask tokens: SAMTok's textual answer matching, and (optionally) decoded IoU.

The paper rewards RL with a "textual answer-matching reward": the mask tokens of the answer
are compared with the reference's, as text, with no mask decoding. Its exact formula is not
public; ours (README, "reference | ours | why"):

    score(p, r) = 1            if both codes of mask p equal those of mask r
                = first_level  if only the level-0 codes agree (same coarse region)
                = 0            otherwise
    reward = max over one-to-one matchings M of  sum_{(p, r) in M} score(p, r) / max(|P|, |R|)

so each reference object earns at most 1/|R|, extra predicted masks dilute the reward, a
correct "none" on a no-target expression earns 1 (P = R = {}), and an answer that does not
parse earns 0 (and fails the format reward).
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

import numpy as np

from vlmrl.masktok.tokens import CODEBOOK_SIZE, parse_masks
from vlmrl.model.formats import FormatFailure, parse_answer

FIRST_LEVEL_CREDIT = 0.5


def pair_score(
    predicted: tuple[int, ...], reference: tuple[int, ...], first_level: float = FIRST_LEVEL_CREDIT
) -> float:
    """1 for identical codes, `first_level` when only the first (coarsest) code agrees, else 0."""
    if tuple(predicted) == tuple(reference):
        return 1.0
    if predicted and reference and predicted[0] == reference[0]:
        return first_level
    return 0.0


def answer_matching_score(
    predicted: list[tuple[int, ...]],
    reference: list[tuple[int, ...]],
    first_level: float = FIRST_LEVEL_CREDIT,
) -> float:
    """The best one-to-one matching's summed pair scores over max(|P|, |R|) (1 when both empty)."""
    if not predicted and not reference:
        return 1.0
    if not predicted or not reference:
        return 0.0
    small, large = (predicted, reference) if len(predicted) <= len(reference) else (reference, predicted)
    scores = np.array([[pair_score(a, b, first_level) for b in large] for a in small])
    if len(large) <= 6:
        best = max(
            sum(scores[i, column] for i, column in enumerate(chosen))
            for chosen in permutations(range(len(large)), len(small))
        )
    else:  # greedy beyond 6 masks (the matching is then a lower bound)
        best, used = 0.0, set()
        for i in range(len(small)):
            options = [(scores[i, j], j) for j in range(len(large)) if j not in used]
            value, column = max(options)
            best += value
            used.add(column)
    return float(best) / max(len(predicted), len(reference))


def parse_answer_masks(
    text: Any, codebook_size: int = CODEBOOK_SIZE
) -> list[tuple[int, ...]] | FormatFailure:
    """The masks of the answer block: [] for 'none', a FormatFailure for anything malformed."""
    answer = parse_answer(text)
    if isinstance(answer, FormatFailure):
        return answer
    parsed = parse_masks(answer, codebook_size)
    if isinstance(parsed, FormatFailure):
        return parsed
    if not parsed and answer.strip().lower().rstrip(".") != "none":
        return FormatFailure(f"answer {answer[:40]!r} holds neither mask tokens nor 'none'")
    return parsed


def answer_matching_reward(
    episode: Any, first_level: float = FIRST_LEVEL_CREDIT, codebook_size: int = CODEBOOK_SIZE
) -> float:
    """SAMTok's textual reward on an episode whose info holds the reference codes."""
    predicted = parse_answer_masks(episode.text, codebook_size)
    if isinstance(predicted, FormatFailure):
        return 0.0
    reference = [tuple(c) for c in episode.info["reference_codes"]]
    return answer_matching_score(predicted, reference, first_level)


def mask_format_reward(episode: Any, codebook_size: int = CODEBOOK_SIZE) -> float:
    """1 when the answer parses as mask tokens or 'none', else 0."""
    return 0.0 if isinstance(parse_answer_masks(episode.text, codebook_size), FormatFailure) else 1.0


def union_mask(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Union of boolean masks (an empty mask of `shape` when there are none)."""
    union = np.zeros(shape, dtype=bool)
    for mask in masks:
        union |= np.asarray(mask, dtype=bool)
    return union
