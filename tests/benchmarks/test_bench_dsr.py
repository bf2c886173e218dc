"""DSR scoring engine benchmark: 1,000,000 frames (12,000 videos of ~83 frames).

Compares in one run (``make bench``; figures in docs/BENCHMARKS.md):

* ``dsr_geom.dsr_batch`` (Rust, rayon, GIL released),
* the fully vectorised numpy reference (``tests/reference_scorer.py``),
* the per-frame loop in the style of the official scorer
  (``tests/official_scorer.py``), timed on the first ``LOOP_VIDEOS`` videos and
  scaled per frame to 1,000,000 frames (its cost is linear in frames),
* the memcpy floor: copying both input arrays once into preallocated buffers, and
  a read floor: one integer max over the bytes of both arrays (no writes).

Nothing here asserts a timing; the last test prints the medians and ratios and
writes them to ``.benchmarks/dsr_engine.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dsr_geom
import numpy as np
import official_scorer as official
import pytest
import reference_scorer as reference

FRAMES = 1_000_000
VIDEOS = 12_000
LOOP_VIDEOS = int(os.environ.get("DSR_BENCH_LOOP_VIDEOS", "240"))
MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def data():
    """Realistic tracks in an 832x480 frame: a static object, an animal moving on a
    jittered line across it, ~5% animal and ~2% object rows missing (all-NaN)."""
    rng = np.random.default_rng(2026)
    offsets = (np.arange(VIDEOS + 1, dtype=np.int64) * FRAMES) // VIDEOS
    lengths = np.diff(offsets)
    vid = np.repeat(np.arange(VIDEOS), lengths)
    t = (np.arange(FRAMES) - offsets[vid]) / (lengths[vid] - 1)

    def per_video(lo, hi):
        return rng.uniform(lo, hi, VIDEOS)[vid]

    ox, oy, ow, oh = (
        per_video(250, 580),
        per_video(150, 330),
        per_video(60, 200),
        per_video(60, 200),
    )
    x0, y0, x1, y1 = per_video(50, 780), per_video(50, 430), per_video(50, 780), per_video(50, 430)
    aw, ah = per_video(30, 150), per_video(30, 150)
    cx = x0 + t * (x1 - x0) + rng.uniform(-3, 3, FRAMES)
    cy = y0 + t * (y1 - y0) + rng.uniform(-3, 3, FRAMES)
    animal = np.stack([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2], axis=1)
    obj = np.stack([ox - ow / 2, oy - oh / 2, ox + ow / 2, oy + oh / 2], axis=1)
    animal[rng.random(FRAMES) < 0.05] = np.nan
    obj[rng.random(FRAMES) < 0.02] = np.nan
    letters = np.array(list("LRT"))  # the official loop knows L/R/T only
    initial = letters[rng.integers(0, 3, VIDEOS)].tolist()
    final = letters[rng.integers(0, 3, VIDEOS)].tolist()
    return animal, obj, offsets, initial, final


def _record(name: str, benchmark, frames: int = FRAMES) -> None:
    """Median seconds per 1,000,000 frames."""
    MEDIANS[name] = benchmark.stats.stats.median * FRAMES / frames
    benchmark.extra_info["median_s_per_1M_frames"] = MEDIANS[name]


def test_memcpy_floor(benchmark, data):
    animal, obj = data[0], data[1]
    dst_a, dst_o = np.empty_like(animal), np.empty_like(obj)

    def copy() -> None:
        np.copyto(dst_a, animal)
        np.copyto(dst_o, obj)

    benchmark.pedantic(copy, rounds=100, warmup_rounds=2)
    _record("memcpy_floor", benchmark)


def test_read_floor(benchmark, data):
    """Reading both arrays once (an integer max over their bytes; SIMD, no writes)."""
    views = [data[0].view(np.uint64), data[1].view(np.uint64)]
    benchmark.pedantic(lambda: [v.max() for v in views], rounds=100, warmup_rounds=2)
    _record("read_floor", benchmark)


def test_dsr_geom(benchmark, data):
    out = benchmark.pedantic(dsr_geom.dsr_batch, args=data, rounds=100, warmup_rounds=2)
    assert np.isfinite(out["dsr"]).mean() > 0.9
    _record("dsr_geom", benchmark)


def test_dsr_geom_float32(benchmark, data):
    a32, o32 = data[0].astype(np.float32), data[1].astype(np.float32)
    args = (a32, o32, *data[2:])
    benchmark.pedantic(dsr_geom.dsr_batch, args=args, rounds=100, warmup_rounds=2)
    _record("dsr_geom_float32", benchmark)


def test_numpy_reference(benchmark, data):
    out = benchmark.pedantic(reference.dsr_batch, args=data, rounds=5, warmup_rounds=1)
    want = dsr_geom.dsr_batch(*data)
    np.testing.assert_allclose(out["dsr"], want["dsr"], rtol=0, atol=1e-9)
    _record("numpy_reference", benchmark)


def test_official_loop(benchmark, data):
    animal, obj, offsets, initial, final = data
    n = LOOP_VIDEOS
    # the official scorer reads per-frame detections; converting is not timed
    videos = [
        official.frames_from_arrays(
            animal[offsets[v] : offsets[v + 1]], obj[offsets[v] : offsets[v + 1]], "dog", "car"
        )
        for v in range(n)
    ]
    types = [initial[v] + final[v] for v in range(n)]

    def run() -> list[float]:
        return [
            official.official_video_reward(f, "dog", "car", t)
            for f, t in zip(videos, types, strict=True)
        ]

    rewards = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    t = offsets[n]
    want = dsr_geom.dsr_batch(animal[:t], obj[:t], offsets[: n + 1], initial[:n], final[:n])["dsr"]
    got = np.where(np.array(rewards) == official.INVALID_REWARD, np.nan, rewards)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    _record("official_loop", benchmark, frames=int(offsets[n]))


def test_report(capsys):
    """Prints and stores medians (s per 1M frames) and the ratios of the targets."""
    m = MEDIANS
    if "dsr_geom" not in m:
        pytest.skip("run the whole file to get the comparison")
    report = {
        "medians_s_per_1M_frames": m,
        "numpy_reference_over_dsr_geom": m.get("numpy_reference", np.nan) / m["dsr_geom"],
        "official_loop_over_dsr_geom": m.get("official_loop", np.nan) / m["dsr_geom"],
        "dsr_geom_over_memcpy_floor": m["dsr_geom"] / m.get("memcpy_floor", np.nan),
        "dsr_geom_over_read_floor": m["dsr_geom"] / m.get("read_floor", np.nan),
        "official_loop_videos": LOOP_VIDEOS,
        "cpu_count": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    out = Path(".benchmarks")
    out.mkdir(exist_ok=True)
    (out / "dsr_engine.json").write_text(json.dumps(report, indent=2))
    lines = ["", "DSR scoring engine (median per 1,000,000 frames):"]
    lines += [f"  {k:18s} {v * 1e3:12.2f} ms" for k, v in m.items()]
    lines += [
        f"  numpy reference / dsr_geom : {report['numpy_reference_over_dsr_geom']:.1f}x",
        f"  official loop / dsr_geom   : {report['official_loop_over_dsr_geom']:.0f}x",
        f"  dsr_geom / memcpy floor    : {report['dsr_geom_over_memcpy_floor']:.2f}x",
        f"  dsr_geom / read floor      : {report['dsr_geom_over_read_floor']:.2f}x",
    ]
    with capsys.disabled():
        print("\n".join(lines))
