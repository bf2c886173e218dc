"""The report's own figures: per-DSR-type bars of each run and training curves.

Drawn on bare matplotlib ``Figure`` objects (Agg canvas, no pyplot state) and
returned as PNG bytes, like :mod:`spatialalign.scoring.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from spatialalign.scoring.plots import png_bytes

# panels of the training figure: (title, keys drawn when logged)
TRAIN_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss terms", ("loss", "loss_dpo", "loss_zo", "loss_sft", "loss_rwr", "policy_loss")),
    ("implicit rewards", ("score_w", "score_l", "margin")),
    ("implicit accuracy", ("accuracy",)),
    ("learning rate", ("lr",)),
    # rl runs (spatialalign rl): the iteration's samples and the update's terms
    ("rl: samples", ("reward_mean", "correct_0.7", "validness")),
    ("rl: KL to the reference", ("kl", "approx_kl")),
    ("rl: kept and clipped", ("kept_fraction", "groups_kept", "clip_fraction")),
)


def _value(x: Any) -> float:
    """A logged number as float; anything else (None, text) is NaN."""
    return float(x) if isinstance(x, int | float) else math.nan


def per_type_bars_png(runs: Sequence[tuple[str, dict[str, Any]]]) -> bytes | None:
    """Grouped bars of Correctness@0.7 and validness per DSR type, one colour per run
    (from each run's summary.json ``per_type``); None when no run has types."""
    from matplotlib.figure import Figure

    types = sorted({t for _, s in runs for t in s.get("per_type", {})})
    if not types:
        return None
    fig = Figure(figsize=(max(6.0, 0.9 * len(types) + 2), 4.2), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(types))
    width = 0.8 / len(runs)
    for ax, key, label in (
        (axes[0], "correctness_at_0.7", "Correctness@0.7"),
        (axes[1], "validness", "validness"),
    ):
        for i, (name, summary) in enumerate(runs):
            per_type = summary.get("per_type", {})
            values = [_value(per_type.get(t, {}).get(key)) for t in types]
            ax.bar(x - 0.4 + (i + 0.5) * width, values, width, label=name)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(x, types)
    axes[1].set_xlabel("DSR type (initial → final)")
    axes[0].legend(fontsize="small", ncol=min(4, len(runs)))
    return png_bytes(fig)


def train_panels(records: Sequence[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The panels of :data:`TRAIN_PANELS` that ``records`` log a number of, each with the
    keys it draws."""
    panels = []
    for title, keys in TRAIN_PANELS:
        present = [k for k in keys if any(isinstance(r.get(k), int | float) for r in records)]
        if present:
            panels.append((title, present))
    return panels


def training_curves_png(name: str, records: Sequence[dict[str, Any]]) -> bytes | None:
    """The logged loss terms, implicit rewards and margin, implicit accuracy and lr over
    steps, and an rl run's reward, KL and kept fractions over iterations (a panel per group
    of :data:`TRAIN_PANELS`, only the keys present); None when nothing is drawable."""
    from matplotlib.figure import Figure

    steps = np.array([_value(r.get("step", i)) for i, r in enumerate(records)])
    panels = train_panels(records)
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (title, keys) in zip(axes, panels, strict=False):
        for k in keys:
            y = np.array([_value(r.get(k)) for r in records])
            ax.plot(steps, y, linewidth=1.2, label=k)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize="x-small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"training: {name}", fontsize=11)
    return png_bytes(fig)
