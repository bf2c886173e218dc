"""A readable, fully vectorised numpy reference of the DSR-Score (a test oracle).

This module is the executable form of DESIGN.md, section "Scoring", with exactly the
API and semantics of the Rust core :mod:`dsr_geom` (DESIGN.md, "Python API of
``dsr_geom``"). Tests cross-check the two, and the
scoring benchmark times it; production code calls :mod:`dsr_geom`, which is an order of
magnitude faster (see docs/BENCHMARKS.md). It lives in ``tests/`` (it was
``spatialalign.scoring.reference``) because nothing in the package uses it.

Every step works on whole arrays (no Python loop over frames or videos):

1. validate all box rows at once (an all-NaN row is "not detected"; any other NaN or
   inf, or an inverted box, is a ``ValueError`` naming the first bad row);
2. compute the per-frame geometry and the SSR score of every frame;
3. rank the kept frames inside their video and reduce the first/last ``m`` of
   them per video with ``np.bincount``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "OFFICIAL_THRESHOLDS",
    "correctness_curve",
    "dsr_batch",
    "dsr_score",
    "parse_relation",
    "ssr_scores",
]

OFFICIAL_THRESHOLDS: npt.NDArray[np.float64] = np.arange(0, 1, 0.1)
"""The official Correctness@tau grid, ``np.arange(0, 1, 0.1)`` bit for bit (DESIGN.md)."""

# relation -> (axis, sign): the SSR score is sign * cos_axis * d_axis (DESIGN.md)
_AXIS = {"left": 0, "right": 0, "top": 1, "bottom": 1}
_SIGN = {"left": -1.0, "right": 1.0, "top": -1.0, "bottom": 1.0}
_NAMES = {"l": "left", "r": "right", "t": "top", "b": "bottom"}
_CODES = ("left", "right", "top", "bottom")

_Boxes = npt.ArrayLike
_Relations = str | Sequence[str]


def parse_relation(name: str, video: int | None = None) -> str:
    """Normalises ``left/right/top/bottom`` (any case) or ``L/R/T/B`` to the full name."""
    if isinstance(name, str):
        key = name.strip().lower()
        key = _NAMES.get(key, key)
        if key in _AXIS:
            return key
    where = f"video {video}: " if video is not None else ""
    raise ValueError(
        f"{where}unknown relation {name!r} (expected left/right/top/bottom or L/R/T/B)"
    )


def _relation_codes(rel: object, n_videos: int, what: str) -> npt.NDArray[np.int64]:
    """One relation code (index into ``_CODES``) per video; a single name is broadcast."""
    if isinstance(rel, str):
        return np.full(n_videos, _CODES.index(parse_relation(rel)), dtype=np.int64)
    try:
        items = list(rel)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of relation names") from None
    if not all(isinstance(s, str) for s in items):
        raise ValueError(f"{what} must be a sequence of relation names")
    return np.array([_CODES.index(parse_relation(s, v)) for v, s in enumerate(items)], np.int64)


def _boxes(x: _Boxes, name: str) -> npt.NDArray[np.float64]:
    """``x`` as a float64 ``[N, 4]`` array (float32 widens exactly, like the Rust core)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array of shape [N, 4]: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape [N, 4]")
    if arr.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape [N, 4] (x0, y0, x1, y1), got [{arr.shape[0]}, {arr.shape[1]}]"
        )
    return arr


def _check_params(m: int, min_frames: int) -> None:
    if m < 1:
        raise ValueError(f"m must be at least 1, got {m}")
    if min_frames < 0:
        raise ValueError(f"min_frames must be >= 0, got {min_frames}")


