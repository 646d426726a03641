"""Fixtures for the RL core's tests."""

from __future__ import annotations

import pytest
from rl_helpers import tiny_policy


@pytest.fixture(scope="module")
def policy():
    return tiny_policy()
