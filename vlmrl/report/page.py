"""`build_report(run_dir)`: one self-contained `report.html` per run directory.

The page has inline CSS and JS only (no network, works from `file://`), references the run's
own images by paths relative to the run directory, and embeds everything else (curves as SVG,
mask overlays as PNG data). Sections: status, evaluation (before -> after with bootstrap
intervals, each evaluation's table, the command's own results), training curves, data previews,
the sample browser (filters by step, outcome, role and view) and the resolved config.

It is rebuilt whenever a command wants (during training, so a refresh shows progress, and at the
end); the file is replaced atomically so a browser never loads half a page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vlmrl.report.readers import RunContents, Sample, read_run
from vlmrl.report.replays import (
    badge,
    conversation_view,
    episode_view,
    escape,
    first_assistant_index,
    number,
    replay_kind,
    table,
)

REPORT_NAME = "report.html"

STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d8dde6; --good: #1a7f37; --bad: #c0392b;
        --warn: #b7791f; --accent: #2f5fb3; --paper: #fbfcfe; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--paper); margin: 0; }
header.top { padding: 16px 24px; background: #eef2f9; border-bottom: 1px solid var(--line); }
header.top h1 { margin: 0 0 4px 0; font-size: 20px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 8px 24px 48px 24px; max-width: 1400px; }
section { margin-top: 24px; }
h2 { font-size: 17px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h4 { margin: 10px 0 4px 0; font-size: 13px; color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f1f4f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.primary td { font-weight: 600; }
.up { color: var(--good); } .down { color: var(--bad); }
.plots { display: flex; flex-wrap: wrap; gap: 10px; }
figure.plot { margin: 0; background: white; border: 1px solid var(--line); border-radius: 4px; }
figure.plot svg { display: block; width: 420px; height: auto; }
.filters { position: sticky; top: 0; background: var(--paper); padding: 8px 0; z-index: 2;
           border-bottom: 1px solid var(--line); }
.filters label { margin-right: 14px; }
article.sample { background: white; border: 1px solid var(--line); border-radius: 6px;
                 margin: 10px 0; padding: 8px 12px; }
article.sample > header { font-size: 12px; color: var(--muted); margin-bottom: 6px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px;
         background: #e6e9ef; color: var(--ink); margin-left: 4px; }
.badge.good { background: #dcf3e3; color: var(--good); } .badge.bad { background: #f9e0dd; color: var(--bad); }
.badge.warn { background: #fbefd5; color: var(--warn); }
.message { border-left: 3px solid var(--line); padding: 2px 8px; margin: 4px 0; }
.message.assistant { border-left-color: var(--accent); background: #f5f8fd; }
.message .who { font-size: 11px; text-transform: uppercase; color: var(--muted); }
.text { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; font-size: 12.5px; }
.turn-facts { font-size: 11.5px; color: var(--muted); }
img.thumb { max-width: 168px; max-height: 168px; image-rendering: pixelated; border: 1px solid var(--line); }
img.player-image, img.scene, img.original { width: 200px; image-rendering: pixelated; }
img.crop, img.frame { max-width: 120px; image-rendering: pixelated; }
.players, .panels { display: flex; flex-wrap: wrap; gap: 8px; }
figure.player { margin: 0; border: 3px solid transparent; padding: 2px; }
figure.player.spy { border-color: var(--bad); }
.panels figure { margin: 0; }
.boxed { position: relative; display: inline-block; }
.boxed svg.boxes { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
svg.boxes rect.box { fill: none; stroke: #ff3b30; stroke-width: 2; }
svg.boxes text.box-label { fill: #ff3b30; font-size: 12px; font-weight: bold; }
.replay-title { font-weight: 600; margin-bottom: 4px; }
.missing, .note, .error { color: var(--warn); font-size: 12px; }
pre.config { background: white; border: 1px solid var(--line); padding: 8px; overflow-x: auto; }
.hidden { display: none; }
div.block.group { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; margin: 12px 0;
                  background: #f7f9fc; }
div.block.group article.sample { margin: 6px 0 6px 24px; }
.group-head { font-size: 12px; color: var(--muted); font-weight: 600; }
img.preview { max-width: 560px; }
"""

