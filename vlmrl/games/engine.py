"""The "Who is the spy" game engine: image pairs, playing games with one shared policy, and
turning a played game into rewards, episodes and a replay.

A game (Vision-Zero's CLEVR protocol): N players, one spy chosen at random who sees the edited
image of a pair while the civilians see the original; R clue rounds in a fixed speaking order
(each player sees its own image, every earlier clue and its own earlier reasoning); then the
decision stage: a neutral observer (the original image and all clues) sampled G times, or
each player's own vote (`decision="players"`). Games of a batch are played side by side, so
every generate call covers one (round, player) seat of all games.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrl.games import prompts
from vlmrl.games.rewards import (
    clue_rewards,
    count_votes,
    decision_format_ok,
    decision_reward,
    player_vote_accuracy,
)
from vlmrl.model.formats import ABSTAIN, FormatFailure, parse_clue, parse_spy_vote, reasoning_before_answer
from vlmrl.model.types import SamplingParams
from vlmrl.rl.advantages import group_normalized_advantages, role_baseline_advantages
from vlmrl.rl.episode import Episode, Turn

DECISIONS = ("observer", "players")
NO_CLUE = "No valid clue provided."  # what the others read when a clue does not parse (as the reference)
PAIR_SOURCES = ("shapes", "charts")


# --------------------------------------------------------------------------- image pairs


@dataclass
class ImagePair:
    id: str
    original: Any  # PIL image the civilians see
    edited: Any  # PIL image the spy sees
    description: str = ""


class PairPool:
    """Indexable image pairs: generated (shapes, charts), a `vlmrl data pairs` output, or a
    folder of the user's images edited by the pairs recipe.

    `pairs` is 'shapes', 'charts' or a directory. Generated pairs are a pure function of
    (seed, index); a held-out pool uses another seed, so its pairs are never trained on.
    """

    def __init__(
        self,
        pairs: str,
        seed: int,
        size: int,
        resolution: int = 168,
        min_objects: int = 1,
        max_objects: int = 2,
        edits: tuple[str, ...] = ("recolor",),
        max_side: int = 512,
    ):
        from vlmrl.data_recipes.pairs import SHAPES_EDITS, SHAPES_EXTRA_EDITS

        if size < 1:
            raise ValueError(f"a pair pool needs at least one pair, got size {size}")
        self.pairs, self.seed, self.size = pairs, seed, size
        self.resolution, self.min_objects, self.max_objects = resolution, min_objects, max_objects
        self.edits, self.max_side = tuple(edits), max_side
        self.dataset = None
        self.folder: Path | None = None
        if pairs == "shapes":
            unknown = [e for e in self.edits if e not in SHAPES_EDITS + SHAPES_EXTRA_EDITS]
            if unknown or not self.edits:
                raise ValueError(
                    f"--edits {','.join(self.edits)}: expected some of {SHAPES_EDITS + SHAPES_EXTRA_EDITS}"
                )
            if not 1 <= min_objects <= max_objects:
                raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        elif pairs not in PAIR_SOURCES:
            directory = Path(pairs)
            if not directory.is_dir():
                raise ValueError(
                    f"--pairs {pairs}: expected 'shapes', 'charts', a `vlmrl data pairs` output directory "
                    "or a folder of images"
                )
            if (directory / "manifest.json").is_file():
                from vlmrl.data_recipes.recipe import load_recipe_dataset

                self.dataset = load_recipe_dataset(directory)
                missing = [c for c in ("image_a", "image_b") if c not in self.dataset.column_names]
                if missing:
                    raise ValueError(
                        f"--pairs {pairs}: dataset lacks columns {missing} (not a pairs dataset)"
                    )
            else:
                from vlmrl.data_recipes.pairs import scan_image_folder

                scan_image_folder(directory)  # raises, naming the folder, if it holds no image
                self.folder = directory

    def __len__(self) -> int:
        return self.size if self.dataset is None else min(self.size, len(self.dataset))

    def __getitem__(self, index: int) -> ImagePair:
        from vlmrl.data_recipes import pairs as recipe

        if self.dataset is not None:
            record = self.dataset[index % len(self.dataset)]
        elif self.folder is not None:
            record = recipe.folder_pair(index, self.seed, self.folder, self.max_side)
        elif self.pairs == "charts":
            record = recipe.charts_pair(index, self.seed, self.resolution)
        else:
            record = recipe.shapes_pair(
                index, self.seed, self.resolution, self.min_objects, self.max_objects, self.edits
            )
        return ImagePair(
            id=str(record.get("id", f"pair-{index}")),
            original=record["image_a"].convert("RGB"),
            edited=record["image_b"].convert("RGB"),
            description=str(record.get("description", "")),
        )


# --------------------------------------------------------------------------- settings and games


@dataclass
class GameSettings:
    players: int = 4
    rounds: int = 2
    decision: str = "observer"  # or "players"
    decision_samples: int = 8  # G: observer samples per game
    style: str = "short"
    clue_tokens: int = 24
    decision_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.1  # clue reward: weight of the spy's exposure
    lam: float = 0.1  # clue reward: penalty on a civilian's extra votes
    min_reasoning_chars: int = 0  # decision format: reasoning needed before the answer
    role_alpha: float = 0.9  # EMA of the role baselines

    def validate(self) -> None:
        if self.players < 3:
            raise ValueError(f"players must be >= 3 (one spy, two civilians at least), got {self.players}")
        if self.rounds < 1 or self.decision_samples < 1:
            raise ValueError("rounds and decision_samples must be >= 1")
        if self.decision not in DECISIONS:
            raise ValueError(f"decision {self.decision!r}: expected one of {DECISIONS}")
        if self.style not in prompts.STYLES:
            raise ValueError(f"prompt style {self.style!r}: expected one of {prompts.STYLES}")

    def decisions_per_game(self) -> int:
        return self.decision_samples if self.decision == "observer" else self.players


@dataclass
class Move:
    """One sampled turn: who acted, what it read, what it said and how it parsed."""

    player: int | str  # 1..N, or "observer"
    round: int  # clue round 1..R; 0 for decisions
    messages: list[dict[str, Any]]  # the prompt and the assistant turn
    turn: Turn
    parsed: Any  # clue text, vote (int or 'N/A') or FormatFailure
    reward: float = 0.0
    advantage: float = 0.0
    format_ok: bool = True


@dataclass
class Game:
    id: str
    pair: ImagePair
    spy: int
    settings: GameSettings
    clues: list[Move] = field(default_factory=list)
    decisions: list[Move] = field(default_factory=list)
    player_rewards: list[float] = field(default_factory=list)

    def image_of(self, player: int | str) -> Any:
        return self.pair.edited if player == self.spy else self.pair.original

    def role_of(self, player: int | str) -> str:
        if player == "observer":
            return "observer"
        return "spy" if player == self.spy else "civilian"

    def transcript(self) -> list[tuple[int, int, str]]:
        return [(m.round, int(m.player), _shown_clue(m.parsed)) for m in self.clues]

    def votes(self) -> list[Any]:
        return [m.parsed for m in self.decisions]


def _shown_clue(parsed: Any) -> str:
    return NO_CLUE if isinstance(parsed, FormatFailure) else str(parsed)


def _user(image: Any, text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}


def _turn(generation: Any) -> Turn:
    return Turn(
        token_ids=list(generation.token_ids),
        logprobs=list(generation.logprobs),
        text=generation.text,
        finish_reason=generation.finish_reason,
    )


def play_games(
    policy: Any, pairs: list[ImagePair], spies: list[int], settings: GameSettings, ids: list[str]
) -> list[Game]:
    """Play one game per pair with one shared policy (clue rounds, then the decision stage)."""
    settings.validate()
    games = [Game(id=i, pair=p, spy=s, settings=settings) for i, p, s in zip(ids, pairs, spies)]
    if not games:
        return games
    require_box = settings.style == "reference"
    clue_sampling = SamplingParams(
        max_new_tokens=settings.clue_tokens, temperature=settings.temperature, top_p=settings.top_p
    )
    for round_number in range(1, settings.rounds + 1):
        for player in range(1, settings.players + 1):
            conversations = []
            for game in games:
                own = [reasoning_before_answer(m.turn.text) for m in game.clues if m.player == player]
                text = prompts.clue_prompt(
                    settings.style,
                    player,
                    round_number,
                    settings.players,
                    player == game.spy,
                    game.transcript(),
                    [r for r in own if r],
                )
                conversations.append([_user(game.image_of(player), text)])
            for game, conversation, generation in zip(
                games, conversations, policy.generate(conversations, clue_sampling)
            ):
                game.clues.append(
                    Move(
                        player=player,
                        round=round_number,
                        messages=[*conversation, generation.as_message()],
                        turn=_turn(generation),
                        parsed=parse_clue(generation.text, require_box=require_box),
                    )
                )
    decide(policy, games, settings)
    return games


def decide(policy: Any, games: list[Game], settings: GameSettings) -> None:
    """The decision stage: G observer samples per game, or one vote per player."""
    sampling = SamplingParams(
        max_new_tokens=settings.decision_tokens, temperature=settings.temperature, top_p=settings.top_p
    )
    if settings.decision == "observer":
        conversations = [
            [
                _user(
                    g.pair.original, prompts.observer_prompt(settings.style, settings.players, g.transcript())
                )
            ]
            for g in games
        ]
        voters: list[tuple[Game, int | str, list]] = [
            (g, "observer", c) for g, c in zip(games, conversations)
        ]
        sampling = dataclasses.replace(sampling, n=settings.decision_samples)
    else:
        voters = []
        for game in games:
            for player in range(1, settings.players + 1):
                own = [reasoning_before_answer(m.turn.text) for m in game.clues if m.player == player]
                text = prompts.player_vote_prompt(
                    settings.style,
                    player,
                    settings.players,
                    player == game.spy,
                    game.transcript(),
                    [r for r in own if r],
                )
                voters.append((game, player, [_user(game.image_of(player), text)]))
    generations = policy.generate([c for _, _, c in voters], sampling)
    for generation in generations:
        game, voter, conversation = voters[generation.prompt_index]
        vote = parse_spy_vote(generation.text, settings.players)
        game.decisions.append(
            Move(
                player=voter,
                round=0,
                messages=[*conversation, generation.as_message()],
                turn=_turn(generation),
                parsed=vote,
                format_ok=decision_format_ok(generation.text, vote, settings.min_reasoning_chars),
            )
        )


# --------------------------------------------------------------------------- rewards


def score_game(game: Game, baselines: dict[str, float]) -> dict[str, float]:
    """Fill every move's reward and advantage; returns the updated role baselines.

    Clue moves: the zero-sum clue reward of their player (from the votes of the decision
    stage), minus the role's EMA baseline updated with this game. Decision moves: the decision
    reward, group-normalised over the game's decisions (population std, as the reference).
    """
    settings = game.settings
    counted = (
        game.votes()
        if settings.decision == "observer"
        else [
            m.parsed
            for m in game.decisions
            if m.parsed != m.player  # nobody's vote for itself counts
        ]
    )
    game.player_rewards = clue_rewards(
        count_votes(counted, settings.players), game.spy, settings.beta, settings.lam
    )
    for move in game.clues:
        move.reward = game.player_rewards[int(move.player) - 1]
    if game.clues:
        rewards = torch.tensor([m.reward for m in game.clues], dtype=torch.float64)
        advantages, baselines = role_baseline_advantages(
            rewards, [game.role_of(m.player) for m in game.clues], baselines, settings.role_alpha
        )
        for move, advantage in zip(game.clues, advantages.tolist()):
            move.advantage = advantage
    for move in game.decisions:
        if move.player == "observer":
            move.reward = decision_reward(move.parsed, game.spy, move.format_ok)
        else:
            accuracy = player_vote_accuracy(move.parsed, int(move.player), game.spy)
            move.reward = 0.3 * (1.0 if move.format_ok else -1.0) + 1.2 * accuracy + 0.99 * (accuracy > 0)
    if game.decisions:
        rewards = torch.tensor([m.reward for m in game.decisions], dtype=torch.float64)
        advantages = group_normalized_advantages(
            rewards, [game.id] * len(game.decisions), epsilon=1e-8, population_std=True
        )
        for move, advantage in zip(game.decisions, advantages.tolist()):
            move.advantage = advantage
    return baselines


def observer_outcomes(game: Game) -> tuple[list[bool], list[bool], list[bool]]:
    """(correct, abstained, parsed) per decision of a game."""
    correct = [m.parsed == game.spy for m in game.decisions]
    abstained = [m.parsed == ABSTAIN for m in game.decisions]
    parsed = [not isinstance(m.parsed, FormatFailure) for m in game.decisions]
    return correct, abstained, parsed


# --------------------------------------------------------------------------- replays and episodes


def _plain_vote(vote: Any) -> int | str | None:
    return None if isinstance(vote, FormatFailure) else vote


def replay(game: Game, stage: str, image_of_player: dict[int, int | None]) -> dict[str, Any]:
    """The JSON-able replay of a whole game (kind spy_game), images indexed in one episode."""
    rewards = {str(p + 1): r for p, r in enumerate(game.player_rewards)}
    observer = [m.reward for m in game.decisions if m.player == "observer"]
    if observer:
        rewards["observer"] = float(np.mean(observer))
    return {
        "kind": "spy_game",
        "game": game.id,
        "spy": game.spy,
        "pair": game.pair.id,
        "edit": game.pair.description,
        "players": [
            {"number": p, "role": game.role_of(p), "image": image_of_player.get(p)}
            for p in range(1, game.settings.players + 1)
        ],
        "clues": [{"round": m.round, "player": m.player, "text": _shown_clue(m.parsed)} for m in game.clues],
        "decisions": [
            {"voter": m.player, "vote": _plain_vote(m.parsed), "raw": m.turn.text} for m in game.decisions
        ],
        "rewards": rewards,
        "stage": stage,
    }


def move_episode(game: Game, move: Move, stage: str) -> Episode:
    """One trainable episode: a clue turn or a decision sample, with the game's replay."""
    own_image = game.pair.edited if move.player == game.spy else game.pair.original
    images = {p: (0 if game.image_of(p) is own_image else None) for p in range(1, game.settings.players + 1)}
    info: dict[str, Any] = {
        "stage": stage,
        "game": game.id,
        "player": move.player,
        "round": move.round,
        "advantage": move.advantage,
        "replay": replay(game, stage, images),
    }
    if stage == "decision":
        info["vote"] = _plain_vote(move.parsed)
        info["correct"] = move.parsed == game.spy
    else:
        info["clue"] = _shown_clue(move.parsed)
        info["clue_parsed"] = not isinstance(move.parsed, FormatFailure)
    return Episode(
        messages=move.messages,
        turns=[move.turn],
        reward=move.reward,
        reward_components={stage: move.reward},
        group=game.id,
        role=game.role_of(move.player),
        truncated=move.turn.finish_reason == "length",
        info=info,
    )


