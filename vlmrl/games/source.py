"""Self-play games as a `RolloutSource` for the shared trainer, with Iterative-SPO phases.

Each `collect` plays whole games and returns the episodes of the stage the schedule trains at
this step: every clue turn (clue phase: N * R per game) or every decision (decision phase: G
observer samples, or N player votes, per game). The other stage is played too, without
gradient, because clue rewards need the votes and decisions need the clues (as the reference).
Unlike the reference code, the clue phase does not also train the decisions (see README).

The source's state (pair cursor, phase schedule, role baselines) is checkpointed by the
trainer, so a resumed run continues exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vlmrl.games.engine import (
    GameSettings,
    PairPool,
    game_record,
    move_episode,
    observer_outcomes,
    play_games,
    score_game,
)
from vlmrl.games.schedule import CLUE, DECISION, PhaseSchedule
from vlmrl.rl.episode import Episode


class GameSource:
    def __init__(
        self,
        pairs: PairPool,
        settings: GameSettings,
        schedule: PhaseSchedule,
        seed: int = 0,
        samples_directory: str | Path | None = None,
        save_games_every: int = 0,
    ):
        settings.validate()
        self.pairs = pairs
        self.settings = settings
        self.schedule = schedule
        self.seed = seed
        self.samples_directory = Path(samples_directory) if samples_directory else None
        self.save_games_every = save_games_every
        self.cursor = 0  # games played since the start, over all processes
        self.baselines: dict[str, float] = {"spy": 0.0, "civilian": 0.0}
        self.last_metrics: dict[str, float] = {}

    def episodes_per_game(self, phase: str) -> int:
        if phase == CLUE:
            return self.settings.players * self.settings.rounds
        return self.settings.decisions_per_game()

    def _pair_index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.pairs))
        return int(np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))[offset])

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Episode]:
        from vlmrl.rl.distributed import rank_and_world

        phase = self.schedule.current()
        per_game = self.episodes_per_game(phase)
        if n % per_game:
            raise ValueError(
                f"asked for {n} episodes in the {phase} phase, not a multiple of its {per_game} episodes per game"
            )
        rank, world = rank_and_world()
        count = n // per_game
        start = self.cursor + rank * count
        self.cursor += count * world
        positions = [start + i for i in range(count)]
        pairs = [self.pairs[self._pair_index(p)] for p in positions]
        spies = [int(rng.integers(1, self.settings.players + 1)) for _ in positions]
        games = play_games(policy, pairs, spies, self.settings, [f"game-{p}" for p in positions])

        episodes: list[Episode] = []
        correct, abstained, parsed = [], [], []
        for game in games:
            self.baselines = score_game(game, self.baselines)
            right, abstain, ok = observer_outcomes(game)
            correct += right
            abstained += abstain
            parsed += ok
            moves = game.clues if phase == CLUE else game.decisions
            episodes += [move_episode(game, move, phase) for move in moves]
        switched = self.schedule.record(correct, abstained)
        window_accuracy, window_abstain = self.schedule.window_rates()
        spy_rewards = [g.player_rewards[g.spy - 1] for g in games]
        self.last_metrics = {
            "phase_decision": float(phase == DECISION),
            "phase_switch": float(switched),
            "next_phase_decision": float(self.schedule.current() == DECISION),
            "decision_accuracy": float(np.mean(correct)),
            "decision_abstain_rate": float(np.mean(abstained)),
            "decision_format_rate": float(np.mean(parsed)),
            "clue_parse_rate": float(np.mean([not _failed(m.parsed) for g in games for m in g.clues])),
            "spy_clue_reward": float(np.mean(spy_rewards)),
            "baseline_spy": self.baselines["spy"],
            "baseline_civilian": self.baselines["civilian"],
            "window_accuracy": -1.0 if window_accuracy is None else window_accuracy,
            "window_abstain_rate": -1.0 if window_abstain is None else window_abstain,
        }
        if (
            self.samples_directory is not None
            and self.save_games_every
            and (self.schedule.step - 1) % self.save_games_every == 0
            and rank == 0
        ):
            from vlmrl.rl.episode import save_episodes

            save_episodes(
                [game_record(g) for g in games],
                self.samples_directory / "games" / f"step-{self.schedule.step}.jsonl",
                "images",
            )
        return episodes

    def rollout_metrics(self) -> dict[str, float]:
        return dict(self.last_metrics)

    def state_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "baselines": dict(self.baselines),
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])
        self.baselines = {str(k): float(v) for k, v in state["baselines"].items()}
        self.schedule.load_state_dict(state["schedule"])


def _failed(parsed: Any) -> bool:
    from vlmrl.model.formats import FormatFailure

    return isinstance(parsed, FormatFailure)


def given_advantages(episodes: list[Episode]):
    """The advantages the source computed per move (role baselines for clues, group-normalised
    decisions), for the trainer's `advantage_function`."""
    import torch

    return torch.tensor([float(e.info["advantage"]) for e in episodes], dtype=torch.float32)
