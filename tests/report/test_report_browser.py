"""The report in a real browser: headless Chromium loads it from file://.

A short real run (the demo with two training steps) gives the curves and the conversation
replays; hand-made episodes give the other replay kinds and the hostile transcript. Each page
must render its plots and replays, load every image, and log no JavaScript error; a screenshot
is saved next to the report. Skipped, with the reason, only when no Chromium is installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import chromium, find_browser, load
from report_helpers import PAYLOAD, write_run

from vlmrl.report import build_report

pytestmark = pytest.mark.slow

FOUND = find_browser()
needs_browser = pytest.mark.skipif(isinstance(FOUND, str), reason=FOUND if isinstance(FOUND, str) else "")


@pytest.fixture(scope="module")
def session():
    browser, driver = FOUND
    with chromium(browser, driver) as opened:
        yield opened


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    from vlmrl.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo") / "run"
    run_demo(DemoConfig(out=str(out), steps=2, eval_size=12))
    return out


def visible_count(session, selector: str) -> int:
    return session.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".filter(function (e) { var r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length",
        selector,
    )


@needs_browser
def test_console_errors_are_caught(session, tmp_path: Path):
    """The check below can fail: a page with a script error shows up in the console log."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefinedAnywhere();</script></body></html>")
    assert load(session, page), "a JavaScript error must appear among the console's errors"


@needs_browser
def test_report_of_a_short_real_run(session, short_run: Path):
    report = short_run / "report.html"
    assert report.is_file()
    assert load(session, report) == []
    assert visible_count(session, "figure.plot svg") >= 5
    assert visible_count(session, "table#comparison tr") >= 2
    assert visible_count(session, "article.sample") >= 8
    broken = session.execute_script(
        "return Array.from(document.images).filter(function (i) { return !(i.naturalWidth > 0); }).length"
    )
    assert broken == 0
    # The outcome filter hides the other cards.
    shown = session.execute_script(
        "var s = document.querySelector('select[name=outcome]'); s.value = 'correct';"
        "s.dispatchEvent(new Event('change'));"
        "return document.querySelectorAll('article.sample:not(.hidden)').length;"
    )
    correct = session.execute_script(
        "return document.querySelectorAll('article[data-outcome=correct]').length"
    )
    assert shown == correct
    assert session.find_element("id", "shown-count").text == str(correct)
    assert session.save_screenshot(str(short_run / "report.png"))


@needs_browser
def test_every_replay_view_renders_and_model_text_stays_inert(session, tmp_path: Path):
    run = write_run(tmp_path / "run", qa_text="<answer>" + PAYLOAD + "</answer>")
    report = build_report(run)
    assert load(session, report) == []
    for selector in (
        "div.spy-game figure.spy",
        "div.tool-trajectory rect.box",
        "div.mask img.scene",
        "div.env-episode img.frame",
    ):
        assert visible_count(session, selector) >= 1, selector
    assert session.execute_script("return window.__pwned === undefined")
    assert session.save_screenshot(str(run / "report.png"))
