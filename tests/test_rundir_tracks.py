"""The tracks reader (``spatialalign.rundir.tracks``) and ``dsr_geom.densify_tracks``.

The oracle is :func:`dense_by_dict`: the dense form built row by row with a dict, from
the table as ``pyarrow`` gives it (strings and all), for tables in any row order, with
rows of samples not asked for, all-NaN rows and several row groups. The scores made
from the dense arrays are checked against the official scorer in test_score_batch.py.
"""

from __future__ import annotations

import dsr_geom
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spatialalign.core.errors import SpatialAlignError
from spatialalign.rundir.tracks import read_tracks

BOXES = ("x0", "y0", "x1", "y1")


def random_tracks(rng: np.random.Generator, n_samples: int, n_frames: int) -> pa.Table:
    """Long rows of ``s0..s{n-1}`` in random order: misses, gaps, all-NaN rows."""
    cols: dict[str, list] = {k: [] for k in ("sample_id", "frame", "label", *BOXES)}
    for s in range(n_samples):
        frames = np.flatnonzero(rng.random(n_frames) < 0.9) + int(rng.integers(0, 3))
        for label in ("animal", "object"):
            for f in frames[rng.random(len(frames)) < 0.85]:
                x, y = rng.uniform(0, 800, 2)
                box = [np.nan] * 4 if rng.random() < 0.05 else [x, y, x + 30, y + 20]
                cols["sample_id"].append(f"s{s}")
                cols["frame"].append(int(f))
                cols["label"].append(label)
                for k, v in zip(BOXES, box, strict=True):
                    cols[k].append(v)
    table = pa.table(cols)
    table = table.append_column("score", pa.array(np.full(table.num_rows, 0.5)))
    return table.take(rng.permutation(table.num_rows))


