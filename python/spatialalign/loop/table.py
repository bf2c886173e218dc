"""The per-round table: each round's evaluation, with a bootstrap interval over prompts.

Correctness@0.7 and its 95 % interval come from :func:`spatialalign.evaluation.compare.summarise_run`
(the ``compare`` verb's numbers); validness and mean DSR from the eval run's summary;
``final_right`` (the toy evaluation's figure) from the eval run's tracks: among valid
videos, how often the relation of left/right/top with the highest mean SSR over the last
three tracked frames is the prompt's final one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from spatialalign.core.fileio import read_json
from spatialalign.rundir.layout import RunDir


@dataclass
class RoundRow:
    """One row of the loop's table."""

    round: int
    correctness: float
    ci_low: float
    ci_high: float
    validness: float
    final_right: float | None
    mean_dsr: float | None
    n_videos: int
    pairs: int | None = None
    train_steps: int | None = None
    train_correctness: float | None = None
    """Correctness@0.7 of the round's TRAIN samples (drawn with the previous round's model)."""
    seconds: float | None = None
    """Wall seconds of the round's stages in the call that finished it."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds per stage in that call (``sample``, ``track``, ... ``eval``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def final_right(run: RunDir) -> float | None:
    """Among the valid videos of ``run``: the share whose shown final relation (L/R/T, last
    three tracked frames) is the prompt's final relation; None without tracks."""
    from spatialalign.toy.evaluate import shown_relations

    if not run.tracks_path.is_file():
        return None
    scores = run.read_scores().select(["sample_id", "prompt_id", "valid"]).to_pylist()
    final = {p.prompt_id: p.final for p in run.read_prompts()}
    rows = run.tracks_path
    import pyarrow.parquet as pq

    tracks = pq.read_table(rows, columns=["sample_id", "frame", "label", "x0", "y0", "x1", "y1"])
    boxes: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in tracks.to_pylist():
        per = boxes.setdefault(r["sample_id"], {}).setdefault(r["label"], {})
        per[r["frame"]] = [r["x0"], r["y0"], r["x1"], r["y1"]]
    right = total = 0
    for s in scores:
        if not s["valid"] or s["sample_id"] not in boxes:
            continue
        by_label = boxes[s["sample_id"]]
        frames = sorted(set(by_label.get("animal", {})) | set(by_label.get("object", {})))
        nan = [math.nan] * 4
        animal = np.array([by_label.get("animal", {}).get(f, nan) for f in frames], np.float64)
        obj = np.array([by_label.get("object", {}).get(f, nan) for f in frames], np.float64)
        _, last, kept = shown_relations(animal.reshape(-1, 4), obj.reshape(-1, 4))
        total += 1
        right += bool(kept) and last == final.get(s["prompt_id"])
    return right / total if total else None


def eval_row(k: int, run: RunDir) -> RoundRow:
    """The evaluation figures of round ``k`` from its eval run directory."""
    from spatialalign.evaluation.compare import CompareConfig, summarise_run

    summary = read_json(run.summary_path)
    s = summarise_run(f"round {k}", run.read_scores(), [], CompareConfig())
    return RoundRow(
        round=k,
        correctness=s.correctness.value,
        ci_low=s.correctness.low,
        ci_high=s.correctness.high,
        validness=s.validness.value,
        final_right=final_right(run),
        mean_dsr=summary.get("mean_dsr"),
        n_videos=s.n_videos,
    )


def _num(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def _int(x: int | None) -> str:
    return "-" if x is None else str(x)


HEADER = (
    "| round | Correctness@0.7 [95% CI] | validness | final right | mean DSR | "
    "TRAIN C@0.7 | pairs | train steps | videos | seconds |"
)


def to_markdown(rows: list[RoundRow]) -> str:
    """The table as Markdown (round 0 is the starting model)."""
    lines = [HEADER, "|" + "---|" * 10]
    for r in rows:
        cells = [
            f"{r.round}" + (" (base)" if r.round == 0 else ""),
            f"{_num(r.correctness)} [{_num(r.ci_low)}, {_num(r.ci_high)}]",
            _num(r.validness),
            _num(r.final_right),
            _num(r.mean_dsr),
            _num(r.train_correctness),
            _int(r.pairs),
            _int(r.train_steps),
            str(r.n_videos),
            "-" if r.seconds is None else f"{r.seconds:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
