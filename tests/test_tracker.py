"""The IoU/Hungarian tracker and main-track selection on synthetic detections."""

from __future__ import annotations

import numpy as np
import pytest
from spatialalign.detection.base import FrameDetections
from spatialalign.detection.tracker import TrackerConfig, iou_matrix, track_label, track_video

CLASSES = ("fox", "stump")


def box(cx: float, cy: float, w: float = 10.0, h: float = 8.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def frames_from(items: list[list[tuple[str, list[float]]]]) -> list[FrameDetections]:
    out = []
    for dets in items:
        boxes = np.array([b for _, b in dets], np.float32).reshape(-1, 4)
        scores = np.linspace(0.9, 0.5, len(dets)).astype(np.float32)
        out.append(FrameDetections(boxes, scores, [lab for lab, _ in dets]))
    return out


def test_iou_matrix_against_hand_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 0, 0]], float)
    expected = np.array([[1 / 7, 1.0, 0.0, 0.0], [0.0, 0.25, 0.0, 0.0]])
    np.testing.assert_allclose(iou_matrix(a, b), expected)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_single_object_with_short_gap_stays_one_track():
    cfg = TrackerConfig(max_gap=2)
    items = [[("fox", box(10 + 3 * f, 20))] for f in range(12)]
    items[5] = []
    items[6] = [("stump", box(50, 50))]  # other classes never join the fox track
    dets = frames_from(items)
    tracks = track_label(dets, "fox", cfg)
    assert len(tracks) == 1
    assert tracks[0].frames == [f for f in range(12) if f not in (5, 6)]
    # a gap longer than max_gap splits the track
    items2 = [[("fox", box(10 + 3 * f, 20))] if not 4 <= f < 7 else [] for f in range(12)]
    split = track_label(frames_from(items2), "fox", cfg)
    assert [t.frames for t in split] == [[0, 1, 2, 3], [7, 8, 9, 10, 11]]
    assert track_label(frames_from(items2), "fox", TrackerConfig(max_gap=3))[0].frames == [
        0,
        1,
        2,
        3,
        7,
        8,
        9,
        10,
        11,
    ]


def test_crossing_instances_keep_their_identity():
    # two foxes moving in opposite directions pass each other between frames 10 and 11
    # (x 58 -> 62 and 62 -> 58); the detector's order is shuffled
    rng = np.random.default_rng(0)
    items = []
    for f in range(21):
        a = ("fox", box(18 + 4 * f, 30))
        b = ("fox", box(102 - 4 * f, 30))
        items.append([a, b] if rng.random() < 0.5 else [b, a])

    def monotonic(tracks):
        return all(
            np.all(np.diff([float(bx[0]) for bx in t.boxes]) > 0)
            or np.all(np.diff([float(bx[0]) for bx in t.boxes]) < 0)
            for t in tracks
        )

    tracks = track_label(frames_from(items), "fox")
    assert len(tracks) == 2
    assert all(t.frames == list(range(21)) for t in tracks)
    assert monotonic(tracks)
    # the constant-velocity prediction is what keeps them apart: last-box matching swaps
    assert not monotonic(track_label(frames_from(items), "fox", TrackerConfig(velocity=False)))


def test_fast_small_object_linked_by_centre_distance():
    # moves one box width per frame: consecutive boxes never overlap
    items = [[("fox", box(10 + 6 * f, 20, w=6, h=6))] for f in range(10)]
    tracks = track_label(frames_from(items), "fox")
    assert len(tracks) == 1 and len(tracks[0]) == 10
    # without the centre gate the first link is impossible
    no_centre = track_label(frames_from(items), "fox", TrackerConfig(centre_gate=0.0))
    assert len(no_centre) > 1


def test_false_positives_do_not_take_the_main_track():
    rng = np.random.default_rng(1)
    items = []
    for f in range(30):
        dets = [("fox", box(20 + 2 * f, 40)), ("stump", box(60, 50, 16, 20))]
        if f % 7 == 3:  # one-frame false positives far away
            dets.append(("fox", box(rng.uniform(100, 140), rng.uniform(5, 15))))
        if f % 11 == 5:
            dets.append(("stump", box(rng.uniform(100, 140), 80)))
        items.append(dets)
    vt = track_video(frames_from(items), CLASSES, anchor_frame=0)
    assert vt.n_instances == {"animal": 1, "object": 1}
    assert vt.main["animal"].frames == list(range(30))
    assert vt.main["object"].frames == list(range(30))
    fox = vt.boxes("animal")
    np.testing.assert_allclose(fox[:, 0], [20 + 2 * f - 5 for f in range(30)])
    # without an anchor the longest track is the main one, too
    assert track_video(frames_from(items), CLASSES).main["animal"].frames == list(range(30))


