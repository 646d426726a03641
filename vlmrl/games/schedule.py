"""Iterative-SPO: which stage (decision or clue) a training step trains.

- "fixed" (the reference code): steps alternate on a cycle of 2L, decision first:
  phase(step) = decision if step mod 2L < L else clue.
- "adaptive" (the paper's performance-driven switch): start with decision training; move to
  clue training when the observer's accuracy over the last `window` decisions is at least
  `accuracy_high` and its N/A rate at most `abstain_max`; move back to decision training when
  that accuracy falls below `accuracy_low`. The window restarts at each switch, so a phase is
  judged on its own decisions.
"""

from __future__ import annotations

from collections import deque
from typing import Any

DECISION, CLUE = "decision", "clue"
MODES = ("fixed", "adaptive")


def fixed_phase(step: int, cycle_length: int) -> str:
    """The reference schedule: L decision steps, then L clue steps, repeated (step from 0)."""
    if cycle_length < 1:
        raise ValueError(f"cycle_length must be >= 1, got {cycle_length}")
    return DECISION if step % (2 * cycle_length) < cycle_length else CLUE


class PhaseSchedule:
    """The current phase, its history of switches, and (adaptive) the window of decisions."""

    def __init__(
        self,
        mode: str = "fixed",
        cycle_length: int = 1,
        window: int = 64,
        accuracy_high: float = 0.6,
        accuracy_low: float = 0.4,
        abstain_max: float = 0.2,
    ):
        if mode not in MODES:
            raise ValueError(f"phase mode {mode!r}: expected one of {MODES}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0 <= accuracy_low <= accuracy_high <= 1:
            raise ValueError(
                f"need 0 <= accuracy_low <= accuracy_high <= 1, got {accuracy_low}, {accuracy_high}"
            )
        fixed_phase(0, cycle_length)  # validates cycle_length
        self.mode = mode
        self.cycle_length = cycle_length
        self.window = window
        self.accuracy_high = accuracy_high
        self.accuracy_low = accuracy_low
        self.abstain_max = abstain_max
        self.step = 0
        self.phase = DECISION
        self.switches: list[dict[str, Any]] = []
        self.recent: deque[tuple[float, float]] = deque(maxlen=window)  # (correct, abstained)

    def current(self) -> str:
        """The phase of the step about to be played."""
        if self.mode == "fixed":
            return fixed_phase(self.step, self.cycle_length)
        return self.phase

    def window_rates(self) -> tuple[float | None, float | None]:
        """(accuracy, N/A rate) over the window, None while it is empty."""
        if not self.recent:
            return None, None
        count = len(self.recent)
        return sum(c for c, _ in self.recent) / count, sum(a for _, a in self.recent) / count

    def record(self, correct: list[bool], abstained: list[bool]) -> bool:
        """Add a step's observer decisions and advance one step; True if the phase switched."""
        before = self.current()
        self.recent.extend((float(c), float(a)) for c, a in zip(correct, abstained))
        self.step += 1
        if self.mode == "adaptive" and len(self.recent) == self.window:
            accuracy, abstain = self.window_rates()
            if self.phase == DECISION and accuracy >= self.accuracy_high and abstain <= self.abstain_max:
                self.phase = CLUE
            elif self.phase == CLUE and accuracy < self.accuracy_low:
                self.phase = DECISION
            if self.phase != before:
                self.recent.clear()
        after = self.current()
        if after != before:
            self.switches.append({"step": self.step, "from": before, "to": after})
        return after != before

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "phase": self.phase,
            "switches": list(self.switches),
            "recent": [list(item) for item in self.recent],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.phase = str(state["phase"])
        self.switches = list(state.get("switches", []))
        self.recent = deque((tuple(item) for item in state.get("recent", [])), maxlen=self.window)
