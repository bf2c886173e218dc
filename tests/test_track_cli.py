"""``spatialalign track`` end to end on toy videos: tables, validity, DSR vs ground truth,
corrupt videos, resuming, sharding over two processes, the CLI and the detector registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dsr_geom
import numpy as np
import pyarrow as pa
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.presets import scoring_config
from spatialalign.core.schemas import DETECTIONS, MANIFEST, TRACKS
from spatialalign.core.video import write_video
from spatialalign.detection.pipeline import track_run
from spatialalign.detection.registry import make_detector
from spatialalign.detection.tracker import tracker_config
from spatialalign.prompts import read_prompts, write_prompts
from spatialalign.rundir.layout import RunDir
from spatialalign.toy.world import render_clip

TOY = scoring_config("toy")
N_PROMPTS = 16


def _row(sid: str, prompt_id: str, seed: int, path: Path) -> dict:
    return {
        "sample_id": sid,
        "prompt_id": prompt_id,
        "seed": seed,
        "model": "toy",
        "adapter": "",
        "path": str(path),
        "num_frames": 9,
        "fps": 8.0,
        "height": 16,
        "width": 16,
    }


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A run dir: toy clips of real prompts, one noise video, one corrupt mp4, one missing."""
    run = tmp_path_factory.mktemp("toyrun")
    prompts = read_prompts(OFFICIAL_CSV)[:: 120 // N_PROMPTS][:N_PROMPTS]
    write_prompts(prompts, run / "prompts.parquet")
    rows, truth = [], {}
    for i, p in enumerate(prompts):
        seed = 100 + i
        clip = render_clip(p, seed)
        sid = f"{p.prompt_id}_seed{seed}"
        path = run / "samples" / f"{sid}.mp4"
        write_video(path, clip.frames, fps=8)
        rows.append(_row(sid, p.prompt_id, seed, path))
        truth[sid] = (clip, p)
    p0 = prompts[0]
    # a video of noise: the colour detector finds no scene -> too few valid frames
    noise = np.random.default_rng(0).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    write_video(run / "samples" / "noise.mp4", noise, fps=8)
    rows.append(_row("noise", p0.prompt_id, 1, run / "samples" / "noise.mp4"))
    corrupt = run / "samples" / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    rows.append(_row("corrupt", p0.prompt_id, 2, corrupt))
    rows.append(_row("missing", p0.prompt_id, 3, run / "samples" / "gone.mp4"))
    write_parquet(pa.Table.from_pylist(rows, MANIFEST), run / "samples" / "manifest.parquet")
    return run, truth, [r["sample_id"] for r in rows]


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _boxes(tracks: list[dict], sid: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    out = {"animal": np.full((n, 4), np.nan), "object": np.full((n, 4), np.nan)}
    for r in tracks:
        if r["sample_id"] == sid:
            out[r["label"]][r["frame"]] = [r["x0"], r["y0"], r["x1"], r["y1"]]
    return out["animal"], out["object"]


def _check_tables(run: Path, truth: dict, order: list[str]) -> None:
    dets = read_parquet(run / "detections.parquet")
    tracks = read_parquet(run / "tracks.parquet")
    assert dets.schema.equals(DETECTIONS) and tracks.schema.equals(TRACKS)
    det = {r["sample_id"]: r for r in dets.to_pylist()}
    assert list(det) == order  # every manifest sample, in manifest order
    for sid in ("corrupt", "missing"):
        assert (det[sid]["status"], det[sid]["reason"]) == ("rejected", "unreadable_video")
    assert (det["noise"]["status"], det["noise"]["reason"]) == ("rejected", "too_few_frames")
    assert det["noise"]["n_miss"] == 9

    rows = tracks.to_pylist()
    with_tracks = {r["sample_id"] for r in rows}
    valid = {s for s, r in det.items() if r["status"] == "valid"}
    assert with_tracks == valid  # rejected videos have no rows
    assert len(valid) >= 0.9 * len(truth)
    close = 0
    for sid in valid:
        clip, p = truth[sid]
        assert det[sid]["reason"] == ""
        assert det[sid]["n_valid"] + det[sid]["n_miss"] + det[sid]["n_redundant"] == 9
        want = dsr_geom.dsr_score(
            clip.animal_boxes,
            clip.object_boxes,
            p.initial,
            p.final,
            m=TOY.m,
            min_frames=TOY.min_frames,
        )
        animal, obj = _boxes(rows, sid, len(clip.frames))
        got = dsr_geom.dsr_score(
            animal, obj, p.initial, p.final, m=TOY.m, min_frames=TOY.min_frames
        )
        close += got is not None and want is not None and abs(got - want) <= 0.05
    assert close >= 0.9 * len(valid)


def test_track_run_end_to_end_and_resume(toy_run, tmp_path):
    src, truth, order = toy_run
    run = _copy(src, tmp_path)
    det = make_detector("toy")
    summary = track_run(run, det, TOY, tracker_config("toy"), progress=False)
    assert summary.merged and summary.n_tracked == len(order) and summary.n_done_before == 0
    assert summary.counts["unreadable_video"] == 2 and summary.counts["too_few_frames"] == 1
    assert "valid" in summary.line() and str(run / "tracks.parquet") in summary.line()
    _check_tables(run, truth, order)
    first = read_parquet(run / "tracks.parquet")

    # a rerun skips every finished sample and rewrites identical tables
    again = track_run(run, det, TOY, tracker_config("toy"), progress=False)
    assert again.n_tracked == 0 and again.n_done_before == len(order) and again.merged
    assert read_parquet(run / "tracks.parquet").equals(first)
    # losing one sample's part redoes only that sample
    parts = next(RunDir(run).track_parts_dir.iterdir())
    (parts / f"{order[3]}.det.parquet").unlink()
    assert track_run(run, det, TOY, tracker_config("toy"), progress=False).n_tracked == 1
    assert read_parquet(run / "tracks.parquet").equals(first)
    # other thresholds are other settings: nothing is reused
    strict = scoring_config("toy", min_valid=10)  # more than the 9 frames of a toy clip
    redo = track_run(run, det, strict, tracker_config("toy"), progress=False)
    assert redo.n_tracked == len(order)
    assert redo.counts["too_few_frames"] == len(order) - 2
    assert read_parquet(run / "tracks.parquet").num_rows == 0
    # --overwrite redoes everything with the same settings
    assert track_run(
        run, det, strict, tracker_config("toy"), overwrite=True, progress=False
    ).n_tracked == len(order)


def test_track_cli_and_errors(toy_run, tmp_path, capsys):
    src, truth, order = toy_run
    run = _copy(src, tmp_path)
    main(["track", str(run), "--detector", "toy"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("track: ")
    assert "unreadable_video 2" in out[0] and "too_few_frames 1" in out[0]
    _check_tables(run, truth, order)

    def fails(*args: str) -> str:
        with pytest.raises(SystemExit) as e:
            main(list(args))
        assert e.value.code != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    assert "run directory not found" in fails("track", str(tmp_path / "nope"))
    assert "--model-dir is required" in fails("track", str(run), "--detector", "gdino-torch")
    assert "not found" in fails(
        "track", str(run), "--detector", "gdino-onnx", "--onnx-dir", str(tmp_path / "no_onnx")
    )
    assert "takes no --sam" in fails("track", str(run), "--sam", str(tmp_path))
    (run / "prompts.parquet").unlink()
    assert "prompts file not found" in fails("track", str(run))
    write_prompts(read_prompts(OFFICIAL_CSV)[1:2], run / "prompts.parquet")
    assert "not in" in fails("track", str(run))


def test_registry_errors(tmp_path):
    assert make_detector("toy").name == "toy"
    with pytest.raises(SpatialAlignError, match="unknown detector"):
        make_detector("yolo")
    with pytest.raises(SpatialAlignError, match="not found"):
        make_detector("gdino-torch", model_dir=tmp_path / "absent")
    with pytest.raises(SpatialAlignError, match="thresholds"):
        make_detector("gdino-torch", model_dir=tmp_path, box_threshold=1.5)


@pytest.mark.slow
def test_two_ranks_shard_and_rank0_merges(toy_run, tmp_path):
    src, truth, order = toy_run
    run = _copy(src, tmp_path)
    procs = []
    for rank in (1, 0):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "spatialalign.cli",
                    "track",
                    str(run),
                    "--detector",
                    "toy",
                    "--merge-timeout",
                    "120",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    line1, line0 = (o[0].strip() for o in outs)
    half = len(order) // 2
    assert (
        line1.startswith(f"track: rank 1/2: {half} video(s) tracked") and "rank 0 merges" in line1
    )
    assert line0.startswith(f"track: rank 0/2: {len(order) - half} video(s) tracked")
    assert str(run / "tracks.parquet") in line0
    _check_tables(run, truth, order)
    # the merged tables equal a single-process run's
    single = _copy(src, tmp_path / "single")
    track_run(single, make_detector("toy"), TOY, tracker_config("toy"), progress=False)
    for name in ("tracks.parquet", "detections.parquet"):
        assert read_parquet(run / name).equals(read_parquet(single / name))


# --- the steps of track_run, one at a time ------------------------------------------------


def _track_setup(run: Path):
    from spatialalign.detection import pipeline

    det = make_detector("toy")
    rd = RunDir(run)
    samples = pipeline._read_samples(rd, None)
    key, described = pipeline.settings_key(det, TOY, tracker_config("toy"), {})
    pipeline.prepare_parts_dir(rd, key, described, overwrite=False)
    return det, rd, samples, key, described


def test_plan_tracking_on_a_half_finished_run(toy_run, tmp_path):
    """Half the samples tracked: the plan redoes only the rest (``new``) and a sample whose
    video changed; merging waits for every part and gives up without them."""
    from spatialalign.detection import pipeline

    src, _, order = toy_run
    det, rd, samples, key, described = _track_setup(_copy(src, tmp_path))
    done, rest = samples[:5], samples[5:]
    summary = pipeline.TrackSummary(rd.root, len(samples))
    pipeline.track_samples(rd, key, done, det, TOY, tracker_config("toy"), summary, progress=False)
    assert summary.n_tracked == 5 and sum(summary.counts.values()) == 5

    todo, why = pipeline.plan_tracking(rd, key, samples, earlier=None)
    assert [s.sample_id for s in todo] == [s.sample_id for s in rest]
    assert why == {"new": len(rest)}
    shutil.copy(samples[1].path, samples[0].path)  # new content under a finished name
    todo, why = pipeline.plan_tracking(rd, key, samples, earlier=None)
    assert todo[0].sample_id == order[0] and why == {"new": len(rest), "video changed": 1}

    record = {"preset": "toy", "settings": described}
    pipeline.merge_when_complete(rd, key, samples, record, summary, timeout=0.0)
    assert not summary.merged and summary.waiting_for == len(rest) + 1
    assert not rd.tracks_path.exists()
    pipeline.track_samples(rd, key, todo, det, TOY, tracker_config("toy"), summary, progress=False)
    pipeline.merge_when_complete(rd, key, samples, record, summary, timeout=0.0)
    assert summary.merged and summary.waiting_for == 0
    assert sum(summary.run_counts.values()) == len(order)


def test_resolve_shard(tmp_path, monkeypatch):
    from spatialalign.detection.pipeline import resolve_shard

    rd = RunDir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_shard(rd, None, None, overwrite=False) == (1, 3)
    assert resolve_shard(rd, 0, 1, overwrite=True) == (0, 1)
    with pytest.raises(SpatialAlignError, match="invalid rank 3 / world size 3"):
        resolve_shard(rd, 3, None, overwrite=False)
    with pytest.raises(SpatialAlignError, match="--overwrite works in a single process"):
        resolve_shard(rd, None, None, overwrite=True)


def test_background_decoding_is_bounded_and_in_order(toy_run, monkeypatch):
    import threading
    import time

    from spatialalign.detection import pipeline

    src, _, order = toy_run
    samples = pipeline._read_samples(RunDir(src), None)
    reads: list[tuple[str, str]] = []
    real_read = pipeline.read_video

    def counting_read(path):
        reads.append((Path(path).name, threading.current_thread().name))
        return real_read(path)

    monkeypatch.setattr(pipeline, "read_video", counting_read)
    stop = threading.Event()
    gen = pipeline._decoded(samples, 2, stop)
    first = next(gen)
    time.sleep(0.5)  # a slow detector: the decoder runs ahead, but only a bounded amount
    assert 2 <= len(reads) <= 2 + 2
    assert {name for _, name in reads} == {"track-decode"}
    got = [first] + list(gen)
    assert [s.sample_id for s, *_ in got] == order
    errors = {s.sample_id: e for s, _, e, _ in got if e is not None}
    assert set(errors) == {"corrupt", "missing"}
    assert all(f.shape == (9, 16, 16, 3) for s, f, e, _ in got if e is None)
    # closing early stops the decoder thread
    stop2 = threading.Event()
    gen2 = pipeline._decoded(samples, 1, stop2)
    next(gen2)
    gen2.close()
    assert stop2.is_set()
    assert not any(t.name == "track-decode" and t.is_alive() for t in threading.enumerate())


def test_empty_manifest_gives_empty_tables(toy_run, tmp_path):
    src, _, _ = toy_run
    run = tmp_path / "empty"
    (run / "samples").mkdir(parents=True)
    shutil.copy(src / "prompts.parquet", run / "prompts.parquet")
    write_parquet(MANIFEST.empty_table(), run / "samples" / "manifest.parquet")
    summary = track_run(run, make_detector("toy"), TOY, progress=False)
    assert summary.merged and summary.n_tracked == 0
    assert read_parquet(run / "tracks.parquet").schema.equals(TRACKS)
    assert read_parquet(run / "detections.parquet").num_rows == 0


def test_a_referenced_video_with_new_content_is_retracked(tmp_path, capsys):
    """Issue 18 (F): a referenced video rewritten with the same size and modification time
    (ingest sees the new content, track's stat shortcut did not) used to stay "already
    done" forever; track now redoes a video whose fingerprint in the manifest differs from
    the one its tracks were made from, and only once."""
    prompts = read_prompts(OFFICIAL_CSV)[:2]
    videos = tmp_path / "videos"
    for p in prompts:
        write_video(videos / f"{p.prompt_id}_F81_seed00.mp4", render_clip(p, 0).frames, fps=8)
    run = tmp_path / "run"
    ingest = ["ingest", str(videos), "--prompts", str(OFFICIAL_CSV), "--run-dir", str(run)]
    track = ["track", str(run), "--detector", "toy", "--workers", "1"]
    main(ingest)
    main(track)
    capsys.readouterr()

    # the same size and mtime, other bytes
    path = videos / f"{prompts[0].prompt_id}_F81_seed00.mp4"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size

    main(ingest)
    assert "1 with new content" in capsys.readouterr().out
    main(track)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 video(s) tracked (1 redone: video changed), 1 already done" in line
    main(track)  # and not again
    assert "0 video(s) tracked, 2 already done" in capsys.readouterr().out
    main(["score-batch", str(run), "-q"])
    assert "other video content" not in capsys.readouterr().err

    # a manifest older than the video (changed after ingest, not ingested again): the
    # stat change redoes it once, then the rehash agrees with the tracks: no redo loop
    clip = render_clip(prompts[0], 5).frames
    write_video(path, clip, fps=8)
    main(track)
    assert "1 video(s) tracked (1 redone: video changed)" in capsys.readouterr().out
    main(track)
    assert "0 video(s) tracked, 2 already done" in capsys.readouterr().out


def test_merge_from_memory_writes_the_files_a_merge_from_parts_writes(toy_run, tmp_path):
    """Issue 21: the merge takes this call's results from memory, not from their parts; the
    final files are byte for byte those of a merge that reads every part back."""
    src, truth, order = toy_run
    run = _copy(src, tmp_path)
    det = make_detector("toy")
    summary = track_run(run, det, TOY, tracker_config("toy"), progress=False)
    assert summary.merged and summary.n_tracked == len(order) and not summary.fresh
    names = ("tracks.parquet", "detections.parquet")
    from_memory = {n: (run / n).read_bytes() for n in names}
    for n in names:
        (run / n).unlink()
    again = track_run(run, det, TOY, tracker_config("toy"), progress=False)
    assert again.merged and again.n_tracked == 0  # every result read back from its part
    assert {n: (run / n).read_bytes() for n in names} == from_memory
    _check_tables(run, truth, order)


def test_track_on_two_workers_equals_one_process(toy_run, tmp_path):
    """``--workers 2``: the ranks hand their results back, the caller merges once; the
    files are byte for byte those of one process, and a rerun does nothing."""
    from spatialalign.detection.sharded import track_on_workers
    from spatialalign.detection.spec import TrackSpec
    from spatialalign.parallel.workers import Workers

    src, truth, order = toy_run
    spec = TrackSpec()  # the toy detector, its preset
    assert spec.detection.detector == "toy"
    one, two = _copy(src, tmp_path / "one"), _copy(src, tmp_path / "two")
    with Workers(1) as pool:
        track_on_workers(one, spec, pool, progress=False)
    with Workers(2, ("spatialalign.detection.sharded",)) as pool:
        summary = track_on_workers(two, spec, pool, progress=False)
        assert summary.merged and summary.n_tracked == len(order) and not summary.fresh
        assert sum(summary.counts.values()) == len(order) == sum(summary.run_counts.values())
        rerun = track_on_workers(two, spec, pool, progress=False)
    assert rerun.n_tracked == 0 and rerun.n_done_before == len(order) and rerun.merged
    for name in ("tracks.parquet", "detections.parquet"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    _check_tables(two, truth, order)
