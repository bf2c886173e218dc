"""Times ``score_run`` on a synthetic run of ~1M frames (12,000 videos x 81 frames).

    .venv/bin/python scripts/bench_score_batch.py [--videos 12000] [--frames 81] [--dir DIR]

Writes the run (prompts, manifest, ~1.8M tracks rows with 10% animal / 5% object
misses) into DIR (default: a temporary directory), then reports, best of ``--repeat``:
loading + densifying the tracks, the single ``dsr_geom.dsr_batch`` call, and the whole
``score_run`` (load, score, summary, correctness.png, atomic writes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from spatialalign.core.presets import OFFICIAL
from spatialalign.prompts import DSRPrompt, write_prompts
from spatialalign.scoring.batch import load_run, score_loaded, score_run


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12_000)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.dir or Path(tmp) / "run"
        rows = make_run(run, args.videos, args.frames)
        load = score = full = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            loaded = load_run(run, progress=False)
            t1 = time.perf_counter()
            score_loaded(loaded, OFFICIAL)
            t2 = time.perf_counter()
            result = score_run(run, progress=False)
            t3 = time.perf_counter()
            load, score, full = min(load, t1 - t0), min(score, t2 - t1), min(full, t3 - t2)
        print(
            f"{args.videos} videos, {len(loaded.tracks.frames)} frames, {rows} tracks rows: "
            f"load+densify {load:.3f}s, dsr_batch+table {score:.3f}s, "
            f"score_run total {full:.3f}s (best of {args.repeat}); "
            f"{result.n_valid}/{result.n_videos} valid"
        )


if __name__ == "__main__":
    main()
