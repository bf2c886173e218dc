"""Peer spatial metrics (T2V-CompBench, VBench) against hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spatialalign.core.schemas import TRACKS
from spatialalign.evaluation.peer import (
    PEER_COLUMNS,
    peer_scores,
    t2v_compbench_frame_scores,
    t2v_compbench_score,
    vbench_frame_scores,
    vbench_score,
)
from spatialalign.rundir.tracks import read_tracks

NAN4 = [np.nan] * 4

# Five frames (xyxy, y down). The animal is "object 1", the object "object 2".
ANIMAL = np.array(
    [
        [0, 0, 10, 10],  # f0: centre (5, 5)
        [0, 0, 10, 10],  # f1: centre (5, 5)
        [20, 0, 30, 10],  # f2: centre (25, 5)
        [0, 0, 10, 10],  # f3: object missing
        NAN4,  # f4: both missing
    ],
    dtype=float,
)
OBJECT = np.array(
    [
        [20, 0, 30, 10],  # f0: centre (25, 5): d = (-20, 0), IoU 0
        [5, 0, 15, 10],  # f1: centre (10, 5): d = (-5, 0), inter 5*10 = 50, union 150, IoU 1/3
        [0, 0, 10, 10],  # f2: centre (5, 5):  d = (+20, 0) -> animal is RIGHT, IoU 0
        NAN4,
        NAN4,
    ],
    dtype=float,
)


def test_t2v_compbench_hand_example():
    # relation L. raw per frame: f0 1 - 0 = 1; f1 1 - 1/3 = 2/3; f2 wrong side -> 0;
    # f3 one missing -> -1; f4 both missing -> -2.
    # combine_frame: 1 -> 0.4 + 0.6*1 = 1.0; 2/3 -> 0.4 + 0.6*2/3 = 0.8; 0 -> 0.4;
    # -1 -> 0.2; -2 -> 0.0.  Video: (1.0 + 0.8 + 0.4 + 0.2 + 0.0) / 5 = 2.4 / 5 = 0.48
    frames = t2v_compbench_frame_scores(ANIMAL, OBJECT, "L")
    np.testing.assert_allclose(frames, [1.0, 0.8, 0.4, 0.2, 0.0])
    assert t2v_compbench_score(ANIMAL, OBJECT, "left") == pytest.approx(0.48)
    # relation R: f0, f1 wrong -> 0.4 each; f2 right, IoU 0 -> 1.0; then 0.2, 0.0
    # (0.4 + 0.4 + 1.0 + 0.2 + 0.0) / 5 = 2.0 / 5 = 0.4
    assert t2v_compbench_score(ANIMAL, OBJECT, "R") == pytest.approx(0.4)
    # a 16-frame video whose other 11 frames have no track rows: 2.4 / 16 = 0.15
    assert t2v_compbench_score(ANIMAL, OBJECT, "L", num_frames=16) == pytest.approx(0.15)


def test_vbench_hand_example_and_left_right_blindness():
    # relation L (horizontal): f0 |dx| 20 > |dy| 0, IoU 0 < 0.1 -> 1;
    # f1 horizontal, IoU 1/3 >= 0.1 -> 0.1 / (1/3) = 0.3; f2 horizontal (animal on the
    # WRONG side, the sign is ignored), IoU 0 -> 1; f3, f4 a box missing -> 0.
    # Video: (1 + 0.3 + 1 + 0 + 0) / 5 = 2.3 / 5 = 0.46
    np.testing.assert_allclose(vbench_frame_scores(ANIMAL, OBJECT, "L"), [1.0, 0.3, 1.0, 0, 0])
    assert vbench_score(ANIMAL, OBJECT, "L") == pytest.approx(0.46)
    # left and right score the same: VBench cannot tell them apart
    assert vbench_score(ANIMAL, OBJECT, "R") == vbench_score(ANIMAL, OBJECT, "L")
    # vertical relation: dy = 0 everywhere, the vertical axis never dominates
    assert vbench_score(ANIMAL, OBJECT, "T") == 0.0
    assert vbench_score(ANIMAL, OBJECT, "bottom") == 0.0


def test_vertical_and_tie():
    animal = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    obj = np.array([[0, 20, 10, 30], [10, 10, 20, 20]], float)
    # f0: d = (5-5, 5-25) = (0, -20): animal above (y down) -> T right, B wrong
    # f1: d = (-10, -10): a tie, no relation -> wrong for every relation
    np.testing.assert_allclose(t2v_compbench_frame_scores(animal, obj, "T"), [1.0, 0.4])
    np.testing.assert_allclose(t2v_compbench_frame_scores(animal, obj, "B"), [0.4, 0.4])
    np.testing.assert_allclose(vbench_frame_scores(animal, obj, "B"), [1.0, 0.0])
    np.testing.assert_allclose(vbench_frame_scores(animal, obj, "L"), [0.0, 0.0])


def test_static_scores_ignore_time():
    # the animal crosses from left to right of the object; played backwards (right to
    # left) both peer scores are unchanged: they cannot see the direction of a move
    x = np.linspace(0, 40, 9)
    animal = np.stack([x, np.zeros(9), x + 10, np.full(9, 10)], axis=1)
    obj = np.tile([20.0, 0, 30, 10], (9, 1))
    for fn in (t2v_compbench_score, vbench_score):
        for rel in "LR":
            assert fn(animal, obj, rel) == pytest.approx(fn(animal[::-1], obj[::-1], rel))


def test_bad_inputs():
    with pytest.raises(ValueError, match="relation"):
        vbench_score(ANIMAL, OBJECT, "X")
    with pytest.raises(ValueError, match="frames"):
        vbench_score(ANIMAL, OBJECT[:3], "L")
    bad = ANIMAL.copy()
    bad[0, 2] = -5  # x1 < x0
    with pytest.raises(ValueError, match="inverted"):
        t2v_compbench_score(bad, OBJECT, "L")
    assert math.isnan(vbench_score(np.zeros((0, 4)), np.zeros((0, 4)), "L"))


def _tracks_table(rows: list[tuple[str, int, str, list[float]]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            dict(sample_id=s, frame=f, label=lab, x0=b[0], y0=b[1], x1=b[2], y1=b[3], score=0.9)
            for s, f, lab, b in rows
        ],
        schema=TRACKS,
    )


def _peer_scores_file(path, sample_ids, initial, final, *, num_frames=None) -> pa.Table:
    """:func:`peer_scores` over a ``tracks.parquet`` read as metrics_file reads it."""
    tracks = read_tracks(path, pa.array(list(sample_ids), pa.string()), progress=False)
    return peer_scores(tracks, sample_ids, initial, final, num_frames=num_frames)


def test_batch_from_tracks_file(tmp_path):
    rows = []
    for f in range(5):
        if not np.isnan(ANIMAL[f]).all():
            rows.append(("s1", f, "animal", list(ANIMAL[f])))
        if not np.isnan(OBJECT[f]).all():
            rows.append(("s1", f, "object", list(OBJECT[f])))
    # s2: a static video, animal top of the object in frames 0..2
    for f in range(3):
        rows.append(("s2", f, "animal", [0, 0, 10, 10]))
        rows.append(("s2", f, "object", [0, 20, 10, 30]))
    path = tmp_path / "tracks.parquet"
    pq.write_table(_tracks_table(rows), path)

    table = _peer_scores_file(
        path, ["s1", "s2", "s3"], initial=["R", "T", "L"], final=["L", "B", "R"]
    )
    assert table.column_names == ["sample_id", *PEER_COLUMNS, "n_frames"]
    got = table.to_pylist()
    # s1: tracks hold frames 0..3 (frame 4 has no row): T2V final L = 2.4 / 4 = 0.6
    assert got[0]["t2v_compbench_final"] == pytest.approx(0.6)
    assert got[0]["t2v_compbench_initial"] == pytest.approx(2.0 / 4)  # R, as above
    assert got[0]["vbench_final"] == pytest.approx(2.3 / 4)
    assert got[0]["n_frames"] == 4
    # s2: initial T right in all 3 frames (1.0), final B wrong (0.4); VBench vertical 1.0
    assert got[1]["t2v_compbench_initial"] == pytest.approx(1.0)
    assert got[1]["t2v_compbench_final"] == pytest.approx(0.4)
    assert got[1]["vbench_final"] == pytest.approx(1.0)
    # s3 has no tracks
    assert math.isnan(got[2]["vbench_final"]) and got[2]["n_frames"] == 0

    # with the manifest's frame counts, untracked frames count as both missing
    table = _peer_scores_file(path, ["s1"], ["R"], ["L"], num_frames=[5])
    assert table.column("t2v_compbench_final")[0].as_py() == pytest.approx(0.48)
