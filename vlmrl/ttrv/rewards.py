"""TTRV's rewards: pure functions of one test item's sampled answers (no label anywhere).

For one item the policy samples N_vote responses; each is parsed by the task's own parser into
an answer a_i, or a format failure (None here). With counts c(a) over the N_vote responses:

    frequency   p_i = c(a_i) / N_vote                          (0 for a format failure)
    entropy     H = -sum_u q_u ln q_u over the distinct outcomes u, q_u = c(u) / N_vote
    normalised  H_norm = H / ln |U|   (0 when |U| = 1, i.e. all agree, or N_vote = 1)
    TTRV        r_i = p_i - 0.75 * H_norm                      (TTRV code, ttt_metrics.py)
    TTRL        r_i = 1 if a_i equals the majority answer else 0

Format failures, our decision (the reference's extractor always returns some string): a failure
earns no frequency reward, however many failures there are, so failures never win the vote;
in the entropy each failure is an outcome of its own (it agrees with nothing, not even another
failure), so responses that fail to answer count as disagreement.

H_norm is the same number for every response of an item, so GRPO's per-item normalisation
(r - mean) / std removes it exactly: under the reference setting only the frequency moves the
policy (`test_the_entropy_term_cancels_under_group_normalisation`). `item_weighted_advantages`
is the option that makes diversity control act: it scales each item's normalised advantages
by (1 - 0.75 * H_norm), so items whose samples disagree (pseudo-labels likely wrong) move the
policy less than items it answers consistently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vlmrl.evals.voting import majority_vote

ENTROPY_WEIGHT = 0.75  # hard-coded in the TTRV code (ttt_metrics.py)


def _counts(answers: Sequence[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    return counts


def frequency_rewards(answers: Sequence[str | None]) -> list[float]:
    """p_i = c(a_i) / N: each response's answer's share of all N responses; 0 for failures."""
    counts, total = _counts(answers), len(answers)
    return [0.0 if a is None else counts[a] / total for a in answers]


def normalized_entropy(answers: Sequence[str | None]) -> float:
    """H / ln|U| of the empirical outcome distribution; each failure is an outcome of its own.

    0 when every response gives the same answer, and for a single response (N = 1).
    """
    counts = _counts(answers)
    outcomes = list(counts.values()) + [1] * sum(a is None for a in answers)
    if len(outcomes) <= 1:
        return 0.0
    total = len(answers)
    entropy = -sum((c / total) * math.log(c / total) for c in outcomes)
    return entropy / math.log(len(outcomes))


def ttrv_rewards(answers: Sequence[str | None], entropy_weight: float = ENTROPY_WEIGHT) -> list[float]:
    """r_i = p_i - w * H_norm (TTRV code; w = 0.75)."""
    shift = entropy_weight * normalized_entropy(answers)
    return [p - shift for p in frequency_rewards(answers)]


def majority_rewards(answers: Sequence[str | None]) -> list[float]:
    """TTRL: 1 for responses whose answer is the majority answer, else 0 (failures: 0).

    Ties go to the answer seen first, as TTRL's Counter.most_common does.
    """
    winner = majority_vote(answers)
    return [float(winner is not None and a == winner) for a in answers]


def item_weighted_advantages(
    advantages: torch.Tensor, entropies: torch.Tensor, entropy_weight: float = ENTROPY_WEIGHT
) -> torch.Tensor:
    """A_i * (1 - w * H_norm(item of i)): diversity control as a per-item weight (our option).

    The weight lies in [1 - w, 1]; it leaves the direction within an item unchanged and
    shrinks the update on items whose samples disagree.
    """
    return advantages * (1.0 - entropy_weight * entropies)
