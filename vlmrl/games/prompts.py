"""What each seat of the spy game is told: clue, observer and player-vote prompts.

Two styles share one game:
- "reference": our own wording of the Vision-Zero prompts (game "Who's the Odd One Out?", the
  player's number, round and role, the rules, a role strategy, the earlier clues and the
  player's own earlier reasoning, and the output format: reasoning, then the clue or the
  decision in `\\boxed{}`). For real checkpoints.
- "short": the instructions the embedded `tiny` default was pretrained on
  (`vlmrl.model.formats.CLUE_INSTRUCTION` / `VOTE_INSTRUCTION`), which a few-million-parameter
  model from scratch follows; it cannot read the long prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlmrl.model.formats import CLUE_INSTRUCTION, VOTE_INSTRUCTION, format_clues

STYLES = ("reference", "short")
GAME_NAME = "Who's the Odd One Out?"


def transcript(clues: Sequence[tuple[int, int, str]]) -> str:
    """'Round r - Player p: clue' lines (each entry is (round, player, clue))."""
    return "\n".join(f"Round {r} - Player {p}: {clue}" for r, p, clue in clues)


def clue_prompt(
    style: str,
    player: int,
    round_number: int,
    players: int,
    is_spy: bool,
    clues: Sequence[tuple[int, int, str]],
    own_reasoning: Sequence[str],
    edit_hint: str = "two objects are replaced by different ones, in the same positions",
) -> str:
    """The text a player reads (beside its own image) before giving a clue."""
    if style == "short":
        return CLUE_INSTRUCTION.format(player=player)
    role = (
        "Your role: SPY. Your picture is the different one."
        if is_spy
        else "Your role: NOT THE SPY. Your picture is the same as most other players'."
    )
    strategy = (
        "As the spy you do not know exactly what differs. Describe things your picture most likely "
        "shares with the others, stay close to the earlier clues, and avoid whatever might give "
        "your picture away."
        if is_spy
        else "Describe one specific feature of your picture that no earlier clue has covered, so "
        "that players with the same picture recognise you, without helping the spy."
    )
    if clues:
        history = "Clues so far (everyone's clues; the reasoning is only your own):\n" + transcript(clues)
        if own_reasoning:
            history += "\nYour earlier reasoning:\n" + "\n".join(
                f"Round {i + 1}: {text}" for i, text in enumerate(own_reasoning)
            )
    else:
        history = f"You are PLAYER {player} and speak first, so nobody has given a clue yet."
    return (
        f'You are PLAYER {player} in the game "{GAME_NAME}". This is ROUND {round_number}. Describe '
        "your picture in one sentence, only about the objects' features and how they are arranged.\n"
        f"{role}\n"
        f"Rules: there are {players} players. All of them but one (the spy) see the same picture; in "
        f"the spy's picture {edit_hint}. After the clue rounds the players vote; a spy who is voted "
        "out is punished severely.\n"
        f"{strategy}\n"
        f"{history}\n"
        "Output: first reason privately, step by step. Then give your one-sentence description, "
        "different from every earlier clue, inside \\boxed{}, for example "
        "\\boxed{The cylinder is to the left of the cube}."
    )


def observer_prompt(style: str, players: int, clues: Sequence[tuple[int, int, str]]) -> str:
    """The neutral observer's text (it sees the original picture): who is the spy, or N/A."""
    if style == "short":
        # The pretrained vote instruction names a voting player; the observer is none of them.
        lines = [(p, clue) for _, p, clue in clues]
        return VOTE_INSTRUCTION.format(player=0, clues=format_clues(lines))
    by_round: dict[int, list[str]] = {}
    for r, p, clue in clues:
        by_round.setdefault(r, []).append(f"Player {p}: {clue}")
    listed = "\n".join(f"Round {r}:\n" + "\n".join(lines) for r, lines in sorted(by_round.items()))
    return (
        f'You are judging a game of "{GAME_NAME}". {players} players have each described their '
        "picture. All but one saw the same picture; the spy saw a slightly different one. Find the "
        "spy from the clues: a clue that contradicts the majority or the picture, one that is vague "
        "or generic, or one that seems meant to mislead.\n"
        "The picture you see is the ORIGINAL one, which every player except the spy saw.\n"
        f"Clues:\n{listed}\n"
        "Reason step by step, then give the spy's player number inside \\boxed{}. If you cannot "
        "tell, answer \\boxed{N/A}: that costs less than a wrong guess."
    )


def player_vote_prompt(
    style: str,
    player: int,
    players: int,
    is_spy: bool,
    clues: Sequence[tuple[int, int, str]],
    own_reasoning: Sequence[str],
) -> str:
    """A player's own decision (the paper's per-player votes), beside its own image."""
    if style == "short":
        return VOTE_INSTRUCTION.format(player=player, clues=format_clues([(p, c) for _, p, c in clues]))
    role = (
        "You are the SPY: vote for someone else, never for yourself."
        if is_spy
        else "You are NOT the spy: find the player whose clues do not fit your picture."
    )
    reasoning = "\nYour earlier reasoning:\n" + "\n".join(own_reasoning) if own_reasoning else ""
    return (
        f'You are PLAYER {player} in the game "{GAME_NAME}" with {players} players, and the clue '
        f"rounds are over. {role}\nAll clues:\n{transcript(clues)}{reasoning}\n"
        "Answer in the form <think>your reasoning</think><answer>PLAYER_NUMBER or N/A</answer>. If "
        "you are unsure who the spy is, answer N/A: that costs less than a wrong vote."
    )