# Filters only toggle a class; they never build markup from data, so nothing in an episode can
# reach the DOM as HTML through them.
SCRIPT = """
(function () {
  var selects = document.querySelectorAll('.filters select');
  var cards = document.querySelectorAll('article.sample');
  var counter = document.getElementById('shown-count');
  function apply() {
    var wanted = {};
    selects.forEach(function (s) { wanted[s.name] = s.value; });
    var shown = 0;
    cards.forEach(function (card) {
      var keep = true;
      Object.keys(wanted).forEach(function (key) {
        if (wanted[key] !== '' && card.dataset[key] !== wanted[key]) { keep = false; }
      });
      card.classList.toggle('hidden', !keep);
      if (keep) { shown += 1; }
    });
    document.querySelectorAll('div.block').forEach(function (block) {
      block.classList.toggle('hidden', block.querySelector('article.sample:not(.hidden)') === null);
    });
    if (counter) { counter.textContent = String(shown); }
  }
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  apply();
})();
"""


def _interval(value: Any) -> str:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
    ):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return "-"


def _metric_order(metrics: dict[str, Any], primary: str | None) -> list[str]:
    return sorted(metrics, key=lambda k: (k != primary, "/" in k, k))


def status_section(contents: RunContents, status: str | None) -> str:
    metrics = contents.metrics
    last = int(metrics[-1]["step"]) if metrics else 0
    planned = None
    # The run's own config.yaml first: other YAML files (a demo's options) may say "steps: 0".
    names = sorted(contents.config_files, key=lambda name: name != "config.yaml")
    for line in (line for name in names for line in contents.config_files[name].splitlines()):
        if planned is None and line.startswith("steps:"):
            value = line.split(":", 1)[1].strip()
            planned = int(value) if value.isdigit() and int(value) > 0 else None
    if status is None:
        if planned and last < planned:
            status = "training"
        elif contents.evaluations or contents.results:
            status = "finished"
        else:
            status = "written"
    progress = (
        f"step {last}" + (f" of {planned}" if planned else "") if metrics else "no training steps logged"
    )
    note = " · refresh this page to see progress" if status in ("training", "evaluating") else ""
    problems = "".join(f"<li>{escape(p)}</li>" for p in contents.problems[:20])
    if len(contents.problems) > 20:
        problems += f"<li>… and {len(contents.problems) - 20} more</li>"
    return (
        f'<p id="status">status: <b>{escape(status)}</b> · {escape(progress)} · '
        f"{contents.samples_total} saved episode(s){escape(note)}</p>"
        + (f'<ul class="note">{problems}</ul>' if problems else "")
    )


def comparison_section(contents: RunContents) -> str:
    rows = contents.comparison
    if not rows:
        return ""
    before = contents.evaluations.get("before", {}).get("tasks", {})
    after = contents.evaluations.get("after", {}).get("tasks", {})
    body = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        task, metric = str(row.get("task", "")), str(row.get("metric", ""))
        primary = before.get(task, {}).get("primary_metric")
        before_interval = before.get(task, {}).get("intervals", {}).get(metric)
        after_interval = after.get(task, {}).get("intervals", {}).get(metric)
        delta = row.get("delta")
        low, high = row.get("low"), row.get("high")
        significant = (
            isinstance(low, (int, float)) and isinstance(high, (int, float)) and (low > 0 or high < 0)
        )
        direction = (
            "up"
            if isinstance(delta, (int, float)) and delta > 0
            else "down"
            if isinstance(delta, (int, float)) and delta < 0
            else ""
        )
        cells = [
            escape(task),
            escape(metric),
            f"{number(row.get('a'))} {_interval(before_interval)}",
            f"{number(row.get('b'))} {_interval(after_interval)}",
            f'<span class="{direction}">{number(delta) if not isinstance(delta, float) else f"{delta:+.3f}"}</span>'
            + (" *" if significant else ""),
            _interval([low, high]),
            escape(row.get("n", "")),
        ]
        body.append((metric != primary, "/" in metric, metric, cells))
    body.sort(key=lambda item: item[:3])
    html_rows = "".join(
        f'<tr class="{"" if item[0] else "primary"}">' + "".join(f"<td>{c}</td>" for c in item[3]) + "</tr>"
        for item in body
    )
    return (
        '<h3>before → after</h3><table id="comparison"><thead><tr><th>task</th><th>metric</th>'
        "<th>before [95% CI]</th><th>after [95% CI]</th><th>after − before</th>"
        f"<th>95% CI of the difference (paired)</th><th>n</th></tr></thead><tbody>{html_rows}</tbody></table>"
        '<p class="note">*: the paired bootstrap interval of the difference excludes 0.</p>'
    )


