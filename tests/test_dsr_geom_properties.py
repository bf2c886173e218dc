"""Property tests: the Rust core equals the numpy reference and the official-style loop.

Hypothesis draws the shape of a batch (number and length of videos, how often boxes
are missing or degenerate, integer or float coordinates, relations, m, min_frames)
and a seed; numpy then draws the boxes. Small integer grids make the degenerate
cases of DESIGN.md frequent: zero widths, zero mean heights, coincident centres.
"""

from __future__ import annotations

import dsr_geom
import numpy as np
import official_scorer as official
import reference_scorer as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ("dsr", "r_init", "r_final", "g_init", "g_final")


def random_boxes(rng: np.random.Generator, n: int, grid: bool, p_zero: float) -> np.ndarray:
    """``n`` valid xyxy boxes; integer grid or floats; some zero widths/heights."""
    if grid:
        x0 = rng.integers(0, 12, n).astype(float)
        y0 = rng.integers(0, 12, n).astype(float)
        w = rng.integers(0, 5, n).astype(float)
        h = rng.integers(0, 5, n).astype(float)
    else:
        x0, y0 = rng.uniform(-50, 850, n), rng.uniform(-50, 500, n)
        w, h = rng.uniform(0, 300, n), rng.uniform(0, 300, n)
        w[rng.random(n) < p_zero] = 0.0
        h[rng.random(n) < p_zero] = 0.0
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def random_batch(rng, n_videos, max_len, p_missing, p_zero, grid, letters):
    lengths = rng.integers(0, max_len + 1, n_videos)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    t = int(offsets[-1])
    a = random_boxes(rng, t, grid, p_zero)
    o = random_boxes(rng, t, grid, p_zero)
    same = rng.random(t) < 0.05  # coincident boxes: |v| = 0
    a[same] = o[same]
    a[rng.random(t) < p_missing] = np.nan
    o[rng.random(t) < p_missing / 2] = np.nan
    ini = [str(x) for x in rng.choice(list(letters), n_videos)]
    fin = [str(x) for x in rng.choice(list(letters), n_videos)]
    return a, o, offsets, ini, fin


batch_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "n_videos": st.integers(0, 12),
        "max_len": st.integers(0, 40),
        "p_missing": st.sampled_from([0.0, 0.1, 0.4, 1.0]),
        "p_zero": st.sampled_from([0.0, 0.1, 0.5]),
        "grid": st.booleans(),
        "m": st.integers(1, 6),
        "min_frames": st.integers(0, 25),
    }
)


def draw_batch(p, letters="LRTB"):
    rng = np.random.default_rng(p["seed"])
    return random_batch(
        rng, p["n_videos"], p["max_len"], p["p_missing"], p["p_zero"], p["grid"], letters
    )


def assert_same(got: dict, want: dict, tol: float = 1e-9) -> None:
    np.testing.assert_array_equal(got["n_kept"], want["n_kept"])
    for k in KEYS:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=tol, err_msg=k)
        np.testing.assert_array_equal(np.isnan(got[k]), np.isnan(want[k]), err_msg=k)


@SETTINGS
@given(batch_params, st.sampled_from(["float64", "float32"]))
def test_rust_equals_reference(p, dtype):
    a, o, offsets, ini, fin = draw_batch(p)
    a, o = a.astype(dtype), o.astype(dtype)
    kw = {"m": p["m"], "min_frames": p["min_frames"]}
    got = dsr_geom.dsr_batch(a, o, offsets, ini, fin, **kw)
    want = reference.dsr_batch(a, o, offsets, ini, fin, **kw)
    assert_same(got, want)
    # per video, dsr_score agrees with the batch
    for v in range(len(ini)):
        s, e = offsets[v], offsets[v + 1]
        d = dsr_geom.dsr_score(a[s:e], o[s:e], ini[v], fin[v], **kw)
        assert (d is None) == bool(np.isnan(got["dsr"][v]))
        if d is not None:
            assert d == got["dsr"][v]
            assert 0.0 <= d <= 1.0
    # per frame SSR, every relation
    for rel in ("left", "right", "top", "bottom"):
        r = dsr_geom.ssr_scores(a, o, rel)
        np.testing.assert_allclose(r, reference.ssr_scores(a, o, rel), rtol=0, atol=1e-9)
        assert np.all(np.isnan(r) | ((r >= -1) & (r <= 1)))


@SETTINGS
@given(batch_params)
def test_rust_equals_official_loop(p):
    a, o, offsets, ini, fin = draw_batch(p, letters="LRT")
    kw = {"m": p["m"], "min_frames": p["min_frames"]}
    got = dsr_geom.dsr_batch(a, o, offsets, ini, fin, **kw)
    rewards = []
    for v in range(len(ini)):
        s, e = offsets[v], offsets[v + 1]
        frames = official.frames_from_arrays(a[s:e], o[s:e], "cat", "bench")
        r = official.official_video_reward(frames, "cat", "bench", ini[v] + fin[v], **kw)
        rewards.append(r)
        if r == official.INVALID_REWARD:
            assert np.isnan(got["dsr"][v])
        else:
            assert abs(got["dsr"][v] - r) <= 1e-12
    # invalid = NaN for us, -100 for the official scripts: same correctness curve
    np.testing.assert_allclose(
        dsr_geom.correctness_curve(got["dsr"]) if rewards else [],
        official.official_correctness(rewards) if rewards else [],
        rtol=0,
        atol=1e-15,
    )


@SETTINGS
@given(
    st.lists(
        st.one_of(st.floats(0, 1), st.just(float("nan"))),
        min_size=1,
        max_size=60,
    )
)
def test_correctness_curve_equals_official(dsr):
    d = np.array(dsr)
    rewards = np.where(np.isnan(d), official.INVALID_REWARD, d)
    want = official.official_correctness(rewards)
    assert dsr_geom.correctness_curve(d).tolist() == want
    assert reference.correctness_curve(d).tolist() == want


@SETTINGS
@given(
    batch_params,
    st.sampled_from(["partial_nan", "inf", "neg_inf", "inverted_x", "inverted_y"]),
    st.sampled_from(["animal", "object"]),
    st.integers(0, 10_000),
    st.sampled_from(["float64", "float32"]),
)
def test_malformed_rows_raise_the_same_error(p, kind, which, pos, dtype):
    a, o, offsets, ini, fin = draw_batch(p)
    if len(a) == 0:
        return
    row = pos % len(a)
    boxes = a if which == "animal" else o
    b = [0.0, 0.0, 10.0, 10.0]
    if kind == "partial_nan":
        b[pos % 4] = np.nan
    elif kind == "inf":
        b[pos % 4] = np.inf
    elif kind == "neg_inf":
        b[pos % 4] = -np.inf
    elif kind == "inverted_x":
        b[0] = 11.0
    else:
        b[1] = 11.0
    boxes[row] = b
    a, o = a.astype(dtype), o.astype(dtype)
    kw = {"m": p["m"], "min_frames": p["min_frames"]}
    errors = []
    for impl in (dsr_geom, reference):
        try:
            impl.dsr_batch(a, o, offsets, ini, fin, **kw)
        except ValueError as e:
            errors.append(str(e))
    assert len(errors) == 2, errors
    assert errors[0] == errors[1]
    video = int(np.searchsorted(offsets, row, side="right")) - 1
    assert errors[0].startswith(f"video {video}: {which} box at row {row} ")
