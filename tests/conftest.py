"""Suite-wide collection rules.

Learning tests of issues that are still blocked keep their honest assertion and carry their
measured figures as a non-strict `xfail`. Such a test cannot fail the suite, yet each costs
minutes of training, so by default it is skipped with a pointer to its figures; set
`VLMRL_RUN_EXPECTED_FAILURES=1` to run them (an XPASS then says a blocked method has started to
learn).
"""

from __future__ import annotations

import os

import pytest


def _expected_to_fail(item: pytest.Item) -> bool:
    for marker in item.iter_markers("xfail"):
        if marker.kwargs.get("strict", False):
            continue
        condition = marker.args[0] if marker.args else marker.kwargs.get("condition", True)
        if condition:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("VLMRL_RUN_EXPECTED_FAILURES") == "1":
        return
    skip = pytest.mark.skip(
        reason="learning test of a blocked issue (expected to fail; figures in its xfail reason): "
        "set VLMRL_RUN_EXPECTED_FAILURES=1 to run it"
    )
    for item in items:
        if item.get_closest_marker("slow") is not None and _expected_to_fail(item):
            item.add_marker(skip)