def evaluation_tables(contents: RunContents) -> str:
    parts = []
    order = sorted(contents.evaluations, key=lambda n: (n != "before", n != "after", n))
    for name in order:
        results = contents.evaluations[name]
        rows = []
        for task_name, task in results.get("tasks", {}).items():
            metrics = task.get("metrics", {}) if isinstance(task, dict) else {}
            for metric in _metric_order(metrics, task.get("primary_metric")):
                rows.append(
                    [
                        escape(task_name),
                        escape(metric),
                        number(metrics[metric]),
                        _interval(task.get("intervals", {}).get(metric)),
                        escape(task.get("count", "")),
                    ]
                )
        heading = f"evaluation '{name}' · model {results.get('model', '?')}"
        body = table(["task", "metric", "value", "95% CI", "n"], rows)
        if contents.comparison:  # already summed up in the before -> after table
            parts.append(f"<details><summary>{escape(heading)}</summary>{body}</details>")
        else:
            parts.append(f"<h4>{escape(heading)}</h4>{body}")
    return "".join(parts)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items = []
        for key, inner in value.items():
            items += _flatten(inner, f"{prefix}{key}." if prefix or key else "")
        return items
    return [(prefix.rstrip("."), value)]


def results_section(contents: RunContents) -> str:
    if not contents.results:
        return ""
    rows = [
        [escape(key), number(value)]
        for key, value in _flatten(contents.results)
        if value is not None
        and not isinstance(value, list)
        and (not isinstance(value, float) or math.isfinite(value))
    ]
    return "<h4>the command's own results (results.json)</h4>" + table(["key", "value"], rows)


def curves_section(contents: RunContents) -> str:
    if not contents.metrics:
        return "<p>No metrics.jsonl yet.</p>"
    from vlmrl.report.plots import training_curves

    figures = [
        f'<figure class="plot" data-keys="{escape(",".join(keys))}" title="{escape(title)}">{svg}</figure>'
        for title, keys, svg in training_curves(contents.metrics)
    ]
    return f'<div class="plots">{"".join(figures)}</div>'


def _options(name: str, label: str, values: list[str]) -> str:
    options = '<option value="">all</option>' + "".join(
        f'<option value="{escape(v)}">{escape(v)}</option>' for v in values
    )
    return f'<label>{escape(label)} <select name="{escape(name)}">{options}</select></label>'


def _card(sample: Sample, directory: Path, start: int) -> str:
    record = sample.record
    components = record.get("reward_components")
    facts = [
        f"step {sample.step}" if sample.step is not None else "no step",
        f"group {record.get('group', '')}",
        f"reward {number(record.get('reward'))}",
    ]
    if isinstance(components, dict) and components:
        facts.append(", ".join(f"{k} {number(v)}" for k, v in components.items()))
    advantage = record.get("advantage")
    if isinstance(advantage, (int, float)) and not isinstance(advantage, bool):
        facts.append(f"advantage {number(advantage)}")
    outcome = sample.outcome
    badges = badge(outcome, {"correct": "good", "wrong": "bad"}.get(outcome, ""))
    if sample.role:
        badges += badge(f"role: {sample.role}")
    if record.get("truncated"):
        badges += badge("truncated", "warn")
    if record.get("masked"):
        badges += badge("masked from the loss", "warn")
    return (
        f'<article class="sample" data-step="{escape(sample.step if sample.step is not None else "none")}" '
        f'data-outcome="{escape(outcome)}" data-role="{escape(sample.role or "none")}" '
        f'data-kind="{escape(replay_kind(sample))}"><header>{escape(" · ".join(facts))} {badges} '
        f'<span class="source">{escape(sample.source)}:{sample.line}</span></header>'
        f"{episode_view(sample, directory, start=start)}</article>"
    )


def _prompt_key(sample: Sample) -> str:
    messages = sample.record.get("messages") or []
    return json.dumps(messages[: first_assistant_index(sample.record)], sort_keys=True, default=str)


def _blocks(samples: list[Sample]) -> list[list[Sample]]:
    """Consecutive episodes of one file and group: a GRPO group, one game's players."""
    blocks: list[list[Sample]] = []
    for sample in samples:
        key = (sample.source, sample.record.get("group"))
        if (
            blocks
            and (blocks[-1][0].source, blocks[-1][0].record.get("group")) == key
            and key[1] not in (None, "")
        ):
            blocks[-1].append(sample)
        else:
            blocks.append([sample])
    return blocks


