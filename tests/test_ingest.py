"""``spatialalign ingest``: videos from another model enter a run directory's manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.video import write_video
from spatialalign.prompts import DSRPrompt, read_prompts
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.ingest import (
    IngestResult,
    ingest_rows,
    ingest_videos,
    match_prompt_videos,
    match_videos,
    video_row,
)
from spatialalign.sampling.manifest import MANIFEST_COLUMNS


@pytest.fixture(scope="module")
def prompts() -> list[DSRPrompt]:
    return read_prompts(OFFICIAL_CSV)


def _clip(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


@pytest.fixture
def videos(tmp_path, prompts) -> Path:
    """Official names for two prompts x seeds 0-1, one free-form name, one unknown id."""
    d = tmp_path / "external"
    a, b = prompts[0].prompt_id, prompts[1].prompt_id
    for i, name in enumerate(
        [f"{a}_F81_seed00", f"{a}_F81_seed01", f"{b}_F81_seed00", f"{b}_F81_seed01"]
    ):
        write_video(d / f"{name}.mp4", _clip(7, 16, 24, i), fps=12, lossless=False)
    write_video(d / f"{a}_take2.mp4", _clip(5, 32, 16, 9), fps=8)
    return d


def test_ingest_official_and_fallback_names(videos, prompts, tmp_path, capsys):
    run = tmp_path / "run"
    a, b = prompts[0].prompt_id, prompts[1].prompt_id
    result = ingest_videos(videos, prompts, run, progress=False)
    assert (result.videos, result.prompts, result.unreadable) == (5, 2, [])

    table = RunDir(run).read_manifest()
    assert table.column_names == list(MANIFEST_COLUMNS)
    rows = {r["sample_id"]: r for r in table.to_pylist()}
    assert rows[f"{a}_F81_seed01"]["prompt_id"] == a and rows[f"{a}_F81_seed01"]["seed"] == 1
    assert rows[f"{b}_F81_seed00"]["seed"] == 0
    # the free-form name belongs to prompt a and gets the first seed a's official names left
    assert (rows[f"{a}_take2"]["prompt_id"], rows[f"{a}_take2"]["seed"]) == (a, 2)
    for r in rows.values():
        assert r["model"] == "external" and r["adapter"] == ""
        assert Path(r["path"]).parent == videos.resolve()  # referenced, not copied
    # probed sizes are the written ones
    assert (rows[f"{b}_F81_seed01"]["num_frames"], rows[f"{b}_F81_seed01"]["fps"]) == (7, 12.0)
    assert (rows[f"{b}_F81_seed01"]["height"], rows[f"{b}_F81_seed01"]["width"]) == (16, 24)
    assert (rows[f"{a}_take2"]["num_frames"], rows[f"{a}_take2"]["height"]) == (5, 32)
    # later stages find the prompts of the run
    assert {p.prompt_id for p in read_prompts(run / "prompts.parquet")} == {
        p.prompt_id for p in prompts
    }
    # idempotent
    again = ingest_videos(videos, prompts, run, progress=False)
    assert again.videos == 5 and RunDir(run).read_manifest().num_rows == 5


def test_unknown_ids_are_an_error_unless_ignored(videos, prompts, tmp_path):
    write_video(videos / "9999_XX_F81_seed00.mp4", _clip(3, 16, 16, 0))
    write_video(videos / "notes.mp4", _clip(3, 16, 16, 1))
    with pytest.raises(SpatialAlignError, match=r"2 video\(s\) .* match no prompt id: .*9999_XX"):
        ingest_videos(videos, prompts, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "samples" / "manifest.parquet").exists()
    result = ingest_videos(videos, prompts, tmp_path / "run", ignore_unknown=True, progress=False)
    assert result.videos == 5 and sorted(result.unknown) == ["9999_XX_F81_seed00.mp4", "notes.mp4"]
    assert "2 with no matching prompt left out" in result.summary()


def test_unreadable_videos_are_kept_with_null_sizes(videos, prompts, tmp_path):
    bad = f"{prompts[2].prompt_id}_F81_seed00.mp4"
    (videos / bad).write_bytes(b"\x00" * 100)
    result = ingest_videos(videos, prompts, tmp_path / "run", progress=False)
    assert result.unreadable == [bad] and result.videos == 6
    row = next(
        r for r in RunDir(tmp_path / "run").read_manifest().to_pylist() if r["path"].endswith(bad)
    )
    assert row["num_frames"] is None and row["height"] is None and row["seed"] == 0


def test_prefix_matching_needs_a_separator():
    files = [Path("10_x.mp4"), Path("1043_TL_extra.mp4"), Path("1043_TLX.mp4"), Path("1.mp4")]
    matched, unknown = match_videos(files, ["1", "1043_TL"])
    assert {m.sample_id: m.prompt_id for m in matched} == {"1043_TL_extra": "1043_TL", "1": "1"}
    assert sorted(unknown) == ["1043_TLX.mp4", "10_x.mp4"]


def test_copy_and_default_run_dir(videos, prompts, tmp_path):
    run = tmp_path / "copied"
    ingest_videos(videos, prompts, run, copy=True, progress=False)
    for r in RunDir(run).read_manifest().to_pylist():
        path = Path(r["path"])
        assert path.parent == (run / "samples").resolve()
        assert path.read_bytes() == (videos / path.name).read_bytes()
    ingest_videos(videos, prompts, progress=False)
    assert RunDir(videos).read_manifest().num_rows == 5  # VIDEOS_DIR/samples/manifest.parquet


def test_existing_prompts_file_must_know_the_ids(videos, prompts, tmp_path):
    run = tmp_path / "run"
    from spatialalign.prompts import write_prompts

    write_prompts(prompts[5:], run / "prompts.parquet")
    with pytest.raises(SpatialAlignError, match="lacks 2 prompt id"):
        ingest_videos(videos, prompts, run, progress=False)


def test_cli_ingest(videos, tmp_path, capsys):
    run = tmp_path / "run"
    main(["ingest", str(videos), "--prompts", str(OFFICIAL_CSV), "--run-dir", str(run)])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("ingest: 5 video(s) of 2 prompt(s)")
    assert RunDir(run).read_manifest().num_rows == 5
    with pytest.raises(SystemExit) as exc:
        main(["ingest", str(tmp_path / "nothing"), "--prompts", str(OFFICIAL_CSV)])
    assert exc.value.code == 1
    assert "videos directory not found" in capsys.readouterr().err


# --- the steps of ingest_videos, one at a time ---------------------------------------------


def test_ingest_rows_count_copies_and_changed_content(videos, prompts, tmp_path):
    """A rerun over a half-ingested run: rows for every match, copies only of files the run
    lacks, and a sample whose content changed since its manifest row."""
    run = RunDir(tmp_path / "run")
    matched, unknown = match_prompt_videos(videos.resolve(), prompts, ignore_unknown=False)
    assert len(matched) == 5 and unknown == []
    ingest_videos(videos, prompts, run.root, copy=True, progress=False)
    run.video_path(matched[0].sample_id).unlink()  # lost from the run dir
    write_video(matched[1].path, _clip(7, 16, 24, 99), fps=12)  # new content at the source
    result = IngestResult(videos=5, prompts=2)
    rows = ingest_rows(run, matched, result, copy=True, model="m", progress=False)
    assert [r["sample_id"] for r in rows] == [m.sample_id for m in matched]
    assert (result.copied, result.changed, result.unreadable) == (2, 1, [])
    for r in rows:  # each row points at the run's copy
        assert (r["model"], r["path"]) == (
            "m",
            run.stored_video_path(run.video_path(r["sample_id"])),
        )


def test_video_row_of_an_unreadable_video(videos, prompts, tmp_path):
    bad = videos / f"{prompts[2].prompt_id}_F81_seed00.mp4"
    bad.write_bytes(b"\x00" * 100)
    (m,) = match_videos([bad], [prompts[2].prompt_id])[0]
    row, readable = video_row(RunDir(tmp_path), m, bad, "fp", "external")
    assert not readable and row["num_frames"] is None and row["seed"] == 0
    assert row["provenance"] == {"source": str(bad), "fingerprint": "fp"}
    good = sorted(videos.glob("*_seed01.mp4"))[0]
    (m,) = match_videos([good], [p.prompt_id for p in prompts])[0]
    row, readable = video_row(RunDir(tmp_path), m, good, "fp", "external")
    assert readable and (row["num_frames"], row["height"], row["width"]) == (7, 16, 24)
