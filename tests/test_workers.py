"""Worker processes without a launcher: rank order, errors, the default count, and an
``eval`` split over two processes that writes exactly what one process writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.video import read_video
from spatialalign.evaluation.eval_run import EvalRunConfig, eval_run
from spatialalign.parallel.workers import (
    VIDEOS_PER_WORKER,
    Workers,
    default_workers,
    resolve_workers,
)
from spatialalign.rundir.layout import RunDir
from tolerance import assert_same_verdicts, assert_videos_close


def _whoami(rank: int, world: int, tag: str) -> tuple[int, int, str, int]:
    return rank, world, tag, os.getpid()


def _fail_on(rank: int, world: int, bad: int, marker: str) -> int:
    if rank == bad:
        raise ValueError(f"rank {rank} failed")
    # every other rank still finishes its work (leaves its mark on disk)
    open(f"{marker}.{rank}", "w").close()
    return rank


def _die(rank: int, world: int) -> int:
    if rank == 1:
        os._exit(3)  # killed without a word, as by the OOM killer
    return rank


def test_ranks_run_in_order_rank_0_here_and_the_pool_persists():
    with Workers(3) as workers:
        first = workers.run(_whoami, "a")
        second = workers.run(_whoami, "b")
    assert [r[:3] for r in first] == [(0, 3, "a"), (1, 3, "a"), (2, 3, "a")]
    assert first[0][3] == os.getpid()
    assert {r[3] for r in first[1:]}.isdisjoint({os.getpid()})
    assert [r[:3] for r in second] == [(0, 3, "b"), (1, 3, "b"), (2, 3, "b")]
    # four pool tasks, at most two processes: the pool lives across calls (a loop imports
    # torch once per worker, not once per stage)
    assert len({r[3] for r in first[1:] + second[1:]}) <= 2


def test_one_worker_runs_here_without_a_pool():
    with Workers(1) as workers:
        assert workers.run(_whoami, "x") == [(0, 1, "x", os.getpid())]
        assert workers._pool is None


@pytest.mark.parametrize("bad", [0, 1])
def test_an_error_is_raised_after_every_other_rank_finished(tmp_path, bad):
    marker = str(tmp_path / "done")
    with Workers(2) as workers, pytest.raises(ValueError, match=f"rank {bad} failed"):
        workers.run(_fail_on, bad, marker)
    other = 1 - bad
    assert os.path.exists(f"{marker}.{other}")


def test_a_killed_worker_is_one_clear_error_and_the_next_run_starts_afresh():
    with Workers(2) as workers:
        with pytest.raises(SpatialAlignError, match="rank 1 died"):
            workers.run(_die)
        assert [r[:2] for r in workers.run(_whoami, "again")] == [(0, 2), (1, 2)]


def test_default_count(monkeypatch):
    monkeypatch.setattr("spatialalign.parallel.workers.usable_cores", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert default_workers(True, "cpu") == 4
    assert default_workers(True, "cpu", videos=4000) == 4
    assert default_workers(True, "cpu", videos=2 * VIDEOS_PER_WORKER) == 2
    assert default_workers(True, "cpu", videos=12) == 1  # not worth a process start
    assert default_workers(True, "cuda:0", videos=4000) == 1
    assert default_workers(False, "cpu", videos=4000) == 1
    assert resolve_workers(3, False, "cuda") == 3
    with pytest.raises(SpatialAlignError, match="--workers must be >= 1"):
        resolve_workers(0, True, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert default_workers(True, "cpu", videos=4000) == 1  # already a launcher's rank
    with pytest.raises(TypeError, match="is_toy"):  # a model name: the caller says is_toy(model)
        default_workers("toy", "cpu")


def _videos(run: RunDir) -> dict[str, np.ndarray]:
    return {p.stem: read_video(p) for p in sorted(run.samples_dir.glob("*.mp4"))}


def _rows(path) -> list[dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    keys = [k for k in ("sample_id", "frame_idx", "frame") if k in table.column_names]
    return table.sort_by([(k, "ascending") for k in keys]).to_pylist()


@pytest.mark.slow
def test_eval_on_two_workers_writes_what_one_process_writes(tmp_path, one_torch_thread):
    one, two = RunDir(tmp_path / "one"), RunDir(tmp_path / "two")
    for run, n in ((one, 1), (two, 2)):
        cfg = EvalRunConfig(prompts="toy-test:4", seeds=3, workers=n, progress=False)
        lines: list[str] = []
        eval_run(run.root, cfg, echo=lines.append)
        assert any("generated 12 video(s)" in line for line in lines), lines
        assert any(line.startswith("track: 12 video(s) tracked") for line in lines), lines
    # two processes sample other batch compositions than one (tests/README.md): every
    # video within a level, and the user's result the same -- verdicts, reasons, DSR
    videos_one, videos_two = _videos(one), _videos(two)
    assert videos_two.keys() == videos_one.keys() and len(videos_two) == 12
    for sid, video in videos_two.items():
        assert_videos_close(video, videos_one[sid], what=sid)
    assert_same_verdicts(_rows(two.scores_path), _rows(one.scores_path))
    # a video that came out bit-identical (most, on most machines) is tracked identically
    same = {sid for sid, v in videos_two.items() if np.array_equal(v, videos_one[sid])}
    tracks_one, tracks_two = _rows(one.tracks_path), _rows(two.tracks_path)
    assert len(tracks_one) > 0
    for sid in same:
        a = [r for r in tracks_two if r["sample_id"] == sid]
        b = [r for r in tracks_one if r["sample_id"] == sid]
        assert str(a) == str(b), sid  # NaN-tolerant equality of every row
    # a rerun on two workers finds everything done
    lines = []
    eval_run(
        two.root,
        EvalRunConfig(prompts="toy-test:4", seeds=3, workers=2, progress=False),
        echo=lines.append,
    )
    assert any("generated 0 video(s)" in line for line in lines), lines
    assert any(line.startswith("track: 0 video(s) tracked") for line in lines), lines


def test_an_explicit_count_is_capped_at_the_cores_and_the_work_items(monkeypatch, capsys):
    """Issue 18 (D): ``--workers 1000`` started 1000 processes, ``--workers 12`` on 6 videos
    took 49 s instead of 0.6 s; the count is capped at the usable cores and the videos,
    in one printed line."""
    monkeypatch.setattr("spatialalign.parallel.workers.usable_cores", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_workers(12, True, "cpu", videos=6) == 2
    assert capsys.readouterr().err.strip() == "--workers 12 capped to 2 (2 cores, 6 videos)"
    assert resolve_workers(1000, True, "cpu") == 2
    assert capsys.readouterr().err.strip() == "--workers 1000 capped to 2 (2 cores)"
    assert resolve_workers(3, True, "cpu", videos=1) == 1
    assert capsys.readouterr().err.strip() == "--workers 3 capped to 1 (2 cores, 1 video)"
    assert resolve_workers(2, True, "cpu", videos=6) == 2  # within both: no line
    assert capsys.readouterr().err == ""


def test_track_with_too_many_workers_runs_in_one_process(tmp_path, monkeypatch, capsys):
    from shared_data import OFFICIAL_CSV
    from spatialalign.cli import main
    from spatialalign.core.video import write_video
    from spatialalign.prompts import read_prompts
    from spatialalign.toy.world import render_clip

    videos = tmp_path / "videos"
    for p in read_prompts(OFFICIAL_CSV)[:2]:
        write_video(videos / f"{p.prompt_id}_F81_seed00.mp4", render_clip(p, 0).frames, fps=8)
    run = tmp_path / "run"
    main(["ingest", str(videos), "--prompts", str(OFFICIAL_CSV), "--run-dir", str(run)])
    capsys.readouterr()

    def no_pool(*args, **kwargs):
        raise AssertionError("no worker process is needed for 2 videos on 1 core")

    monkeypatch.setattr("spatialalign.parallel.workers.usable_cores", lambda: 1)
    monkeypatch.setattr("spatialalign.parallel.workers.Workers._executor", no_pool)
    main(["track", str(run), "--workers", "12"])
    captured = capsys.readouterr()
    assert "--workers 12 capped to 1 (1 core, 2 videos)" in captured.err.splitlines()
    assert captured.out.startswith("track: 2 video(s) tracked")
