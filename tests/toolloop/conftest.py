"""Fixtures of the tool-loop tests."""

import pytest
from toolloop_helpers import ScriptedVLM


@pytest.fixture
def scripted():
    return ScriptedVLM
