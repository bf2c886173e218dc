"""Tolerances for comparing results across code paths, batch shapes and processes.

The rule (tests/README.md): bit equality only where the same process runs the same code
path on the same inputs; everywhere else a tolerance derived from the dtype and the size
of the computation, plus, where the claim is "the same result", equality of what the user
sees downstream (verdicts, scores).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FLOAT32_NET = {"rtol": 1e-5, "atol": 1e-5}
"""float32 outputs of a few network layers computed by two code paths (orderings of the
same sums): one rounding is 2^-23 ~ 1.2e-7, reordered reductions of up to ~1e4 terms and a
few layers stay well under 1e-5; a wrong weight, scale or mask moves outputs by >1e-3."""

BF16 = {"rtol": 1.6e-2, "atol": 1e-5}
"""bfloat16 values: one unit in the last place is 2^-7 relative."""

VIDEO_MAX_LEVELS = 2
VIDEO_MEAN_LEVELS = 0.02
LOSSY_VIDEO = {"max_levels": 24, "mean_levels": 0.5}
"""Videos through lossy H.264 (yuv420p, crf 18) from inputs that may differ by a level: the
encoder's decisions move with its input, so a one-level change can become several levels
near it (once seen: 12); another seed of the tiny Wan differs by ~6 levels on average."""


def assert_videos_close(
    got: np.ndarray,
    want: np.ndarray,
    *,
    max_levels: int = VIDEO_MAX_LEVELS,
    mean_levels: float = VIDEO_MEAN_LEVELS,
    what: str = "video",
) -> None:
    """uint8 videos decoded from two code paths agree to ``max_levels`` per pixel and
    ``mean_levels`` on average: a float frame that differs in its last bits crosses a
    rounding boundary now and then (one level), never wholesale."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype == np.uint8, f"{what}: dtypes {got.dtype}, {want.dtype}"
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    worst, mean = int(diff.max()), float(diff.mean())
    assert worst <= max_levels and mean <= mean_levels, (
        f"{what}: max |a-b| {worst} levels (<= {max_levels}), mean {mean:.4f} (<= {mean_levels}); "
        f"{int((diff > 0).sum())} of {diff.size} values differ"
    )


def assert_same_verdicts(
    got: Sequence[Mapping], want: Sequence[Mapping], *, dsr_atol: float = 1e-6
) -> None:
    """Two score tables (rows with sample_id, valid, reason, dsr) give the user the same
    result: the same samples, the same valid/invalid verdict and reason for each, and DSR
    within ``dsr_atol`` where valid."""
    a = {r["sample_id"]: r for r in got}
    b = {r["sample_id"]: r for r in want}
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    for sid in sorted(a):
        ra, rb = a[sid], b[sid]
        assert bool(ra["valid"]) == bool(rb["valid"]), (sid, ra, rb)
        assert (ra.get("reason") or "") == (rb.get("reason") or ""), (sid, ra, rb)
        if ra["valid"]:
            assert abs(ra["dsr"] - rb["dsr"]) <= dsr_atol, (sid, ra["dsr"], rb["dsr"])


def assert_rows_close(
    got: Sequence[Mapping], want: Sequence[Mapping], *, atol: float, keys: Sequence[str]
) -> None:
    """Row-aligned tables (same length, sorted the same way) agree exactly on ``keys``
    (ids, labels, frame numbers) and within ``atol`` on every other numeric column
    (NaN equals NaN)."""
    assert len(got) == len(want), (len(got), len(want))
    for ra, rb in zip(got, want, strict=True):
        assert ra.keys() == rb.keys(), (ra, rb)
        for k in ra:
            x, y = ra[k], rb[k]
            if k in keys or not isinstance(x, float | int) or isinstance(x, bool):
                assert x == y or (x != x and y != y), (k, ra, rb)
            else:
                assert np.isclose(x, y, rtol=0, atol=atol, equal_nan=True), (k, ra, rb)
