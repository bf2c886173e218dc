"""The official-style oracle on the official 120 test prompts, and its own semantics.

For every prompt of ../shared/data/official_eval120.csv we synthesise detections in
the official per-frame shape (including frames the official scorer must skip:
redundant boxes, wrong labels, one box only, shuffled frame order), score them with
the official-style loop, and check that `dsr_geom` and the numpy reference give the
same numbers on the equivalent arrays.
"""

from __future__ import annotations

import csv

import dsr_geom
import numpy as np
import official_scorer as official
import pytest
import reference_scorer as reference
from shared_data import OFFICIAL_CSV as EVAL120

WIDTH, HEIGHT = 832, 480


def read_eval120() -> list[dict[str, str]]:
    with open(EVAL120, newline="") as f:
        return list(csv.DictReader(f))


def position(rel: str, rng: np.random.Generator) -> tuple[float, float]:
    """An animal centre roughly at ``rel`` of an object centred at (416, 300)."""
    dx, dy = {"L": (-150, 0), "R": (150, 0), "T": (0, -150)}[rel]
    return 416 + dx + rng.normal(0, 40), 300 + dy + rng.normal(0, 40)


def synth_video(row: dict[str, str], rng: np.random.Generator):
    """Official-shape detections of an animal moving from the initial to the final
    relation, plus the equivalent (animal, object) arrays with NaN rows where the
    official scorer skips the frame."""
    animal, obj = row["animal"], row["object"]
    n = int(rng.integers(15, 82))
    (x0, y0), (x1, y1) = position(row["type"][0], rng), position(row["type"][1], rng)
    frames, a_rows, o_rows = [], [], []
    for i in range(n):
        t = i / max(n - 1, 1)
        cx, cy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        w, h = rng.uniform(30, 120), rng.uniform(30, 120)
        a_box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        o_box = np.array([366.0, 250.0, 466.0, 350.0]) + rng.normal(0, 3, 4)
        kind = rng.choice(["ok"] * 6 + ["ok_swapped", "redundant", "wrong", "single", "none"])
        if kind in ("ok", "ok_swapped"):
            labels, boxes = [animal, obj], [a_box, o_box]
            if kind == "ok_swapped":
                labels, boxes = labels[::-1], boxes[::-1]
            a_rows.append(a_box)
            o_rows.append(o_box)
        else:
            labels, boxes = {
                "redundant": ([animal, obj, animal], [a_box, o_box, a_box + 5]),
                "wrong": ([animal, "person"], [a_box, o_box]),
                "single": ([obj], [o_box]),
                "none": ([], []),
            }[kind]
            a_rows.append(np.full(4, np.nan))
            o_rows.append(np.full(4, np.nan))
        frames.append((i, list(labels), np.array(boxes, dtype=np.float64).reshape(-1, 4)))
    order = rng.permutation(n)  # the official scorer sorts frames by index
    return [frames[j] for j in order], np.array(a_rows), np.array(o_rows)


def test_official_prompts_scored_like_the_official_loop():
    rows = read_eval120()
    assert len(rows) == 120
    rng = np.random.default_rng(120)
    rewards, a_all, o_all, lengths, ini, fin = [], [], [], [], [], []
    for row in rows:
        for _seed in range(2):
            frames, a, o = synth_video(row, rng)
            rewards.append(
                official.official_video_reward(frames, row["animal"], row["object"], row["type"])
            )
            a_all.append(a)
            o_all.append(o)
            lengths.append(len(a))
            ini.append(row["type"][0])
            fin.append(row["type"][1])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    a, o = np.concatenate(a_all), np.concatenate(o_all)
    rewards = np.array(rewards)
    invalid = rewards == official.INVALID_REWARD
    assert 0 < invalid.sum() < len(rewards)  # both kinds occur
    for impl in (dsr_geom, reference):
        got = impl.dsr_batch(a, o, offsets, ini, fin)
        np.testing.assert_array_equal(np.isnan(got["dsr"]), invalid)
        np.testing.assert_allclose(got["dsr"][~invalid], rewards[~invalid], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            impl.correctness_curve(got["dsr"]),
            official.official_correctness(rewards),
            rtol=0,
            atol=1e-15,
        )


def test_official_loop_semantics():
    rng = np.random.default_rng(0)
    row = {"animal": "fox", "object": "stump", "type": "LR"}
    frames, a, o = synth_video(row, rng)
    r = official.official_video_reward(frames, "fox", "stump", "LR")
    assert r == official.official_video_reward(sorted(frames), "fox", "stump", "LR")
    assert official.official_video_reward([], "fox", "stump", "LR") == -100
    # only frames labelled exactly {fox, stump} count: other names give no kept frames
    assert official.official_video_reward(frames, "fox", "tree", "LR") == -100
    with pytest.raises(ValueError, match="L/R/T"):
        official.official_video_reward(frames, "fox", "stump", "LB")


def test_frames_from_arrays_round_trip():
    a = np.array([[0, 0, 10, 10], [1, 1, 5, 5], [np.nan] * 4, [np.nan] * 4], float)
    o = np.array([[20, 0, 30, 10], [2, 2, 6, 6], [20, 0, 30, 10], [np.nan] * 4], float)
    frames = official.frames_from_arrays(a, o, "cat", "box")
    assert [f[0] for f in frames] == [0, 1, 2, 3]
    assert frames[0][1] == ["cat", "box"] and frames[1][1] == ["box", "cat"]
    np.testing.assert_array_equal(frames[1][2], [o[1], a[1]])
    assert frames[2][1] == ["box"] and frames[2][2].shape == (1, 4)
    assert frames[3][1] == [] and frames[3][2].shape == (0, 4)


def test_official_correctness_by_hand():
    got = official.official_correctness([0.95, 0.7, -100, 0.31, 0.7000000000000001])
    assert got == [0.8, 0.8, 0.8, 0.8, 0.6, 0.6, 0.6, 0.4, 0.2, 0.2]