def _row_errors(
    boxes: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per row: (present, has NaN/inf but is not all-NaN, inverted)."""
    finite = np.isfinite(boxes).all(axis=1)
    missing = np.isnan(boxes).all(axis=1)
    non_finite = ~finite & ~missing
    inverted = finite & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    return finite, non_finite, inverted


def _validate_rows(
    animal: npt.NDArray[np.float64],
    obj: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64] | None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Returns (animal present, object present); raises for the first malformed row.

    The message names the row (and, in a batch, its video) exactly like the Rust
    core: the animal box of a row is checked before its object box.
    """
    a_ok, a_nan, a_inv = _row_errors(animal)
    o_ok, o_nan, o_inv = _row_errors(obj)
    bad = a_nan | a_inv | o_nan | o_inv
    if bad.any():
        row = int(np.argmax(bad))
        which = "animal" if (a_nan[row] or a_inv[row]) else "object"
        if a_nan[row] if which == "animal" else o_nan[row]:
            msg = (
                f"{which} box at row {row} has NaN or inf values "
                "(only an all-NaN row means 'not detected')"
            )
        else:
            msg = f"{which} box at row {row} has x1 < x0 or y1 < y0"
        if offsets is not None:
            video = int(np.searchsorted(offsets, row, side="right")) - 1
            msg = f"video {video}: {msg}"
        raise ValueError(msg)
    return a_ok, o_ok


def _frame_geometry(
    animal: npt.NDArray[np.float64], obj: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per frame: kept mask and the two signed axis terms ``cos_x*d_x``, ``cos_y*d_y``.

    DESIGN.md: centres, widths and heights; a frame is kept only if both boxes are
    present and ``w_a``, ``w_o`` and the mean width and height are all non-zero;
    ``v = c_a - c_o``; ``cos = v/|v|`` (0 when ``|v| = 0``);
    ``d = clip(|v| / mean extent, 0, 1)`` per axis.
    """
    a_cx = 0.5 * (animal[:, 0] + animal[:, 2])
    a_cy = 0.5 * (animal[:, 1] + animal[:, 3])
    o_cx = 0.5 * (obj[:, 0] + obj[:, 2])
    o_cy = 0.5 * (obj[:, 1] + obj[:, 3])
    w_a = animal[:, 2] - animal[:, 0]
    w_o = obj[:, 2] - obj[:, 0]
    w_mean = 0.5 * (w_a + w_o)
    h_mean = 0.5 * ((animal[:, 3] - animal[:, 1]) + (obj[:, 3] - obj[:, 1]))
    kept = present & (w_a != 0) & (w_o != 0) & (w_mean != 0) & (h_mean != 0)

    vx = a_cx - o_cx
    vy = a_cy - o_cy
    norm = np.sqrt(vx * vx + vy * vy)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the clip only matters when |v|^2 is subnormal (sqrt then loses precision)
        cos_x = np.where(norm == 0, 0.0, np.clip(vx / norm, -1.0, 1.0))
        cos_y = np.where(norm == 0, 0.0, np.clip(vy / norm, -1.0, 1.0))
        d_x = np.clip(np.abs(vx / w_mean), 0.0, 1.0)
        d_y = np.clip(np.abs(vy / h_mean), 0.0, 1.0)
    return kept, cos_x * d_x, cos_y * d_y


def _ssr(
    codes: npt.NDArray[np.int64], term_x: npt.NDArray[np.float64], term_y: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """SSR score per frame for per-frame relation codes: LEFT ``-cos_x·d_x``, RIGHT
    ``+cos_x·d_x``, TOP ``-cos_y·d_y``, BOTTOM ``+cos_y·d_y`` (DESIGN.md)."""
    sign = np.array([_SIGN[c] for c in _CODES])[codes]
    on_y = np.array([_AXIS[c] for c in _CODES], dtype=bool)[codes]
    return sign * np.where(on_y, term_y, term_x)


def ssr_scores(animal: _Boxes, obj: _Boxes, relation: str) -> npt.NDArray[np.float64]:
    """SSR score of ``relation`` for every frame; NaN where the frame is not kept."""
    code = _CODES.index(parse_relation(relation))
    a, o = _boxes(animal, "animal"), _boxes(obj, "obj")
    if len(a) != len(o):
        raise ValueError(
            f"object boxes vs animal boxes (rows): expected length {len(a)}, got {len(o)}"
        )
    a_ok, o_ok = _validate_rows(a, o, None)
    kept, tx, ty = _frame_geometry(a, o, a_ok & o_ok)
    r = _ssr(np.full(len(a), code), tx, ty)
    return np.where(kept, r, np.nan)


def _offsets(offsets: npt.ArrayLike, n_rows: int, n_videos: int) -> npt.NDArray[np.int64]:
    """Checks ``offsets``: 1-D integers, ``V+1`` entries, 0 first, non-decreasing, ``T`` last."""
    off = np.asarray(offsets)
    if off.ndim != 1 or off.dtype.kind not in "iu":
        raise ValueError("offsets must be a 1-D integer array of length V+1")
    off = off.astype(np.int64)
    if len(off) != n_videos + 1:
        raise ValueError(
            "offsets (need one entry more than there are videos, i.e. relations): "
            f"expected length {n_videos + 1}, got {len(off)}"
        )
    if off[0] != 0:
        raise ValueError(f"offsets[0]: must be 0, got {off[0]}")
    dec = np.flatnonzero(np.diff(off) < 0)
    if len(dec):
        i = int(dec[0]) + 1
        raise ValueError(f"offsets[{i}]: decreases ({off[i]} after {off[i - 1]})")
    if off[-1] != n_rows:
        raise ValueError(
            f"offsets[{n_videos}]: must equal the number of frames {n_rows}, got {off[-1]}"
        )
    return off


def dsr_batch(
    animal: _Boxes,
    obj: _Boxes,
    offsets: npt.ArrayLike,
    initial: _Relations,
    final: _Relations,
    *,
    m: int = 3,
    min_frames: int = 20,
) -> dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]]:
    """Scores ``V`` videos whose frames are concatenated; video ``v`` owns rows
    ``offsets[v]:offsets[v+1]``.

    DESIGN.md: over the K kept frames of a video (time order), invalid if
    ``K < min_frames``; ``r_init = mean(r_i[:m])``, ``r_final = mean(r_f[K-m:])``,
    ``g_init = (r_i[0] - r_i[K-1])/2``, ``g_final = (r_f[K-1] - r_f[0])/2``,
    ``DSR = (r_init + g_init + r_final + g_final)/8 + 0.5``. Returns float64 ``dsr``,
    ``r_init``, ``r_final``, ``g_init``, ``g_final`` (NaN where invalid) and int64 ``n_kept``.
    """
    _check_params(m, min_frames)
    off_len = np.asarray(offsets).shape[0] if np.ndim(offsets) == 1 else 0
    n_guess = max(off_len - 1, 0)
    ini = _relation_codes(initial, n_guess, "initial")
    fin = _relation_codes(final, n_guess, "final")
    a, o = _boxes(animal, "animal"), _boxes(obj, "obj")
    if len(a) != len(o):
        raise ValueError(
            f"object boxes vs animal boxes (rows): expected length {len(a)}, got {len(o)}"
        )
    n_videos = len(ini)
    if len(fin) != n_videos:
        raise ValueError(
            f"final relations vs initial relations: expected length {n_videos}, got {len(fin)}"
        )
    off = _offsets(offsets, len(a), n_videos)
    a_ok, o_ok = _validate_rows(a, o, off)

    # 1. per-frame geometry
    kept, tx, ty = _frame_geometry(a, o, a_ok & o_ok)

    # 2. the kept frames, their video and their rank inside the video
    video_of_row = np.repeat(np.arange(n_videos), np.diff(off))
    kidx = np.flatnonzero(kept)
    kvid = video_of_row[kidx]
    n_kept = np.bincount(kvid, minlength=n_videos).astype(np.int64)
    kstart = np.concatenate([[0], np.cumsum(n_kept)[:-1]]).astype(np.int64)
    rank = np.arange(len(kidx)) - kstart[kvid]
    k = np.minimum(m, n_kept)  # frames averaged at each end (all of them if K < m)

    # 3. SSR of each kept frame for its video's initial and final relation
    r_i = _ssr(ini[kvid], tx[kidx], ty[kidx])
    r_f = _ssr(fin[kvid], tx[kidx], ty[kidx])

    # 4. per-video reductions; bincount adds in time order, as numpy's mean does
    head = rank < k[kvid]
    tail = rank >= (n_kept - k)[kvid]
    valid = (n_kept > 0) & (n_kept >= min_frames)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_init = np.bincount(kvid[head], weights=r_i[head], minlength=n_videos) / k
        r_final = np.bincount(kvid[tail], weights=r_f[tail], minlength=n_videos) / k
    first = np.where(valid, kstart, 0)
    last = np.where(valid, kstart + n_kept - 1, 0)
    if len(kidx):
        g_init = 0.5 * (r_i[first] - r_i[last])
        g_final = 0.5 * (r_f[last] - r_f[first])
    else:
        g_init = g_final = np.zeros(n_videos)
    dsr = (r_init + g_init + r_final + g_final) / 8 + 0.5

    nan = np.nan
    return {
        "dsr": np.where(valid, dsr, nan),
        "r_init": np.where(valid, r_init, nan),
        "r_final": np.where(valid, r_final, nan),
        "g_init": np.where(valid, g_init, nan),
        "g_final": np.where(valid, g_final, nan),
        "n_kept": n_kept,
    }


def dsr_score(
    animal: _Boxes,
    obj: _Boxes,
    initial: str,
    final: str,
    *,
    m: int = 3,
    min_frames: int = 20,
) -> float | None:
    """DSR score of one video, or ``None`` when it has fewer than ``min_frames`` kept frames."""
    if not isinstance(initial, str) or not isinstance(final, str):
        raise ValueError("initial and final must be relation names")
    n = len(_boxes(animal, "animal"))
    out = dsr_batch(animal, obj, [0, n], [initial], [final], m=m, min_frames=min_frames)
    d = float(out["dsr"][0])
    return None if np.isnan(d) else d


def _floats_1d(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of numbers")
    return arr


def correctness_curve(
    dsr: npt.ArrayLike, thresholds: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]:
    """Correctness@tau per threshold: valid videos with DSR >= tau over ALL videos
    (NaN DSR = invalid, counted in the denominator). Defaults to the official grid;
    NaN for an empty ``dsr`` (DESIGN.md)."""
    d = _floats_1d(dsr, "dsr")
    th = OFFICIAL_THRESHOLDS if thresholds is None else _floats_1d(thresholds, "thresholds")
    if not np.isfinite(th).all():
        raise ValueError(f"thresholds: threshold {int(np.argmin(np.isfinite(th)))} is not finite")
    if np.isinf(d).any():
        i = int(np.argmax(np.isinf(d)))
        raise ValueError(f"dsr: value {i} is infinite (use NaN for invalid videos)")
    valid = d[~np.isnan(d)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (valid[:, None] >= th[None, :]).sum(axis=0) / len(d)