def samples_section(contents: RunContents) -> str:
    samples = contents.samples
    if not samples:
        return "<p>No saved episodes under samples/ yet.</p>"
    steps = sorted({s.step for s in samples if s.step is not None})
    roles = sorted({s.role for s in samples if s.role})
    kinds = sorted({replay_kind(s) for s in samples})
    step_values = [str(s) for s in steps] + (["none"] if any(s.step is None for s in samples) else [])
    filters = [
        _options("step", "step", step_values),
        _options("outcome", "outcome", ["correct", "wrong", "unknown"]),
    ]
    if roles:
        filters.append(_options("role", "role", roles + ["none"]))
    filters.append(_options("kind", "view", kinds))
    parts = []
    for block in _blocks(samples):
        shared = (
            len(block) > 1
            and all(replay_kind(s) == "conversation" for s in block)
            and len({_prompt_key(s) for s in block}) == 1
        )
        if not shared:
            parts.append(
                f'<div class="block">{"".join(_card(s, contents.directory, 0) for s in block)}</div>'
            )
            continue
        # A GRPO group: the prompt once, then each sampled completion with its reward.
        first = block[0]
        start = first_assistant_index(first.record)
        prompt = conversation_view(first, stop=start)
        mean = sum(float(s.record.get("reward") or 0.0) for s in block) / len(block)
        parts.append(
            f'<div class="block group"><div class="group-head">group {escape(first.record.get("group", ""))} · '
            f"step {escape(first.step)} · {len(block)} episodes sharing this prompt · mean reward {mean:.3f}</div>"
            f"{prompt}{''.join(_card(s, contents.directory, start) for s in block)}</div>"
        )
    shown = (
        f"{len(samples)} of {contents.samples_total} saved episodes are in this page (at most a fixed "
        f"number per samples file, whole groups)"
    )
    return (
        f'<div class="filters">{"".join(filters)} showing <span id="shown-count">{len(samples)}</span> '
        f'<span class="note">({escape(shown)})</span></div>{"".join(parts)}'
    )


def render(contents: RunContents, status: str | None = None, title: str | None = None) -> str:
    title = title or f"vlmrl report: {contents.directory.name}"
    config = "".join(
        f'<h4>{escape(name)}</h4><pre class="config">{escape(text)}</pre>'
        for name, text in contents.config_files.items()
    )
    previews = "".join(
        f'<figure><img class="preview" src="{escape(url)}" alt="{escape(label)}" loading="lazy">'
        f"<figcaption>{escape(label)}</figcaption></figure>"
        for label, url in contents.data_previews
    )
    evaluation = comparison_section(contents) + evaluation_tables(contents) + results_section(contents)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body><header class="top"><h1>{escape(title)}</h1>{status_section(contents, status)}
<nav><a href="#evaluation">evaluation</a><a href="#curves">training curves</a>{'<a href="#data">data</a>' if previews else ""}<a href="#samples">samples</a><a href="#config">config</a></nav></header>
<main>
<section id="evaluation"><h2>Evaluation</h2>{evaluation or "<p>No evaluation in this run directory yet.</p>"}</section>
<section id="curves"><h2>Training curves</h2>{curves_section(contents)}</section>
{f'<section id="data"><h2>Data</h2><div class="panels">{previews}</div></section>' if previews else ""}
<section id="samples"><h2>Samples</h2>{samples_section(contents)}</section>
<section id="config"><h2>Config</h2>{config or "<p>No config.yaml.</p>"}</section>
</main><script>{SCRIPT}</script></body></html>
"""


def build_report(
    run_directory: str | Path,
    *,
    status: str | None = None,
    samples_per_file: int = 32,
    title: str | None = None,
) -> Path:
    """Write `report.html` into the run directory (atomically) and return its path."""
    from vlmrl.runs import atomic_write_text

    directory = Path(run_directory)
    contents = read_run(directory, samples_per_file=samples_per_file)
    return atomic_write_text(directory / REPORT_NAME, render(contents, status=status, title=title))


def report_summary(path: str | Path) -> dict[str, Any]:
    """What a page holds, for tests and logs: counts of plots, samples and replays by kind."""
    text = Path(path).read_text()
    kinds = {}
    for kind in ("conversation", "spy_game", "tool_trajectory", "mask", "env_episode"):
        kinds[kind] = text.count(f'data-kind="{kind}"')
    return {"plots": text.count('<figure class="plot"'), "samples": text.count("<article"), "kinds": kinds}
