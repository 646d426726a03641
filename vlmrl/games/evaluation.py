"""The held-out spy game as an interactive `vlmrl.evals` task.

Each document is one game on a held-out pair (its spy fixed by the document), played by the
evaluated model in every seat; the score is whether the decision names the spy. Under greedy
decoding (the harness's default) the observer decides once; with a sampling temperature it
decides `decision_samples` times and the score is the fraction right.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vlmrl.evals.tasks import Interaction, Task
from vlmrl.games.engine import (
    GameSettings,
    PairPool,
    format_transcript,
    observer_outcomes,
    play_games,
    score_game,
)
from vlmrl.model.types import SamplingParams


def spy_game_task(pool: PairPool, settings: GameSettings, games: int, seed: int) -> Task:
    """`games` held-out games on `pool` (pairs never trained on), spies drawn from `seed`."""
    rng = np.random.default_rng([seed, 11])
    spies = [int(rng.integers(1, settings.players + 1)) for _ in range(games)]
    # Pairs of the pool are visited in order; a smaller pool is cycled.
    documents = [{"id": f"spy-game-{i}", "pair": i % len(pool), "spy": spies[i]} for i in range(games)]

    def interact(vlm: Any, docs: list[dict[str, Any]], sampling: SamplingParams) -> list[Interaction]:
        chosen = dataclasses.replace(settings, temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.temperature == 0:
            chosen = dataclasses.replace(chosen, decision_samples=1)
        played = play_games(
            vlm, [pool[d["pair"]] for d in docs], [d["spy"] for d in docs], chosen, [d["id"] for d in docs]
        )
        results = []
        for game in played:
            score_game(game, {})  # rewards for the transcript; held-out games train nothing
            correct, abstained, parsed = observer_outcomes(game)
            score = {
                "accuracy": float(np.mean(correct)),
                "abstain_rate": float(np.mean(abstained)),
                "format": float(np.mean(parsed)),
            }
            results.append(Interaction(output=format_transcript(game), score=score))
        return results

    return Task(
        name="spy-game",
        docs=lambda limit: documents[: limit or len(documents)],
        interact=interact,
        max_new_tokens=settings.clue_tokens,
        description="held-out 'Who is the spy' games: does the decision name the spy?",
        settings={
            "pairs": pool.pairs,
            "seed": pool.seed,
            "games": games,
            "players": settings.players,
            "rounds": settings.rounds,
            "decision": settings.decision,
            "style": settings.style,
            "objects": [pool.min_objects, pool.max_objects],
            "edits": list(pool.edits),
        },
    )
