"""score-batch's load path against reading its input: 12,000 videos, ~1.8M tracks rows.

The run is ``scripts/bench_score_batch.py``'s (``make_run``). Compared in one run
(``make bench``; figures in docs/BENCHMARKS.md, "score-batch"):

* ``read_file``: ``pyarrow.parquet.read_table`` of ``tracks.parquet`` (the yardstick),
* ``read_tracks``: the tracks reader (Arrow read, ``dsr_geom.densify_tracks``),
* ``load_path``: read -> densify -> the ``dsr_geom.dsr_batch`` kernel,
* ``score_run``: the whole verb (manifest and prompts, scores, summary, figure, writes).

Nothing here asserts a timing; the last test prints the medians and their ratios to
``read_file`` and writes them to ``.benchmarks/score_batch.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import dsr_geom
import pyarrow.parquet as pq
import pytest
from spatialalign.rundir.tracks import read_tracks
from spatialalign.scoring.batch import score_run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_score_batch.py"
MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("bench_score_batch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("score_batch") / "run"
    module.make_run(out, 12_000, 81)
    return out


@pytest.fixture(scope="module")
def ids(run):
    return pq.read_table(run / "samples" / "manifest.parquet").column("sample_id")


def _record(name: str, benchmark) -> None:
    MEDIANS[name] = benchmark.stats.stats.median


def test_read_file(benchmark, run):
    benchmark.pedantic(pq.read_table, args=(run / "tracks.parquet",), rounds=15, warmup_rounds=2)
    _record("read_file", benchmark)


def test_read_tracks(benchmark, run, ids):
    tracks = benchmark.pedantic(
        read_tracks, args=(run / "tracks.parquet", ids), rounds=15, warmup_rounds=2
    )
    assert int(tracks.n_rows.sum()) > 1_700_000
    _record("read_tracks", benchmark)


def test_load_path(benchmark, run, ids):
    """tracks.parquet -> dense arrays -> scores (the relations: one per video)."""

    def load_and_score():
        t = read_tracks(run / "tracks.parquet", ids)
        return dsr_geom.dsr_batch(t.animal, t.obj, t.offsets, "L", "R")

    out = benchmark.pedantic(load_and_score, rounds=15, warmup_rounds=2)
    assert len(out["dsr"]) == 12_000
    _record("load_path", benchmark)


def test_score_run(benchmark, run):
    result = benchmark.pedantic(
        score_run, args=(run,), kwargs={"progress": False}, rounds=9, warmup_rounds=1
    )
    assert result.n_videos == 12_000
    _record("score_run", benchmark)


def test_report(capsys):
    """Prints and stores the medians and their ratios to reading the file."""
    m = MEDIANS
    if "read_file" not in m:
        pytest.skip("run the whole file to get the comparison")
    report = {
        "median_s": m,
        "ratio_to_read_file": {k: v / m["read_file"] for k, v in m.items()},
        "cpu_count": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    out = Path(".benchmarks")
    out.mkdir(exist_ok=True)
    (out / "score_batch.json").write_text(json.dumps(report, indent=2))
    lines = ["", "score-batch, 12,000 videos / ~1.8M tracks rows (medians):"]
    lines += [
        f"  {k:12s} {v * 1e3:8.1f} ms  {report['ratio_to_read_file'][k]:5.2f}x read_file"
        for k, v in m.items()
    ]
    with capsys.disabled():
        print("\n".join(lines))