def test_anchor_frame_picks_the_anchored_instance_and_rows_follow_it():
    # fox A is present on frames 0..19; fox B only on frames 8..14 (the anchor run), then
    # A is present too: the main track is the one detected on the anchor frame
    items = []
    for f in range(20):
        dets = [("stump", box(60, 60, 20, 20))]
        if 8 <= f < 15:
            dets.append(("fox", box(10 + f, 20)))  # B
        if not 8 <= f < 15:
            dets.append(("fox", box(100, 90)))  # A, absent during the anchor run
        items.append(dets)
    dets = frames_from(items)
    vt = track_video(dets, CLASSES, anchor_frame=8)
    assert vt.main["animal"].frames == list(range(8, 15))
    assert vt.n_instances["animal"] == 3  # B, and A split by a 7-frame gap
    longest = track_video(dets, CLASSES, TrackerConfig(max_gap=10))
    assert len(longest.main["animal"].frames) == 13
    rows = vt.rows("s7")
    assert [(r["frame"], r["label"]) for r in rows[:3]] == [
        (0, "object"),
        (1, "object"),
        (2, "object"),
    ]
    animal_rows = [r for r in rows if r["label"] == "animal"]
    assert [r["frame"] for r in animal_rows] == list(range(8, 15))
    assert animal_rows[0]["x0"] == pytest.approx(10 + 8 - 5)
    assert all(r["sample_id"] == "s7" for r in rows)
    assert len(rows) == 20 + 7
    # rows are sorted by frame, animal before object
    keys = [(r["frame"], r["label"] != "animal") for r in rows]
    assert keys == sorted(keys)
    with pytest.raises(ValueError):
        track_video(dets, CLASSES, anchor_frame=20)


def test_same_name_for_animal_and_object_and_non_finite_boxes():
    items = []
    for f in range(6):
        items.append([("cat", box(10 + f, 10)), ("cat", box(80, 80))])
    items[2].append(("cat", [np.nan, 0, 1, 1]))
    vt = track_video(frames_from(items), ("cat", "cat"), anchor_frame=0)
    assert vt.main["animal"] is not vt.main["object"]
    assert vt.boxes("animal")[0, 0] == pytest.approx(5)
    assert vt.boxes("object")[5, 0] == pytest.approx(75)
    assert len(vt.tracks) == 2  # the NaN box never starts a track
    # a missing class gives no main track and NaN boxes
    solo = track_video(frames_from([[("fox", box(5, 5))]] * 3), CLASSES)
    assert solo.main["object"] is None
    assert np.isnan(solo.boxes("object")).all()
    assert [r["label"] for r in solo.rows("s")] == ["animal"] * 3


def test_fill_single_extends_a_split_main_track_with_unambiguous_frames() -> None:
    # the animal jumps across the frame at frame 3 (seen in generated toy clips): the
    # tracker splits it, and only fill_single gives the anchored main track every frame
    def fd(*boxes_labels):
        boxes = [b for b, _ in boxes_labels]
        labels = [lab for _, lab in boxes_labels]
        return FrameDetections(np.array(boxes, dtype=np.float32), np.ones(len(boxes)), labels)

    obj = ([10, 8, 15, 15], "stump")
    dets = [
        fd(([10, 3, 13, 7], "cat"), obj),
        fd(([11, 3, 14, 7], "cat"), obj),
        fd(([12, 3, 15, 7], "cat"), obj),
        fd(([12, 3, 15, 7], "cat"), ([0, 10, 3, 14], "cat"), obj),  # two cats: ambiguous
        fd(([0, 10, 3, 14], "cat"), obj),
        fd(([1, 10, 4, 14], "cat"), obj),
    ]
    plain = track_video(dets, ["cat", "stump"], TrackerConfig(centre_gate=1.0), anchor_frame=0)
    assert plain.main["animal"].frames == [0, 1, 2, 3]
    filled = track_video(
        dets, ["cat", "stump"], TrackerConfig(centre_gate=1.0, fill_single=True), anchor_frame=0
    )
    assert filled.main["animal"].frames == [0, 1, 2, 3, 4, 5]
    boxes = filled.boxes("animal")
    assert boxes[3].tolist() == [12, 3, 15, 7]  # the ambiguous frame keeps the tracked box
    assert boxes[4].tolist() == [0, 10, 3, 14]
    assert filled.main["object"].frames == list(range(6))
