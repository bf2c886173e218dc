"""Benchmark: ``spatialalign track RUN --detector toy`` on 1 vs N worker processes.

Renders ``--videos`` toy-world clips (9 frames of 16x16, lossless RGB H.264, the toy
model's format; rendering is not timed) into one run directory, then, for each worker
count in turn and ``--repeats`` times, deletes the tracking results and runs the real
command in a subprocess. Each run reports wall time, the CPU time of the command and all
its worker processes (``getrusage`` of the children), how many cores that is
(CPU / wall) and the machine's load average; the summary gives the wall-time ratio of
1 worker to N (best of the repeats) and checks that every run wrote byte-identical
``tracks.parquet`` / ``detections.parquet``.

    .venv/bin/python scripts/bench_track.py --videos 4000 --workers 1 2 --repeats 3

On a shared machine the CPU figures are the robust ones: wall time includes the time other
jobs hold the cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("outputs/bench_track"))
    p.add_argument("--videos", type=int, default=1000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2, help="runs per worker count (best kept)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    return p.parse_args(argv)


def make_run(run: Path, n: int) -> None:
    """``n`` toy clips of generated prompts with a manifest (reused when already there)."""
    import pyarrow as pa
    from spatialalign.core.fileio import read_parquet, write_parquet
    from spatialalign.core.schemas import MANIFEST
    from spatialalign.core.video import write_video
    from spatialalign.prompts import write_prompts
    from spatialalign.prompts.generate import generate_dataset
    from spatialalign.toy.world import render_clip

    manifest = run / "samples" / "manifest.parquet"
    if manifest.is_file() and read_parquet(manifest).num_rows == n:
        return
    prompts = generate_dataset(0, 120, seed=0)
    write_prompts(prompts, run / "prompts.parquet")
    rows = []
    for i in range(n):
        p, seed = prompts[i % len(prompts)], i // len(prompts)
        sid = f"{p.prompt_id}_F9_seed{seed:03d}"
        path = run / "samples" / f"{sid}.mp4"
        write_video(path, render_clip(p, seed).frames, fps=8)
        rows.append(
            {"sample_id": sid, "prompt_id": p.prompt_id, "seed": seed, "model": "toy",
             "adapter": "", "path": str(path.absolute()), "num_frames": 9, "fps": 8.0,
             "height": 16, "width": 16}
        )  # fmt: skip
    write_parquet(pa.Table.from_pylist(rows, MANIFEST), manifest)


def _digest(run: Path) -> str:
    h = hashlib.sha256()
    for name in ("tracks.parquet", "detections.parquet"):
        h.update((run / name).read_bytes())
    return h.hexdigest()[:16]


def time_track(run: Path, workers: int) -> dict:
    """One ``spatialalign track`` from scratch: wall, CPU (command + workers), load."""
    shutil.rmtree(run / "track_parts", ignore_errors=True)
    for name in ("tracks.parquet", "detections.parquet"):
        (run / name).unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("spatialalign")
    cmd = [str(exe), "track", str(run), "--detector", "toy", "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "workers": workers,
        "wall_s": wall,
        "cpu_s": cpu,
        "cores_used": cpu / wall,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "outputs": _digest(run),
        "line": out.stdout.strip().splitlines()[-1],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    run = args.workdir / f"run{args.videos}"
    t0 = time.perf_counter()
    make_run(run, args.videos)
    print(f"run: {run} ({args.videos} clips, ready in {time.perf_counter() - t0:.1f} s)")
    runs = []
    for _ in range(args.repeats):  # interleaved, so a load change hits every count alike
        for n in args.workers:
            r = time_track(run, n)
            runs.append(r)
            print(
                f"  --workers {n}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU "
                f"({r['cores_used']:.2f} cores), load {r['load_before']:.1f}",
                flush=True,
            )
    best = {n: min((r for r in runs if r["workers"] == n), key=lambda r: r["wall_s"])
            for n in args.workers}  # fmt: skip
    base = best[args.workers[0]]
    result = {
        "videos": args.videos,
        "runs": runs,
        "best": {
            str(n): {
                "wall_s": r["wall_s"],
                "cpu_s": r["cpu_s"],
                "videos_per_s": args.videos / r["wall_s"],
                "speedup_vs_first": base["wall_s"] / r["wall_s"],
            }
            for n, r in best.items()
        },
        "identical_outputs": len({r["outputs"] for r in runs}) == 1,
        "usable_cores": len(os.sched_getaffinity(0)),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result["best"], indent=2))
    print(
        "bench-track: "
        + ", ".join(
            f"{n} worker(s) {r['wall_s']:.2f} s ({args.videos / r['wall_s']:.0f} videos/s, "
            f"{base['wall_s'] / r['wall_s']:.2f}x)"
            for n, r in best.items()
        )
        + f"; outputs identical: {result['identical_outputs']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
