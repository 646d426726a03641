"""Iterative-SPO phase schedules: the reference's fixed cycle and the paper's adaptive switch."""

from __future__ import annotations

import pytest

from vlmrl.games.schedule import CLUE, DECISION, PhaseSchedule, fixed_phase


def test_fixed_cycle_starts_with_decision():
    assert [fixed_phase(s, 1) for s in range(4)] == [DECISION, CLUE, DECISION, CLUE]
    assert [fixed_phase(s, 2) for s in range(6)] == [DECISION, DECISION, CLUE, CLUE, DECISION, DECISION]
    with pytest.raises(ValueError, match="cycle_length"):
        fixed_phase(0, 0)


def test_fixed_schedule_logs_each_switch():
    schedule = PhaseSchedule("fixed", cycle_length=2)
    phases = []
    for _ in range(5):
        phases.append(schedule.current())
        schedule.record([True], [False])
    assert phases == [DECISION, DECISION, CLUE, CLUE, DECISION]
    assert [s["step"] for s in schedule.switches] == [2, 4]


def test_adaptive_switches_on_accuracy_and_abstentions():
    schedule = PhaseSchedule("adaptive", window=4, accuracy_high=0.75, accuracy_low=0.5, abstain_max=0.25)
    assert schedule.current() == DECISION
    assert not schedule.record([True, True], [False, False])  # window not full yet
    # accuracy 3/4 but N/A rate 2/4 > 0.25: stay in decision training
    assert not schedule.record([True, False], [True, True])
    assert schedule.window_rates() == (0.75, 0.5)
    # the window slides: now [T, F, T, F], accuracy 1/2: still decision training
    assert not schedule.record([True, False], [False, False])
    assert schedule.current() == DECISION
    schedule = PhaseSchedule("adaptive", window=4, accuracy_high=0.75, accuracy_low=0.5, abstain_max=0.25)
    assert schedule.record([True, True, True, False], [False, False, False, True])
    assert schedule.current() == CLUE
    assert schedule.window_rates() == (None, None)  # the window restarts at a switch
    assert not schedule.record([True, True, False, False], [False] * 4)  # 0.5 is not below 0.5
    assert schedule.current() == CLUE
    assert schedule.record([False, False, True, False], [False] * 4)  # window 0.25 < 0.5
    assert schedule.current() == DECISION
    assert [(s["from"], s["to"]) for s in schedule.switches] == [(DECISION, CLUE), (CLUE, DECISION)]


def test_schedule_state_round_trip():
    schedule = PhaseSchedule("adaptive", window=3)
    schedule.record([True, False], [False, True])
    copy = PhaseSchedule("adaptive", window=3)
    copy.load_state_dict(schedule.state_dict())
    assert copy.state_dict() == schedule.state_dict()
    assert copy.window_rates() == schedule.window_rates()


def test_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="phase mode"):
        PhaseSchedule("sometimes")
    with pytest.raises(ValueError, match="accuracy_low <= accuracy_high"):
        PhaseSchedule("adaptive", accuracy_high=0.3, accuracy_low=0.5)
