"""API and semantics of the DSR-Score engine, through Python.

Every test runs against both the Rust core (`dsr_geom`) and the numpy reference
(`tests/reference_scorer.py`): they must expose the same API and semantics
(DESIGN.md, "Python API of dsr_geom"). Expected values are computed by hand from
the DESIGN.md definition.
"""

from __future__ import annotations

import threading

import dsr_geom
import numpy as np
import pytest
import reference_scorer as reference

IMPLS = {"rust": dsr_geom, "reference": reference}
NAN4 = [np.nan] * 4
OBJ = [90.0, 40.0, 110.0, 60.0]  # centre (100, 50), 20 x 20


@pytest.fixture(params=list(IMPLS))
def impl(request):
    return IMPLS[request.param]


def animal_at(cx: float, cy: float = 50.0, w: float = 20.0, h: float = 20.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def track(centres: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Animal moving along x beside the fixed object OBJ; NaN centre = not detected."""
    a = np.array([NAN4 if np.isnan(c) else animal_at(c) for c in centres])
    o = np.array([OBJ] * len(centres))
    return a, o


def left_to_right() -> tuple[np.ndarray, np.ndarray]:
    # x centres; object centre 100, mean width 20 -> r_left = -sign(dx) * min(|dx|/20, 1)
    xs = [80.0, 90.0, 95.0] + [100.0] * 14 + [105.0, 110.0, 130.0]
    return track(xs)


# --- values computed by hand from DESIGN.md -------------------------------------------


def test_ssr_by_hand(impl):
    a = np.array([animal_at(103, 46), animal_at(80), animal_at(100), NAN4])
    o = np.array([OBJ] * 4)
    # frame 0: v = (3, -4), |v| = 5 -> cos = (0.6, -0.8); d = (3/20, 4/20)
    # frame 1: v = (-20, 0) -> LEFT = 1; frame 2: |v| = 0 -> 0; frame 3: missing
    exp = {
        "right": [0.6 * 0.15, -1.0, 0.0],
        "left": [-0.6 * 0.15, 1.0, 0.0],
        "top": [0.8 * 0.2, 0.0, 0.0],
        "bottom": [-0.8 * 0.2, 0.0, 0.0],
    }
    for rel, want in exp.items():
        got = impl.ssr_scores(a, o, rel)
        assert got.dtype == np.float64 and got.shape == (4,)
        np.testing.assert_allclose(got[:3], want, atol=1e-15)
        assert np.isnan(got[3])
        np.testing.assert_array_equal(impl.ssr_scores(a, o, rel[0].upper()), got)


def test_dsr_by_hand(impl):
    a, o = left_to_right()
    r_init = (1.0 + 0.5 + 0.25) / 3  # left at x = 80, 90, 95
    r_final = (0.25 + 0.5 + 1.0) / 3  # right at x = 105, 110, 130
    g = 0.5 * (1.0 - (-1.0))
    want = (r_init + g + r_final + g) / 8 + 0.5
    assert impl.dsr_score(a, o, "left", "right") == pytest.approx(want, abs=1e-15)
    out = impl.dsr_batch(a, o, [0, len(a)], ["L"], ["R"])
    assert out["r_init"][0] == pytest.approx(r_init, abs=1e-15)
    assert out["r_final"][0] == pytest.approx(r_final, abs=1e-15)
    assert out["g_init"][0] == pytest.approx(1.0) and out["g_final"][0] == pytest.approx(1.0)
    assert out["n_kept"][0] == 20
    # the same motion scored against the opposite relations
    assert impl.dsr_score(a, o, "R", "L") == pytest.approx(1 - want, abs=1e-15)


def test_top_is_smaller_y(impl):
    # animal above the object (y down) then below it: top -> bottom is perfect
    ys = [0.0] * 10 + [100.0] * 10
    a = np.array([animal_at(100, y) for y in ys])
    o = np.array([OBJ] * 20)
    assert impl.dsr_score(a, o, "top", "bottom") == pytest.approx(1.0)
    assert impl.dsr_score(a, o, "bottom", "top") == pytest.approx(0.0)


def test_min_frames_and_missing_frames(impl):
    xs = [80.0, np.nan, 90.0] + [100.0] * 16 + [np.nan, 130.0]
    a, o = track(xs)
    out = impl.dsr_batch(a, o, [0, len(a)], "L", "R")
    assert out["n_kept"][0] == 19
    assert np.isnan(out["dsr"][0]) and np.isnan(out["r_init"][0])
    assert impl.dsr_score(a, o, "L", "R") is None
    assert impl.dsr_score(a, o, "L", "R", min_frames=19) is not None
    # m = 1: only the first/last kept frames (x = 80 and 130) count
    assert impl.dsr_score(a, o, "L", "R", m=1, min_frames=19) == pytest.approx(1.0)


def test_zero_width_frames_are_not_kept(impl):
    a, o = left_to_right()
    a[5] = [100, 40, 100, 60]  # zero animal width
    o[6] = [100, 40, 100, 60]  # zero object width
    a[7], o[7] = [90, 50, 110, 50], [90, 50, 110, 50]  # both heights zero -> mean height 0
    a[8] = [90, 50, 110, 50]  # one zero height: kept
    assert impl.dsr_batch(a, o, [0, 20], "L", "R", min_frames=0)["n_kept"][0] == 17
    s = impl.ssr_scores(a, o, "left")
    assert np.isnan(s[5:8]).all() and not np.isnan(s[8])


def test_short_video_averages_what_it_has(impl):
    a, o = track([80.0, 120.0])
    out = impl.dsr_batch(a, o, [0, 2], "L", "R", m=3, min_frames=0)
    assert out["r_init"][0] == pytest.approx((1.0 - 1.0) / 2)
    assert out["n_kept"][0] == 2


# --- input forms -------------------------------------------------------------------------


def test_float32_lists_and_noncontiguous(impl):
    a, o = left_to_right()
    ref = impl.dsr_score(a, o, "L", "R")
    assert impl.dsr_score(a.astype(np.float32), o.astype(np.float32), "L", "R") == ref
    assert impl.dsr_score(a.astype(np.float32), o, "L", "R") == ref
    assert impl.dsr_score(a.tolist(), o.tolist(), "L", "R") == ref
    assert impl.dsr_score(np.asfortranarray(a), o, "L", "R") == ref
    # strided views: every other row of a doubled array, and a column-sliced array
    a2 = np.repeat(a, 2, axis=0)[::2]
    o6 = np.concatenate([o, np.zeros((20, 2))], axis=1)[:, :4]
    assert not a2.flags.c_contiguous and not o6.flags.c_contiguous
    assert impl.dsr_score(a2, o6, "L", "R") == ref
    assert impl.dsr_score(a.astype(np.int64), o.astype(np.int64), "L", "R") == ref
    big_endian = a.astype(">f8")
    assert impl.dsr_score(big_endian, o, "L", "R") == ref


def test_batch_broadcasts_single_relation_and_matches_single_videos(impl):
    a1, o1 = left_to_right()
    a2, o2 = track([130.0] * 25)
    a = np.concatenate([a1, a2, a1[:0]])
    o = np.concatenate([o1, o2, o1[:0]])
    offsets = np.array([0, 20, 45, 45])
    out = impl.dsr_batch(a, o, offsets, "left", ["R", "R", "T"])
    assert set(out) == {"dsr", "r_init", "r_final", "g_init", "g_final", "n_kept"}
    assert out["n_kept"].dtype == np.int64 and out["dsr"].dtype == np.float64
    np.testing.assert_array_equal(out["n_kept"], [20, 25, 0])
    assert out["dsr"][0] == impl.dsr_score(a1, o1, "L", "R")
    assert out["dsr"][1] == impl.dsr_score(a2, o2, "L", "R")
    assert np.isnan(out["dsr"][2])
    for offs in ([0, 20, 45, 45], (0, 20, 45, 45), offsets.astype(np.int32)):
        np.testing.assert_array_equal(
            impl.dsr_batch(a, o, offs, "L", ("R", "R", "T"))["dsr"], out["dsr"]
        )


def test_empty_batch(impl):
    out = impl.dsr_batch(np.zeros((0, 4)), np.zeros((0, 4)), [0], [], [])
    assert all(len(v) == 0 for v in out.values())


# --- malformed input: ValueError naming the row / video, never a crash ---------------


@pytest.mark.parametrize(
    "bad, words",
    [
        ([0.0, np.nan, 1.0, 1.0], "row 27"),
        ([np.nan, np.nan, np.nan, 5.0], "row 27"),
        ([0.0, 0.0, np.inf, 1.0], "row 27"),
        ([-np.inf, 0.0, 1.0, 1.0], "row 27"),
        ([5.0, 0.0, 1.0, 1.0], "x1 < x0"),
        ([0.0, 5.0, 1.0, 1.0], "row 27"),
    ],
)
@pytest.mark.parametrize("which", ["animal", "object"])
def test_malformed_rows_name_row_and_video(impl, bad, words, which):
    a1, o1 = left_to_right()
    a = np.concatenate([a1, a1])
    o = np.concatenate([o1, o1])
    (a if which == "animal" else o)[27] = bad
    with pytest.raises(ValueError) as e:
        impl.dsr_batch(a, o, [0, 20, 40], "L", "R")
    msg = str(e.value)
    assert "video 1" in msg and "row 27" in msg and which in msg and words in msg
    with pytest.raises(ValueError, match="row 7"):
        impl.dsr_score(a[20:], o[20:], "L", "R")
    with pytest.raises(ValueError, match="row 27"):
        impl.ssr_scores(a, o, "T")
    for dtype in (np.float32, np.float64):
        with pytest.raises(ValueError, match="row 27"):
            impl.dsr_batch(a.astype(dtype), o.astype(dtype), [0, 20, 40], "L", "R")


def test_first_bad_row_wins(impl):
    a, o = left_to_right()
    a[12] = [1, 1, 0, 0]
    o[9] = [0, np.nan, 1, 1]
    with pytest.raises(ValueError, match="object box at row 9"):
        impl.dsr_score(a, o, "L", "R")
    a[9] = [np.inf, 0, 1, 1]  # same row: the animal box is reported first
    with pytest.raises(ValueError, match="animal box at row 9"):
        impl.dsr_score(a, o, "L", "R")


@pytest.mark.parametrize(
    "offsets",
    [[0, 20], [1, 20, 40], [0, 25, 20, 40][:3], [0, 20, 41], [0, 20, 39], [0, -5, 40], []],
)
def test_bad_offsets(impl, offsets):
    a1, o1 = left_to_right()
    a, o = np.concatenate([a1, a1]), np.concatenate([o1, o1])
    with pytest.raises(ValueError, match="offsets"):
        impl.dsr_batch(a, o, offsets, ["L", "L"], ["R", "R"])


def test_bad_offset_types(impl):
    a, o = left_to_right()
    for offsets in ([0.0, 20.0], np.array([[0, 20]]), ["0", "20"], 20):
        with pytest.raises(ValueError, match="offsets"):
            impl.dsr_batch(a, o, offsets, "L", "R")


def test_other_malformed_inputs(impl):
    a, o = left_to_right()
    cases = [
        lambda: impl.dsr_score(a[:19], o, "L", "R"),  # mismatched lengths
        lambda: impl.dsr_score(a[:, :3], o[:, :3], "L", "R"),  # not [N, 4]
        lambda: impl.dsr_score(a.ravel(), o.ravel(), "L", "R"),  # 1-D
        lambda: impl.dsr_score(np.zeros((20, 4, 1)), o, "L", "R"),  # 3-D
        lambda: impl.dsr_score([["a", "b", "c", "d"]] * 20, o, "L", "R"),  # not numbers
        lambda: impl.dsr_score(a, o, "behind", "R"),
        lambda: impl.dsr_score(a, o, "L", "R", m=0),
        lambda: impl.dsr_score(a, o, "L", "R", m=-1),
        lambda: impl.dsr_score(a, o, "L", "R", min_frames=-1),
        lambda: impl.ssr_scores(a, o, "front"),
        lambda: impl.dsr_batch(a, o, [0, 20], ["L"], ["R", "R"]),  # relation counts differ
        lambda: impl.dsr_batch(a, o, [0, 20], [1], ["R"]),  # not a relation name
        lambda: impl.dsr_batch(a, o, [0, 20], None, ["R"]),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()
    with pytest.raises(ValueError, match="video 1"):
        impl.dsr_batch(np.concatenate([a, a]), np.concatenate([o, o]), [0, 20, 40], ["L", "X"], "R")


# --- correctness curves ----------------------------------------------------------------


def test_official_thresholds_are_numpy_arange():
    grid = np.arange(0, 1, 0.1)
    assert np.array_equal(np.asarray(dsr_geom.OFFICIAL_THRESHOLDS), grid)
    assert np.array_equal(reference.OFFICIAL_THRESHOLDS, grid)
    assert dsr_geom.OFFICIAL_THRESHOLDS[7] == 0.7000000000000001


def test_correctness_curve(impl):
    dsr = np.array([0.9, 0.7, np.nan, 0.2, 0.7000000000000001])
    got = impl.correctness_curve(dsr, [0.0, 0.5, 0.7, 0.7000000000000001, 0.95])
    np.testing.assert_array_equal(got, [0.8, 0.6, 0.6, 0.4, 0.0])
    default = impl.correctness_curve(dsr)
    assert default.shape == (10,) and default[7] == 0.4  # 0.7 itself is below the grid's 0.7
    np.testing.assert_array_equal(impl.correctness_curve(list(dsr)), default)
    np.testing.assert_array_equal(impl.correctness_curve(dsr.astype(np.float32))[:1], [0.8])
    assert np.isnan(impl.correctness_curve([], [0.5])[0])
    with pytest.raises(ValueError):
        impl.correctness_curve([0.5, np.inf])
    with pytest.raises(ValueError):
        impl.correctness_curve([0.5], [np.nan])
    with pytest.raises(ValueError):
        impl.correctness_curve(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        impl.correctness_curve(["x"])


# --- the Rust core specifically ----------------------------------------------------------


def test_rust_batch_from_many_threads():
    """The GIL is released during scoring; concurrent calls give the same answers."""
    a1, o1 = left_to_right()
    a, o = np.tile(a1, (200, 1)), np.tile(o1, (200, 1))
    offsets = np.arange(0, len(a) + 1, 20)
    want = dsr_geom.dsr_batch(a, o, offsets, "L", "R")["dsr"]
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(20):
            results.append(dsr_geom.dsr_batch(a, o, offsets, "L", "R")["dsr"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80
    assert all(np.array_equal(r, want) for r in results)


def test_rust_extreme_finite_coordinates_stay_in_range():
    """Finite boxes near f64::MAX (centres, widths or |v|^2 overflow in the official
    formula) or with subnormal offsets still score inside [-1, 1] / [0, 1]."""
    big = np.finfo(np.float64).max
    a = np.array(
        [[-big, -big, big, big], [big / 2, 0, big, 1], [1e200, 1e200, 1.5e200, 1.5e200]]
        + [[0, 0, 1.5e-160, 1e-300]] * 20
    )
    o = np.array(
        [[0, 0, 1, 1], [-big, 0, -big / 2, 1], [-1e200, -1e200, -0.5e200, -0.5e200]]
        + [[0, 0, 5e-324, 1e-300]] * 20
    )
    for rel in ("left", "right", "top", "bottom"):
        r = dsr_geom.ssr_scores(a, o, rel)
        assert not np.isnan(r).any() and np.all(np.abs(r) <= 1)
    assert dsr_geom.ssr_scores(a, o, "right")[1] == 1.0  # far right of the object
    d = dsr_geom.dsr_score(a, o, "L", "R")
    assert d is not None and 0.0 <= d <= 1.0
