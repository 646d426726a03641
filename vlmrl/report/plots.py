"""Training curves from metrics.jsonl as inline SVG (matplotlib, no files, no network).

Metrics are grouped into the panels a reader looks for first (reward and its components, KL,
entropy, clip fractions, lengths, learning rate, evaluation metrics); every other numeric key
gets a panel of its own, so a method's new metric shows up without touching this file.
The SVG is made reproducible (fixed ids, no date) so a rerun with the same figures writes the
same page.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

# (panel title, rule choosing keys); order is the order on the page.
PANELS: list[tuple[str, Any]] = [
    ("reward", lambda k: k == "reward_mean" or (k.startswith("reward/") and k.endswith("_mean"))),
    ("loss", lambda k: k in ("loss", "policy_loss")),
    ("KL to reference", lambda k: k == "kl" or k.endswith("/kl")),
    ("entropy", lambda k: k == "entropy" or k.endswith("/entropy")),
    ("clip fraction", lambda k: k.startswith("clip_fraction")),
    ("importance ratio", lambda k: k.startswith("ratio_")),
    ("lengths (tokens)", lambda k: k.startswith("length_")),
    ("learning rate", lambda k: k == "learning_rate"),
    ("gradient norm", lambda k: k == "grad_norm"),
    ("evaluation", lambda k: k.startswith("eval/") or k.startswith("eval_")),
    ("seconds per step", lambda k: k.startswith("time_")),
]
# Bookkeeping that would only add noise as a curve.
SKIPPED = re.compile(r"^(step|time|optimizer_steps)$|_std$")


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def group_metrics(records: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """[(panel title, keys)] for the numeric keys present in the records."""
    keys = sorted({k for r in records for k, v in r.items() if _numeric(v) and not SKIPPED.search(k)})
    panels, taken = [], set()
    for title, rule in PANELS:
        chosen = [k for k in keys if k not in taken and rule(k)]
        if chosen:
            panels.append((title, chosen))
            taken.update(chosen)
    panels += [(key, [key]) for key in keys if key not in taken]
    return panels


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if _numeric(value):
            steps.append(float(record["step"]))
            values.append(float(value))
    return steps, values


def curve_svg(records: list[dict[str, Any]], title: str, keys: list[str], salt: str) -> str:
    """One panel as an SVG document string (the XML prolog stripped, ready to inline)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(
        {"svg.hashsalt": salt, "svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10}
    ):
        figure, axes = plt.subplots(figsize=(4.2, 2.6), dpi=100)
        try:
            for key in keys:
                steps, values = _series(records, key)
                marker = "o" if len(steps) < 12 else None
                axes.plot(steps, values, label=key, linewidth=1.4, marker=marker, markersize=3)
            axes.set_title(title)
            axes.set_xlabel("step")
            axes.grid(alpha=0.3)
            axes.ticklabel_format(axis="y", useOffset=False)
            if title == "learning rate":
                axes.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
            if len(keys) > 1:
                axes.legend(fontsize=7, frameon=False)
            figure.tight_layout()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def training_curves(records: list[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    """[(panel title, keys, inline SVG)] for every panel of the run's metrics."""
    return [
        (title, keys, curve_svg(records, title, keys, salt=f"vlmrl-{index}"))
        for index, (title, keys) in enumerate(group_metrics(records))
    ]