def dense_by_dict(table: pa.Table, ids: list[str]):
    """(frames, animal, obj, offsets, n_rows, n_unknown) row by row."""
    rows = table.to_pylist()
    cells: dict[tuple[int, int], list] = {}
    n_rows = np.zeros(len(ids), np.int64)
    where = {s: i for i, s in enumerate(ids)}
    unknown = 0
    for r in rows:
        if r["sample_id"] not in where:
            unknown += 1
            continue
        box = [r[k] for k in BOXES]
        if all(np.isnan(box)):
            continue
        v = where[r["sample_id"]]
        n_rows[v] += 1
        cell = cells.setdefault((v, r["frame"]), [[np.nan] * 4, [np.nan] * 4])
        cell[r["label"] == "object"] = box
    keys = sorted(cells)
    frames = np.array([f for _, f in keys], np.int64)
    animal = np.array([cells[k][0] for k in keys], float).reshape(-1, 4)
    obj = np.array([cells[k][1] for k in keys], float).reshape(-1, 4)
    counts = np.bincount([v for v, _ in keys], minlength=len(ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return frames, animal, obj, offsets, n_rows, unknown


def assert_same(tracks, want) -> None:
    frames, animal, obj, offsets, n_rows, unknown = want
    np.testing.assert_array_equal(tracks.frames, frames)
    np.testing.assert_array_equal(tracks.animal, animal)  # NaN where NaN, values exact
    np.testing.assert_array_equal(tracks.obj, obj)
    np.testing.assert_array_equal(tracks.offsets, offsets)
    np.testing.assert_array_equal(tracks.n_rows, n_rows)
    assert tracks.n_unknown_rows == unknown
    assert tracks.frames.dtype == np.int64 and tracks.animal.dtype == np.float64
    assert tracks.animal.shape == (len(frames), 4) and tracks.animal.flags.c_contiguous


@pytest.mark.parametrize("seed", range(4))
def test_dense_arrays_equal_a_row_by_row_construction(tmp_path, seed) -> None:
    rng = np.random.default_rng(seed)
    table = random_tracks(rng, n_samples=30, n_frames=int(rng.integers(5, 60)))
    path = tmp_path / "tracks.parquet"
    pq.write_table(table, path, row_group_size=int(rng.integers(50, 400)))
    # some samples asked for have no rows, some rows are of samples not asked for
    ids = [f"s{i}" for i in rng.permutation(36)[:28]]
    tracks = read_tracks(path, pa.array(ids), progress=False)
    assert_same(tracks, dense_by_dict(table, ids))


def test_column_types_are_cast_like_the_schema_says(tmp_path) -> None:
    rng = np.random.default_rng(7)
    table = random_tracks(rng, n_samples=5, n_frames=30)
    ids = [f"s{i}" for i in range(5)]
    want = dense_by_dict(table, ids)
    cast = table.cast(
        pa.schema(
            [
                pa.field("sample_id", pa.large_string()),
                pa.field("frame", pa.int32()),
                pa.field("label", pa.large_string()),
                *[pa.field(k, pa.float32() if k == "x0" else pa.float64()) for k in BOXES],
                pa.field("score", pa.float64()),
            ]
        )
    )
    assert cast.column("frame").type == pa.int32()
    path = tmp_path / "tracks.parquet"
    pq.write_table(cast, path)
    tracks = read_tracks(path, pa.array(ids), progress=False)
    np.testing.assert_array_equal(tracks.frames, want[0])
    np.testing.assert_array_equal(tracks.animal[:, 1:], want[1][:, 1:])  # x0 lost bits
    np.testing.assert_allclose(tracks.animal[:, 0], want[1][:, 0], rtol=1e-6)


def test_empty_file_and_no_samples(tmp_path) -> None:
    path = tmp_path / "tracks.parquet"
    pq.write_table(random_tracks(np.random.default_rng(0), 3, 10).slice(0, 0), path)
    tracks = read_tracks(path, pa.array(["a", "b"]), progress=False)
    assert tracks.animal.shape == (0, 4)
    np.testing.assert_array_equal(tracks.offsets, [0, 0, 0])
    np.testing.assert_array_equal(tracks.n_rows, [0, 0])
    pq.write_table(random_tracks(np.random.default_rng(0), 3, 10), path)
    tracks = read_tracks(path, pa.array([], pa.string()), progress=False)
    assert tracks.offsets.tolist() == [0] and tracks.n_unknown_rows > 0


def test_null_ids_and_wrong_types_are_refused(tmp_path) -> None:
    path = tmp_path / "tracks.parquet"
    table = random_tracks(np.random.default_rng(1), 3, 10)
    nulls = table.set_column(0, "sample_id", pa.array([None] * table.num_rows, pa.string()))
    pq.write_table(nulls, path)
    with pytest.raises(SpatialAlignError, match="'sample_id'.*null"):
        read_tracks(path, pa.array(["s0"]), progress=False)
    numbers = table.set_column(0, "sample_id", pa.array(np.arange(table.num_rows)))
    pq.write_table(numbers, path)
    with pytest.raises(SpatialAlignError, match="'sample_id'.*expected string"):
        read_tracks(path, pa.array(["s0"]), progress=False)


def test_a_duplicate_is_named_by_its_sample_frame_and_label(tmp_path) -> None:
    rows = {
        "sample_id": ["b", "a", "b", "b"],
        "frame": [4, 1, 2, 2],
        "label": ["object", "animal", "object", "object"],
        **{k: [1.0, 1.0, 1.0, 2.0] for k in BOXES},
    }
    path = tmp_path / "tracks.parquet"
    pq.write_table(pa.table(rows), path)
    with pytest.raises(SpatialAlignError, match="more than one 'object' row at sample 'b' frame 2"):
        read_tracks(path, pa.array(["a", "b"]), progress=False)


def test_unknown_labels_are_named_even_on_rows_of_other_samples(tmp_path) -> None:
    rows = {
        "sample_id": ["a", "zz"],
        "frame": [0, 0],
        "label": ["animal", "Dog"],
        **{k: [1.0, 1.0] for k in BOXES},
    }
    path = tmp_path / "tracks.parquet"
    pq.write_table(pa.table(rows), path)
    with pytest.raises(SpatialAlignError, match="unknown label.*'Dog'"):
        read_tracks(path, pa.array(["a"]), progress=False)


def chunk(**overrides) -> dict:
    base = {
        "sample": np.array([0, 0], np.int32),
        "sample_map": np.array([0], np.int32),
        "label": np.array([0, 1], np.int32),
        "label_map": np.array([0, 1], np.int32),
        "frame": np.array([3, 3], np.int64),
        **{k: np.array([1.0, 2.0]) for k in BOXES},
    }
    return base | overrides


def test_densify_tracks_binding() -> None:
    out = dsr_geom.densify_tracks([chunk()], 1)
    assert out["frames"].tolist() == [3]
    assert out["animal"].tolist() == [[1.0] * 4] and out["obj"].tolist() == [[2.0] * 4]
    assert out["offsets"].tolist() == [0, 1] and out["n_rows"].tolist() == [2]
    assert out["n_unknown"] == 0
    # a bad row: the message, then (problem, row, video, frame, label) for the caller
    # (a duplicate's row is either of the two)
    with pytest.raises(ValueError) as e:
        dsr_geom.densify_tracks([chunk(label=np.array([1, 1], np.int32))], 1)
    problem, row, video, frame, label = e.value.args[1:]
    assert (problem, video, frame, label) == ("duplicate", 0, 3, 1) and row in (0, 1)
    with pytest.raises(ValueError, match="inverted"):
        dsr_geom.densify_tracks([chunk(x1=np.array([0.5, 2.0]))], 1)
    # wrong dtypes, strided arrays, indices outside their maps: errors, not crashes
    with pytest.raises(ValueError, match='"frame" must be a contiguous 1-D int64'):
        dsr_geom.densify_tracks([chunk(frame=np.array([3, 3], np.int32))], 1)
    with pytest.raises(ValueError, match="contiguous"):
        dsr_geom.densify_tracks([chunk(x0=np.array([1.0, 9.0, 2.0, 9.0])[::2])], 1)
    with pytest.raises(ValueError, match="out of range"):
        dsr_geom.densify_tracks([chunk(sample=np.array([0, 5], np.int32))], 1)
    with pytest.raises(ValueError, match="out of range"):
        dsr_geom.densify_tracks([chunk()], 0)  # sample_map names video 0 of none
    with pytest.raises(ValueError, match='no "y1"'):
        dsr_geom.densify_tracks([{k: v for k, v in chunk().items() if k != "y1"}], 1)
