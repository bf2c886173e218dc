"""Times ``score_run`` on a synthetic run (12,000 videos x 81 frames, ~1.8M tracks rows)
against reading its ``tracks.parquet`` alone.

    .venv/bin/python scripts/bench_score_batch.py [--videos 12000] [--frames 81] [--dir DIR]
        [--repeat 9] [--json FILE]

Writes the run (prompts, manifest, ~1.8M tracks rows with 10% animal / 5% object
misses, every animal row before every object row) into DIR (default: a temporary
directory), then times, interleaved ``--repeat`` times, and reports medians and their
ratios to the first:

* ``read_file``: ``pyarrow.parquet.read_table`` of ``tracks.parquet`` (every column),
* ``read_tracks``: the tracks reader (ids dictionary-encoded, the Rust densification),
* ``load_run``: every scoring input read and checked (manifest, prompts, tracks),
* ``dsr_batch``: the single kernel call and the scores table,
* ``figure``: rendering ``correctness.png`` (matplotlib),
* ``score_run``: the whole verb (load, score, summary, figure, atomic writes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from spatialalign.core.presets import OFFICIAL
from spatialalign.prompts import DSRPrompt, write_prompts
from spatialalign.rundir.tracks import read_tracks
from spatialalign.scoring.batch import load_run, score_loaded, score_run
from spatialalign.scoring.plots import correctness_figure_png
from spatialalign.scoring.summary import build_summary


def make_run(out: Path, n_videos: int, n_frames: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    types = ["LR", "RL", "LT", "TL", "RT", "TR"] * 50
    prompts = [
        DSRPrompt(animal="fox", object="box", initial=t[0], final=t[1], prompt_id=f"p{i:03d}")
        for i, t in enumerate(types)
    ]
    write_prompts(prompts, out / "prompts.parquet")
    sids = np.array([f"s{v:06d}" for v in range(n_videos)])
    pq.write_table(
        pa.table(
            {
                "sample_id": sids,
                "prompt_id": [prompts[v % len(prompts)].prompt_id for v in range(n_videos)],
                "seed": np.arange(n_videos) % 4,
            }
        ),
        out / "samples" / "manifest.parquet",
    )
    centre = rng.uniform(100, 700, (n_videos, 1, 2)) + np.cumsum(
        rng.normal(0, 5, (n_videos, n_frames, 2)), axis=1
    )
    wh = rng.uniform(20, 100, (n_videos, n_frames, 2))
    animal = np.concatenate([centre - wh / 2, centre + wh / 2], axis=2).reshape(-1, 4)
    obj = np.tile(np.array([350.0, 250.0, 450.0, 350.0]), (n_videos * n_frames, 1))
    frame = np.tile(np.arange(n_frames), n_videos)
    sample = np.repeat(sids, n_frames)

    def part(keep: np.ndarray, boxes: np.ndarray, label: str) -> pa.Table:
        cols = {"sample_id": sample[keep], "frame": frame[keep], "label": [label] * keep.sum()}
        for j, c in enumerate(("x0", "y0", "x1", "y1")):
            cols[c] = boxes[keep, j]
        cols["score"] = np.full(keep.sum(), 0.5)
        return pa.table(cols)

    n = n_videos * n_frames
    table = pa.concat_tables(
        [part(rng.random(n) > 0.1, animal, "animal"), part(rng.random(n) > 0.05, obj, "object")]
    )
    pq.write_table(table, out / "tracks.parquet")
    return table.num_rows


STEPS = ("read_file", "read_tracks", "load_run", "dsr_batch", "figure", "score_run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12_000)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.dir or Path(tmp) / "run"
        rows = make_run(run, args.videos, args.frames)
        ids = pq.read_table(run / "samples" / "manifest.parquet").column("sample_id")
        times: dict[str, list[float]] = {k: [] for k in STEPS}

        def timed(name: str, fn, *a, **kw):
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            times[name].append(time.perf_counter() - t0)
            return out

        score_run(run, progress=False)  # warm up: imports, matplotlib's font cache
        for _ in range(args.repeat):
            timed("read_file", pq.read_table, run / "tracks.parquet")
            tracks = timed("read_tracks", read_tracks, run / "tracks.parquet", ids)
            loaded = timed("load_run", load_run, run, progress=False)
            scores = timed("dsr_batch", score_loaded, loaded, OFFICIAL)
            types = [i + f for i, f in zip(loaded.initial, loaded.final, strict=True)]
            summary = build_summary(scores, types, OFFICIAL)
            timed("figure", correctness_figure_png, summary)
            result = timed("score_run", score_run, run, progress=False)
    median = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "videos": args.videos,
        "frames": len(tracks.frames),
        "tracks_rows": rows,
        "repeat": args.repeat,
        "median_s": median,
        "ratio_to_read_file": {k: v / median["read_file"] for k, v in median.items()},
        "valid": f"{result.n_valid}/{result.n_videos}",
        "cpu_count": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    print(
        f"{args.videos} videos, {report['frames']} frames, {rows} tracks rows, "
        f"{report['valid']} valid; medians of {args.repeat} (load average "
        f"{report['loadavg_1m']:.1f} on {os.cpu_count()} cores):"
    )
    for k in STEPS:
        print(
            f"  {k:12s} {median[k] * 1e3:8.1f} ms  {report['ratio_to_read_file'][k]:5.2f}x read_file"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
