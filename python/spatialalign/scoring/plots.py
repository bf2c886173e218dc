"""Figures of a scored run: the correctness curve and per-video SSR curves.

Figures are drawn on bare matplotlib ``Figure`` objects with the Agg canvas (no
pyplot global state, no display needed) and written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dsr_geom
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from spatialalign.core.dsr.model import RELATIONS
from spatialalign.core.fileio import atomic_path, write_json
from spatialalign.core.presets import ScoringConfig
from spatialalign.rundir.layout import RunDir, plot_name  # noqa: F401 - re-exported (report.media)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from spatialalign.scoring.batch import LoadedRun

_STAMP = ".plots.json"
_PROGRESS_MIN_PLOTS = 20


def png_bytes(figure: Figure) -> bytes:
    """Renders a Figure to PNG bytes with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def correctness_figure_png(summary: dict[str, Any]) -> bytes:
    """Correctness@tau on the official grid, overall (bold) and per DSR type."""
    from matplotlib.figure import Figure

    # fixed margins (the labels' sizes do not vary): a constrained layout would draw the
    # figure twice, a third of score-batch's time on a large run (docs/BENCHMARKS.md)
    fig = Figure(figsize=(6, 4.2))
    fig.subplots_adjust(left=0.1, right=0.96, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
    taus = summary["thresholds"]

    def values(curve: dict[str, float | None]) -> list[float]:
        return [np.nan if curve.get(f"{t:.1f}") is None else curve[f"{t:.1f}"] for t in taus]

    for name, group in summary["per_type"].items():
        # per-type curves omit "0.0", which is their validness
        curve = {"0.0": group["validness"], **group["correctness"]}
        ax.plot(taus, values(curve), marker=".", linewidth=1, alpha=0.8, label=name)
    ax.plot(
        taus, values(summary["correctness"]), marker="o", linewidth=2.5, color="black", label="all"
    )
    ax.axvline(taus[7], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("DSR threshold tau")
    ax.set_ylabel("Correctness@tau")
    ax.set_xlim(0, 0.9)
    ax.set_ylim(0, 1.02)
    ax.set_xticks([round(t, 1) for t in taus])
    ax.grid(alpha=0.3)
    c = summary["correctness_at_0.7"]
    ax.set_title(
        f"{summary['n_videos']} videos, validness {100 * summary['validness']:.1f}%, "
        f"Correctness@0.7 {'-' if c is None else f'{100 * c:.1f}%'}"
    )
    ax.legend(fontsize=8, ncol=2)
    return png_bytes(fig)


def ssr_figure_png(
    frames: np.ndarray,
    ssr_initial: np.ndarray,
    ssr_final: np.ndarray,
    initial: str,
    final: str,
    title: str,
    n_frames: int | None = None,
) -> bytes:
    """One video's SSR of the initial and the final relation over its frame index."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    kept = ~np.isnan(ssr_initial)
    ax.plot(frames[kept], ssr_initial[kept], linewidth=2.5, label=f"initial: {RELATIONS[initial]}")
    ax.plot(frames[kept], ssr_final[kept], linewidth=2.5, label=f"final: {RELATIONS[final]}")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlim(0, max(1, n_frames if n_frames is not None else int(frames.max(initial=0)) + 1))
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("frame index")
    ax.set_ylabel("SSR score")
    ax.set_title(title, fontsize=9, family="monospace")
    ax.legend(loc="lower center", ncol=2, fontsize=9)
    return png_bytes(fig)


def write_ssr_plots(
    out: RunDir,
    run: LoadedRun,
    scores: pa.Table,
    config: ScoringConfig,
    *,
    progress: bool | None = None,
) -> Path:
    """Writes ``out``'s :meth:`RunDir.plot_path` of every sample that has tracks; returns
    ``out.plots_dir``.

    Resumable: a plot already written for the same tracks and config is kept (a
    stamp file records the config and the inputs' fingerprint).
    """
    plot_dir = out.plots_dir
    plot_dir.mkdir(parents=True, exist_ok=True)
    t = run.tracks
    stamp = {
        "config": config.to_dict(),
        "tracks_rows": int(t.n_rows.sum()),
        "box_checksum": float(np.nansum(t.animal) + 2.0 * np.nansum(t.obj)),
    }
    stamp_path = plot_dir / _STAMP
    try:
        reuse = json.loads(stamp_path.read_text()) == stamp
    except (OSError, ValueError):
        reuse = False
    if not reuse:
        stamp_path.unlink(missing_ok=True)  # stale plots get redrawn

    rows = scores.select(["sample_id", "valid", "reason", "dsr", "r_init", "r_final"]).to_pylist()
    todo = [i for i in range(len(rows)) if t.n_rows[i] > 0]
    show = len(todo) >= _PROGRESS_MIN_PLOTS if progress is None else progress
    for i in tqdm(todo, desc="SSR plots", unit="video", disable=not show):
        row = rows[i]
        path = out.plot_path(row["sample_id"])
        if reuse and path.exists():
            continue
        frames, animal, obj = t.sample(i)
        ini, fin = run.initial[i], run.final[i]
        r_i = dsr_geom.ssr_scores(animal, obj, ini)
        r_f = dsr_geom.ssr_scores(animal, obj, fin)
        if row["valid"]:
            status = (
                f"DSR {row['dsr']:.3f}  r_init {row['r_init']:+.3f}  r_final {row['r_final']:+.3f}"
            )
        else:
            status = f"invalid: {row['reason']}"
        title = f"{row['sample_id']}  ({ini}{fin})\n{status}"
        png = ssr_figure_png(frames, r_i, r_f, ini, fin, title)
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
    write_json(stamp, stamp_path)
    return plot_dir
