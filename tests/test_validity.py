"""The official detection-level validity rules on synthetic per-frame detections."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spatialalign.core.presets import scoring_config
from spatialalign.detection.base import FrameDetections
from spatialalign.detection.validity import (
    MISS,
    REDUNDANT,
    VALID,
    classify_frame,
    first_stable_run,
    judge_detections,
    judge_frames,
    longest_run,
    rejected,
)

CLASSES = ("fox", "stump")
V, M, R = VALID, MISS, REDUNDANT


def frame(*labels: str) -> FrameDetections:
    n = len(labels)
    boxes = np.tile(np.array([[1, 2, 5, 8]], np.float32), (n, 1))
    return FrameDetections(boxes, np.full(n, 0.9, np.float32), list(labels))


@pytest.mark.parametrize(
    "labels, expected",
    [
        ((), MISS),
        (("fox",), MISS),
        (("stump",), MISS),
        (("fox", "stump"), VALID),
        (("stump", "fox"), VALID),
        (("fox", "fox"), REDUNDANT),
        (("stump", "stump"), REDUNDANT),
        (("fox", "fox stump"), REDUNDANT),
        (("fox", "stump", "stump"), REDUNDANT),
        (("fox", "stump", "fox", "stump"), REDUNDANT),
    ],
)
def test_classify_frame(labels, expected):
    assert classify_frame(list(labels), CLASSES) == expected


def reference_first_run(statuses, min_run):
    """Independent reference: group the valid frame indices into consecutive runs."""
    valid_idx = [i for i, s in enumerate(statuses) if s == VALID]
    for _, grp in itertools.groupby(enumerate(valid_idx), key=lambda p: p[1] - p[0]):
        run = [i for _, i in grp]
        if len(run) >= min_run:
            return run[0], len(run)
    return None


@given(st.lists(st.sampled_from([V, M, R]), max_size=60), st.integers(1, 6))
def test_first_stable_run_matches_reference(statuses, min_run):
    assert first_stable_run(statuses, min_run) == reference_first_run(statuses, min_run)
    runs = [len(list(g)) for k, g in itertools.groupby(statuses) if k == V]
    assert longest_run(statuses) == max(runs, default=0)


def test_first_stable_run_takes_first_not_longest():
    statuses = [V, V, V, M] + [V] * 4 + [R] + [V] * 10
    assert first_stable_run(statuses, 4) == (4, 4)
    assert first_stable_run(statuses, 3) == (0, 3)
    assert first_stable_run(statuses, 5) == (9, 10)
    assert first_stable_run(statuses, 11) is None
    assert longest_run(statuses) == 10
    with pytest.raises(ValueError):
        first_stable_run(statuses, 0)


@pytest.mark.parametrize("preset", ["official", "toy"])
def test_thresholds_are_exact(preset):
    cfg = scoring_config(preset)
    base_valid = [V] * cfg.min_valid

    # exactly max_redundant redundant frames pass, one more is rejected
    ok = judge_frames(base_valid + [R] * cfg.max_redundant, cfg)
    assert ok.status == "valid" and ok.reason == ""
    assert (ok.n_valid, ok.n_redundant, ok.n_miss) == (cfg.min_valid, cfg.max_redundant, 0)
    bad = judge_frames(base_valid + [R] * (cfg.max_redundant + 1), cfg)
    assert bad.status == "rejected" and bad.reason == "redundant"

    # exactly min_valid valid frames pass, one fewer is rejected
    assert judge_frames(base_valid + [M] * 30, cfg).valid
    few = judge_frames(base_valid[:-1] + [M] * 30, cfg)
    assert (few.status, few.reason, few.n_valid) == (
        "rejected",
        "too_few_frames",
        cfg.min_valid - 1,
    )

    # enough valid frames but every run one short of min_run
    short = ([V] * (cfg.min_run - 1) + [M]) * (cfg.min_valid + 1)
    res = judge_frames(short, cfg)
    assert res.n_valid >= cfg.min_valid
    assert (res.status, res.reason, res.longest_run) == (
        "rejected",
        "no_stable_run",
        cfg.min_run - 1,
    )
    assert res.stable_run is None and res.anchor_frame is None
    # one run of exactly min_run anywhere makes it valid, anchored at that run
    fixed = short + [V] * cfg.min_run
    res = judge_frames(fixed, cfg)
    assert res.valid and res.anchor_frame == len(short)


def test_official_example_and_reason_priority():
    cfg = scoring_config("official")
    # 81 frames: a 3-frame run, then 30 valid frames, misses and 16 redundant frames
    statuses = [M, V, V, V, R] + [V] * 30 + [R] * 15 + [M] * 31
    res = judge_frames(statuses, cfg)
    assert res.valid
    assert (res.n_frames, res.n_valid, res.n_miss, res.n_redundant) == (81, 33, 32, 16)
    assert res.stable_run == (5, 30) and res.anchor_frame == 5
    # both "too many redundant" and "too few valid": reported as redundant
    both = judge_frames([V] * 5 + [R] * 17, cfg)
    assert both.reason == "redundant" and both.n_valid < cfg.min_valid
    # overrides change the thresholds
    assert judge_frames(
        [V] * 5 + [R] * 17, scoring_config("official", max_redundant=17, min_valid=5)
    ).valid


def test_no_frames_and_unreadable():
    cfg = scoring_config("official")
    res = judge_frames([], cfg)
    assert (res.status, res.reason, res.n_frames) == ("rejected", "no_frames", 0)
    row = rejected("unreadable_video").to_row("s1")
    assert row == {
        "sample_id": "s1",
        "n_valid": 0,
        "n_miss": 0,
        "n_redundant": 0,
        "longest_run": 0,
        "status": "rejected",
        "reason": "unreadable_video",
    }
    with pytest.raises(ValueError):
        rejected("bogus")
    with pytest.raises(ValueError):
        judge_frames([V, "maybe"], cfg)


def test_judge_detections_end_to_end():
    cfg = scoring_config("toy")
    dets = (
        [frame("fox")] * 2
        + [frame("fox", "stump")] * cfg.min_valid
        + [frame("fox", "stump", "stump")] * 2
        + [frame("stump", "fox")]
    )
    res = judge_detections(dets, CLASSES, cfg)
    assert res.valid and res.reason == ""
    assert (res.n_valid, res.n_miss, res.n_redundant) == (cfg.min_valid + 1, 2, 2)
    assert res.anchor_frame == 2 and res.longest_run == cfg.min_valid
    assert res.frame_status[:3] == (M, M, V)
    assert res.to_row("x")["status"] == "valid"
    with pytest.raises(ValueError):
        judge_detections(dets, ("fox",), cfg)