def game_record(game: Game) -> Episode:
    """A whole game for `samples/games/`: both images (original 0, edited 1), no turns."""
    images = {p: (1 if p == game.spy else 0) for p in range(1, game.settings.players + 1)}
    text = (
        prompts.transcript(game.transcript())
        + "\nDecisions: "
        + json.dumps([_plain_vote(v) for v in game.votes()])
    )
    message = {
        "role": "user",
        "content": [
            {"type": "image", "image": game.pair.original},
            {"type": "image", "image": game.pair.edited},
            {"type": "text", "text": text},
        ],
    }
    correct, _, _ = observer_outcomes(game)
    return Episode(
        messages=[message],
        turns=[],
        group=game.id,
        role="game",
        info={
            "replay": replay(game, "game", images),
            "correct": bool(correct) and float(np.mean(correct)) > 0.5,
        },
    )


def format_transcript(game: Game) -> str:
    """A game as text for a person to read: clues by round, votes, the spy, rewards."""
    lines = [f"Game {game.id} (pair {game.pair.id}: {game.pair.description or 'edit not described'})"]
    lines.append(f"The spy is player {game.spy}; it sees the edited picture.")
    for round_number in range(1, game.settings.rounds + 1):
        lines.append(f"Round {round_number}:")
        for move in game.clues:
            if move.round == round_number:
                role = game.role_of(move.player)
                lines.append(f"  player {move.player} ({role}): {_shown_clue(move.parsed)}")
    lines.append("Decisions:")
    for move in game.decisions:
        vote = move.parsed.reason if isinstance(move.parsed, FormatFailure) else move.parsed
        lines.append(f"  {move.player}: {vote}  (reward {move.reward:+.2f})   raw: {move.turn.text!r}")
    counted = count_votes(game.votes(), game.settings.players)
    lines.append("Votes received: " + ", ".join(f"player {p + 1}: {c}" for p, c in enumerate(counted)))
    lines.append(
        "Clue rewards: " + ", ".join(f"player {p + 1}: {r:+.3f}" for p, r in enumerate(game.player_rewards))
    )
    return "\n".join(lines)
