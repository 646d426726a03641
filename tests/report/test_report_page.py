"""The report page: each replay view on hand-made episodes, escaping, filters, partial runs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_helpers import PAYLOAD, write_run

from vlmrl.report import build_report, report_summary
from vlmrl.report.page import SCRIPT
from vlmrl.report.plots import group_metrics

METHOD_PACKAGES = ("games", "toolloop", "ttrv", "vldac", "masters", "masktok")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def with_class(self, css_class: str) -> list[dict[str, str | None]]:
        return [attrs for _, attrs in self.tags if css_class in (attrs.get("class") or "").split()]


def parse(path: Path) -> Elements:
    parser = Elements()
    parser.feed(path.read_text())
    return parser


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return build_report(write_run(tmp_path / "run"))


def test_every_replay_kind_has_its_view(report: Path):
    summary = report_summary(report)
    assert summary["samples"] == 6
    assert summary["kinds"] == {
        "conversation": 2,
        "spy_game": 1,
        "tool_trajectory": 1,
        "mask": 1,
        "env_episode": 1,
    }
    page = parse(report)
    text = report.read_text()
    # spy game: three players, the spy's framed, clues and votes by player, rewards by role
    players = page.with_class("player")
    assert len(players) == 3 and len(page.with_class("spy")) == 1
    assert "player 3 (spy)" in text and "no vote (unparseable)" in text and "N/A" in text
    # tool trajectory: one valid box drawn on the original, the crop shown, over-turn marked
    assert len(page.with_class("box")) == 1
    assert len(page.with_class("crop")) == 1
    assert "over-turn" in text and "bbox outside the image" in text
    # mask: scene plus three overlays embedded as PNG data, IoU and the mask tokens
    overlays = [a for a in page.with_class("scene") if (a.get("src") or "").startswith("data:image/png")]
    assert len(overlays) == 3
    assert "&lt;|mt_start|&gt;" in text and "IoU 0.391" in text
    # environment episode: a row per step with its frame, validity, value and reward
    assert len(page.with_class("frame")) == 2
    assert "gridworld" in text and "return 1.000" in text


def test_images_are_the_run_files_by_relative_path(report: Path):
    page = parse(report)
    sources = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    files = [s for s in sources if not s.startswith("data:")]
    assert files and all(s.startswith("samples/images/") for s in files)
    assert all((report.parent / s).is_file() for s in files)


def test_grpo_group_shares_its_prompt_and_shows_rewards_and_advantages(report: Path):
    text = report.read_text()
    assert text.count("2 episodes sharing this prompt") == 1
    assert "advantage 0.500" in text and "advantage -0.500" in text
    assert "accuracy 1.000, format 1.000" in text
    # per-turn advantages of a multi-turn episode appear on their turns
    assert "advantage 0.250" in text and "advantage 0.750" in text


def test_filters_by_step_outcome_role_and_view(report: Path):
    page = parse(report)
    selects = {attrs["name"]: attrs for tag, attrs in page.tags if tag == "select"}
    assert set(selects) == {"step", "outcome", "role", "kind"}
    options = [attrs.get("value") for tag, attrs in page.tags if tag == "option"]
    assert "3" in options and "civilian" in options and "spy_game" in options
    cards = [attrs for tag, attrs in page.tags if tag == "article"]
    outcomes = sorted(a["data-outcome"] for a in cards)
    # qa: accuracy 1 and 0; spy: correct; tool: correct; mask: wrong; env: success
    assert outcomes == ["correct", "correct", "correct", "correct", "wrong", "wrong"]
    assert {a["data-step"] for a in cards} == {"3"}


def test_model_text_is_inert(tmp_path: Path):
    run = write_run(tmp_path / "run", qa_text="<answer>" + PAYLOAD + "</answer>")
    (run / "config.yaml").write_text("steps: 3\nnote: '" + PAYLOAD.replace("'", "''") + "'\n")
    report = build_report(run)
    page = parse(report)
    assert page.scripts == [SCRIPT], "the page's own script is its only script"
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.lower().startswith("on")]
    assert handlers == []
    assert not any(tag == "img" and attrs.get("src") == "x" for tag, attrs in page.tags)
    text = report.read_text()
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert "onerror=&quot;window.__pwned = 2&quot;" in text


def test_images_outside_the_run_are_never_linked(tmp_path: Path):
    run = write_run(tmp_path / "run")
    samples = run / "samples" / "step-3.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not for the page")
    records[0]["messages"][0]["content"][0]["image"] = "../../secret.png"
    records[1]["messages"][0]["content"][0]["image"] = "images/absent.png"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    text = build_report(run).read_text()
    assert "secret.png" not in text
    assert "is missing on disk" in text


def test_a_run_being_written_still_reports(tmp_path: Path):
    run = write_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "reward_me')  # a torn last line
    with open(run / "samples" / "step-3.jsonl", "a") as handle:
        handle.write('{"messages": [')
    report = build_report(run)
    text = report.read_text()
    assert "status: <b>finished</b>" not in text
    assert "metrics.jsonl line 4 is not JSON" in text and "samples/step-3.jsonl line 7 is not JSON" in text
    assert report_summary(report)["samples"] == 6
    assert "status: <b>training</b>" in build_report(run, status="training").read_text()


def test_an_empty_run_directory_gives_a_page(tmp_path: Path):
    report = build_report(tmp_path)
    assert "No metrics.jsonl yet" in report.read_text()
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_report(tmp_path / "absent")


def test_curves_group_known_metrics_and_keep_new_ones(report: Path):
    titles = [
        title
        for title, _ in group_metrics(
            [
                {
                    "step": 1,
                    "reward_mean": 1.0,
                    "reward/accuracy_mean": 0.5,
                    "reward_std": 0.1,
                    "kl": 0.0,
                    "my_new_metric": 2,
                }
            ]
        )
    ]
    assert titles == ["reward", "KL to reference", "my_new_metric"]
    page = parse(report)
    plots = page.with_class("plot")
    assert [p["title"] for p in plots][:3] == ["reward", "loss", "KL to reference"]
    assert any(p["title"] == "my_new_metric" for p in plots)
    assert report.read_text().count("<svg") >= len(plots)


def test_rebuilding_gives_the_same_page(tmp_path: Path):
    run = write_run(tmp_path / "run")
    first = build_report(run).read_text()
    assert build_report(run).read_text() == first


def test_before_after_table_from_harness_runs(tmp_path: Path):
    run = write_run(tmp_path / "run")
    for name, answers in (("before", ["red", "no", "no"]), ("after", ["red", "red", "no"])):
        directory = run / "eval" / name
        (directory / "predictions").mkdir(parents=True)
        lines = [
            {
                "id": str(i),
                "output": f"<answer>{a}</answer>",
                "score": {"accuracy": float(a == "red"), "format": 1.0},
            }
            for i, a in enumerate(answers)
        ]
        (directory / "predictions" / "toy.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        accuracy = sum(a == "red" for a in answers) / 3
        results = {
            "model": name,
            "tasks": {
                "toy": {
                    "metrics": {"accuracy": accuracy, "format": 1.0},
                    "intervals": {"accuracy": [0.0, 1.0], "format": [1.0, 1.0]},
                    "primary_metric": "accuracy",
                    "count": 3,
                }
            },
        }
        (directory / "results.json").write_text(json.dumps(results))
    text = build_report(run).read_text()
    assert 'id="comparison"' in text
    row = re.search(r'<tr class="primary">(.*?)</tr>', text).group(1)
    assert "0.333 [0.000, 1.000]" in row and "0.667 [0.000, 1.000]" in row and "+0.333" in row


def test_report_imports_no_method_package():
    root = Path(__file__).resolve().parents[2] / "vlmrl" / "report"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "vlmrl" and len(parts) > 1 and parts[1] in METHOD_PACKAGES), (
                    f"{path.name} imports {name}"
                )


def test_building_a_report_loads_no_method_package(tmp_path: Path):
    run = write_run(tmp_path / "run")
    code = (
        "import sys; from vlmrl.report import build_report; build_report(sys.argv[1]); "
        f"print(sorted(m for m in sys.modules if m.split('.')[:2][-1] in {METHOD_PACKAGES!r} "
        "and m.startswith('vlmrl.')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"


def test_long_runs_show_samples_spread_over_the_run(tmp_path: Path):
    from vlmrl.report.readers import read_samples

    (tmp_path / "samples").mkdir()
    for step in range(1, 101):
        (tmp_path / "samples" / f"step-{step}.jsonl").write_text('{"messages": [], "group": "g"}\n')
    problems: list[str] = []
    samples, total = read_samples(tmp_path, per_file=32, problems=problems, max_files=5)
    assert [s.step for s in samples] == [1, 26, 51, 75, 100] and total == 5
    assert problems == ["100 samples files: showing 5 spread over the run"]
