"""`spatialalign demo`: the shipped synthetic run is installed, reproducible and scores right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from official_scorer import frames_from_arrays, official_video_reward
from spatialalign.cli import main
from spatialalign.demo import DEMO_FILES, demo_data_dir
from spatialalign.prompts import read_prompts

ROOT = Path(__file__).resolve().parents[1]


def test_demo_data_is_found_through_importlib_resources() -> None:
    source = demo_data_dir()
    sizes = {}
    for name in DEMO_FILES:
        item = source.joinpath(*name.split("/"))
        assert item.is_file(), name
        sizes[name] = len(item.read_bytes())
    assert sum(sizes.values()) < 400_000  # "a few hundred KB at most"


def test_demo_data_is_what_the_committed_script_writes(tmp_path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    source = demo_data_dir()
    for name in DEMO_FILES:
        shipped = pq.read_table(source.joinpath(*name.split("/")))
        fresh = pq.read_table(tmp_path / name)
        assert shipped.equals(fresh), name


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    try:
        main(["demo", str(out), "--synthetic"])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return out, code


def test_demo_command_writes_all_outputs(demo_run) -> None:
    out, code = demo_run
    assert code == 0
    for name in (*DEMO_FILES, "scores.parquet", "summary.json", "correctness.png"):
        assert (out / name).is_file(), name


def test_demo_output_text(tmp_path, capsys) -> None:
    main(["demo", str(tmp_path / "d"), "--synthetic"])
    text = capsys.readouterr().out
    assert "validness" in text and "C@0.7" in text
    assert str(tmp_path / "d" / "scores.parquet") in text
    assert text.strip().splitlines()[-1].startswith("scored 90 videos:")


def test_demo_covers_good_bad_missing_and_rejected_videos(demo_run) -> None:
    out, _ = demo_run
    rows = pq.read_table(out / "scores.parquet").to_pylist()
    reasons = {r["reason"] for r in rows}
    assert {"", "too_few_frames", "redundant", "no_stable_run", "unreadable_video"} <= reasons
    assert "no_tracks" in reasons
    dsr = np.array([r["dsr"] for r in rows if r["valid"]])
    assert (dsr >= 0.9).sum() >= 10 and (dsr < 0.6).sum() >= 5  # good and bad videos


def test_demo_scores_equal_the_official_scorer(demo_run) -> None:
    out, _ = demo_run
    prompts = {p.prompt_id: p for p in read_prompts(out / "prompts.parquet")}
    tracks = pq.read_table(out / "tracks.parquet").to_pydict()
    by_sample: dict[str, list[int]] = {}
    for i, sid in enumerate(tracks["sample_id"]):
        by_sample.setdefault(sid, []).append(i)
    det = {
        r["sample_id"]: r["status"] for r in pq.read_table(out / "detections.parquet").to_pylist()
    }
    for row in pq.read_table(out / "scores.parquet").to_pylist():
        p = prompts[row["prompt_id"]]
        if det.get(row["sample_id"], "rejected") != "valid":
            assert not row["valid"]
            continue
        idx = by_sample[row["sample_id"]]
        n = max(tracks["frame"][i] for i in idx) + 1
        boxes = {lab: np.full((n, 4), np.nan) for lab in ("animal", "object")}
        for i in idx:  # float32 in the file: the same float64 values the scorer sees
            box = [tracks[c][i] for c in ("x0", "y0", "x1", "y1")]
            boxes[tracks["label"][i]][tracks["frame"][i]] = box
        frames = frames_from_arrays(boxes["animal"], boxes["object"], p.animal, p.object)
        expected = official_video_reward(frames, p.animal, p.object, p.dsr_type)
        got = row["dsr"] if row["valid"] else -100.0
        assert got == pytest.approx(expected, abs=1e-12), row["sample_id"]
