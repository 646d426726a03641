"""`vlmrl report RUN_DIR`: writes the page and prints its path; bad input is a usage error."""

from __future__ import annotations

import re
from pathlib import Path

from report_helpers import write_run
from typer.testing import CliRunner

from vlmrl.cli import app


def test_report_command_writes_the_page(tmp_path: Path):
    run = write_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.html").is_file()
    assert "report.html" in result.output


def test_report_command_names_a_missing_directory(tmp_path: Path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "is not a directory" in re.sub(r"[│╭╮╰╯─\s]+", " ", result.output)


def test_open_without_a_browser_says_where_the_page_is(tmp_path: Path, monkeypatch):
    import webbrowser

    def no_browser(*args, **kwargs):
        raise webbrowser.Error("none")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    run = write_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["report", str(run), "--open"])
    assert result.exit_code == 0, result.output
    assert "no browser found" in result.output
