import json
import os
import signal
import subprocess
import sys
import textwrap

from typer.testing import CliRunner

from vlmrl.cli import app

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from vlmrl.model import VLM
    original = VLM.generate
    calls = []
    def generate(self, conversations, sampling=None, batch_size=None):
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # killed midway, no cleanup
        calls.append(len(conversations))
        return original(self, conversations, sampling, batch_size)
    VLM.generate = generate
    from vlmrl.cli import app
    app(sys.argv[1:])
    """
)


def _run_args(out):
    return [
        "eval",
        "run",
        "--model",
        "tiny",
        "--tasks",
        "shapes-qa,charts-qa",
        "--limit",
        "4",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--resamples",
        "50",
    ]


def test_eval_run_killed_midway_resumes_from_the_cache(tmp_path, monkeypatch):
    out = tmp_path / "run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *_run_args(out)], env=environment, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    cached = (out / "predictions" / "shapes-qa.jsonl").read_text().splitlines()
    assert len(cached) == 4 and not (out / "predictions" / "charts-qa.jsonl").exists()
    assert not (out / "results.json").exists()

    from vlmrl.model import VLM

    original = VLM.generate
    prompts = []

    def recording(self, conversations, sampling=None, batch_size=None):
        prompts.extend(c[-1]["content"][-1]["text"] for c in conversations)
        return original(self, conversations, sampling, batch_size)

    monkeypatch.setattr(VLM, "generate", recording)
    result = CliRunner().invoke(app, _run_args(out))
    assert result.exit_code == 0, result.output
    charts = [json.loads(line) for line in (out / "predictions" / "charts-qa.jsonl").read_text().splitlines()]
    assert len(prompts) == 4  # only the charts docs; the 4 cached shapes answers were reused
    assert "| shapes-qa | **accuracy** |" in result.output
    assert "| charts-qa | **accuracy** |" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["shapes-qa"]["cached"] == 4 and results["tasks"]["charts-qa"]["generated"] == 4
    assert len(charts) == 4

    listing = CliRunner().invoke(app, ["eval", "list"])
    assert "visual-probe" in listing.output and "spy-vote" in listing.output
    compared = CliRunner().invoke(app, ["eval", "compare", str(out), str(out), "--resamples", "20"])
    assert compared.exit_code == 0 and "| shapes-qa | accuracy |" in compared.output


def test_eval_run_reports_bad_input():
    result = CliRunner().invoke(app, ["eval", "run", "--tasks", "nope"])
    assert result.exit_code == 2 and "unknown task 'nope'" in result.output
    result = CliRunner().invoke(app, ["eval", "run", "--model", "/does/not/exist", "--tasks", "shapes-qa"])
    assert result.exit_code == 2 and "no such directory" in result.output
