"""The spy game's rewards, as Vision-Zero's reference code computes them (pure functions).

Clue stage (zero-sum, reference `_calculate_strategic_clue_rewards`): with v_U the votes on
the spy, v_j the votes on civilian j and mean_C the mean over civilians,

    Psi   = v_U - mean_C
    r_U   = -beta * Psi
    r_C_j =  beta * Psi / (N - 1) - lambda * (v_j - mean_C)

so r_U + sum_j r_C_j = 0. Abstentions and unparseable votes are not counted. Each player's
reward applies to all of its clue turns; the role baseline (`vlmrl.rl.advantages.
role_baseline_advantages`) is subtracted from it, with no group normalisation.

Decision stage (the observer's G samples, group-normalised afterwards):

    r = 0.3 * (+1 format ok / -1 not) + 1.2 * (+1 correct / -0.5 N/A / -1 wrong) + 0.99 * [correct]
"""

from __future__ import annotations

from collections.abc import Sequence

from vlmrl.model.formats import ABSTAIN, FormatFailure, reasoning_before_answer


def count_votes(votes: Sequence[object], players: int) -> list[int]:
    """Votes received by players 1..players; N/A, failures and anything out of range are not counted."""
    counts = [0] * players
    for vote in votes:
        if isinstance(vote, int) and not isinstance(vote, bool) and 1 <= vote <= players:
            counts[vote - 1] += 1
    return counts


def clue_rewards(vote_counts: Sequence[int], spy: int, beta: float = 0.1, lam: float = 0.1) -> list[float]:
    """Per-player clue rewards (players 1..N in order) from the votes each received.

    Vision-Zero's zero-sum clue reward (see the module docstring): the spy loses beta for each
    vote it gets above the civilians' mean, the civilians share that gain, and a civilian
    loses lambda for each vote it draws above the civilians' mean.
    """
    players = len(vote_counts)
    if players < 2:
        raise ValueError(f"a game needs at least 2 players, got {players}")
    if not 1 <= spy <= players:
        raise ValueError(f"spy must be a player 1..{players}, got {spy}")
    civilians = [vote_counts[j] for j in range(players) if j != spy - 1]
    civilian_mean = sum(civilians) / len(civilians)
    psi = vote_counts[spy - 1] - civilian_mean
    rewards = []
    for j in range(players):
        if j == spy - 1:
            rewards.append(-beta * psi)
        else:
            rewards.append(beta * psi / (players - 1) - lam * (vote_counts[j] - civilian_mean))
    return rewards


def decision_format_ok(text: str, vote: object, min_reasoning_chars: int = 10) -> bool:
    """The reference's format check: reasoning longer than `min_reasoning_chars` before the
    answer, and an answer that parses (a player or N/A)."""
    if isinstance(vote, FormatFailure) or vote is None:
        return False
    return len(reasoning_before_answer(text)) > min_reasoning_chars if min_reasoning_chars > 0 else True


def decision_reward(
    vote: object,
    spy: int,
    format_ok: bool,
    format_weight: float = 0.3,
    accuracy_weight: float = 1.2,
    correct_bonus: float = 0.99,
    abstain_value: float = -0.5,
) -> float:
    """The observer's reward for one decision (module docstring): format term, accuracy term
    (+1 the spy, `abstain_value` for N/A, -1 a wrong player or no parseable vote), and a bonus
    when correct."""
    if vote == spy and isinstance(vote, int):
        accuracy = 1.0
    elif vote == ABSTAIN:
        accuracy = abstain_value
    else:
        accuracy = -1.0
    return (
        format_weight * (1.0 if format_ok else -1.0)
        + accuracy_weight * accuracy
        + correct_bonus * (accuracy > 0)
    )


def player_vote_accuracy(vote: object, player: int, spy: int) -> float:
    """Accuracy term of a player's own vote (the reference's per-player scoring, used with
    `--decision players`): a civilian +1 for the spy, -0.5 for N/A, -1 otherwise; the spy
    -1 for voting itself, +0.2 for N/A, +0.5 for blaming someone else."""
    if player == spy:
        if vote == spy:
            return -1.0
        return 0.2 if vote == ABSTAIN else (0.5 if isinstance(vote, int) else -1.0)
    if vote == spy:
        return 1.0
    return -0.5 if vote == ABSTAIN else -1.0
