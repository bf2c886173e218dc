"""The reader of a run's ``tracks.parquet``: long rows -> dense per-sample arrays.

``tracks.parquet`` (written by ``track``) has one row per sample, frame and label (an
absent row, or an all-NaN box, means "not detected"); scoring, evaluation and the
report want, per sample, its frames in time order with one animal and one object box
each (NaN where that label is missing): :class:`Tracks`.

The file is read with its id columns dictionary-encoded (Arrow keeps Parquet's
dictionaries; no string per row is ever built), the numeric columns are handed over
as numpy views of the Arrow buffers, and :func:`dsr_geom.densify_tracks` (Rust, GIL
released) checks and densifies them: reading costs about what reading the file does
(``scripts/bench_score_batch.py``, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dsr_geom
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.schemas import validate_table

LABELS = ("animal", "object")
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
_ID_COLUMNS = ("sample_id", "label")
_COLUMNS = ("sample_id", "frame", "label", *BOX_COLUMNS)
# a progress bar (one step a row group) shows from this many rows on
_PROGRESS_MIN_ROWS = 2_000_000


@dataclass
class Tracks:
    """Dense per-sample boxes: rows ``offsets[i]:offsets[i+1]`` belong to sample ``i``.

    ``frames`` holds each row's frame index (sorted within a sample); ``animal`` and
    ``obj`` are ``[T, 4]`` xyxy with an all-NaN row where that label is absent.
    """

    frames: np.ndarray
    animal: np.ndarray
    obj: np.ndarray
    offsets: np.ndarray
    n_rows: np.ndarray  # tracks rows per sample (0: the sample has no tracks)
    n_unknown_rows: int = 0  # rows whose sample_id is not in the manifest (ignored)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return self.frames[s], self.animal[s], self.obj[s]


def read_tracks(
    path: str | os.PathLike[str], sample_ids: pa.Array, *, progress: bool | None = None
) -> Tracks:
    """Loads ``tracks.parquet`` into dense per-sample arrays ordered like ``sample_ids``.

    Rows of other samples are counted (``n_unknown_rows``) and ignored. Raises
    :class:`SpatialAlignError` on a missing/corrupt file, unknown labels, duplicate
    (sample, frame, label) rows, partly missing or inverted boxes, or negative frames,
    naming the sample and frame.
    """
    return densify(path, read_tracks_table(path, progress=progress), sample_ids)


def read_tracks_table(path: str | os.PathLike[str], *, progress: bool | None = None) -> pa.Table:
    """The first half of :func:`read_tracks`, which needs no sample ids: the columns it
    uses, ids dictionary-encoded, numbers of the schema's types. Arrow reads with the GIL
    released, so a caller can read the manifest meanwhile (``score-batch`` does)."""
    path = Path(path)
    table = _read_columns(path, progress)
    _refuse_unknown_labels(path, table.column("label"))
    return table


def densify(path: str | os.PathLike[str], table: pa.Table, sample_ids: pa.Array) -> Tracks:
    """The second half of :func:`read_tracks`: :func:`read_tracks_table`'s ``table`` (read
    from ``path``, which errors name) densified for ``sample_ids``."""
    path = Path(path)
    if isinstance(sample_ids, pa.ChunkedArray):
        sample_ids = sample_ids.combine_chunks()
    sample_ids = sample_ids.cast(pa.string())
    labels = pa.array(LABELS)
    chunks = []
    for batch in table.to_batches():
        sample, label = batch.column("sample_id"), batch.column("label")
        chunks.append(
            {
                "sample": sample.indices.to_numpy(),
                "sample_map": _code(sample.dictionary, sample_ids),
                "label": label.indices.to_numpy(),
                "label_map": _code(label.dictionary, labels),
                "frame": batch.column("frame").to_numpy(),
                **{c: batch.column(c).to_numpy() for c in BOX_COLUMNS},
            }
        )
    try:
        dense = dsr_geom.densify_tracks(chunks, len(sample_ids))
    except ValueError as e:
        raise SpatialAlignError(_row_message(path, e, sample_ids)) from None
    return Tracks(
        frames=dense["frames"],
        animal=dense["animal"],
        obj=dense["obj"],
        offsets=dense["offsets"],
        n_rows=dense["n_rows"],
        n_unknown_rows=dense["n_unknown"],
    )


def _read_columns(path: Path, progress: bool | None) -> pa.Table:
    """The columns scoring needs, ids dictionary-encoded, numbers as the schema types."""
    if not path.is_file():
        raise SpatialAlignError(f"tracks file not found: {path}")
    try:
        pf = pq.ParquetFile(path, read_dictionary=list(_ID_COLUMNS))
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise SpatialAlignError(f"cannot read tracks {path}: {e}") from e
    missing = [c for c in _COLUMNS if c not in schema.names]
    if missing:
        raise SpatialAlignError(
            f"{path}: not a valid tracks table: missing column(s) {', '.join(missing)}"
        )
    total = pf.metadata.num_rows
    show = total >= _PROGRESS_MIN_ROWS if progress is None else progress
    parts = []
    with tqdm(total=total, unit="row", desc="loading tracks", disable=not show) as bar:
        for i in range(pf.num_row_groups):
            try:
                part = pf.read_row_group(i, columns=list(_COLUMNS))
            except (pa.ArrowException, OSError) as e:
                raise SpatialAlignError(f"cannot read tracks {path}: {e}") from e
            parts.append(part)
            bar.update(part.num_rows)
    table = pa.concat_tables(parts) if parts else schema.empty_table().select(list(_COLUMNS))
    # numbers: cast to the schema's types where that loses nothing, nulls refused
    table = validate_table(table, "tracks", path, columns=["frame", *BOX_COLUMNS])
    for name in _ID_COLUMNS:
        column = table.column(name)
        if not (pa.types.is_dictionary(column.type) and column.type.value_type == pa.string()):
            column = validate_table(table.select([name]), "tracks", path, columns=[name]).column(0)
            column = column.dictionary_encode()
        elif column.null_count:
            raise SpatialAlignError(
                f"{path}: column {name!r} of the tracks table has {column.null_count} null value(s)"
            )
        if column.type.index_type != pa.int32():
            column = column.cast(pa.dictionary(pa.int32(), pa.string()))
        table = table.set_column(table.column_names.index(name), name, column)
    return table


def _code(dictionary: pa.Array, values: pa.Array) -> np.ndarray:
    """Each dictionary entry's position in ``values`` (-1: not there), as int32."""
    found = pc.index_in(dictionary, value_set=values).fill_null(-1)
    return found.to_numpy().astype(np.int32, copy=False)


def _refuse_unknown_labels(path: Path, labels: pa.ChunkedArray) -> None:
    """Names up to five labels other than animal/object that rows use."""
    if all(pc.all(pc.is_in(c.dictionary, pa.array(LABELS))).as_py() for c in labels.chunks):
        return  # every dictionary entry is known (a common, cheap check)
    decoded = labels.cast(pa.string())
    bad = pc.unique(pc.filter(decoded, pc.invert(pc.is_in(decoded, pa.array(LABELS)))))
    if len(bad):
        raise SpatialAlignError(
            f"{path}: unknown label(s) {', '.join(map(repr, bad.to_pylist()[:5]))} "
            f"(expected 'animal' or 'object')"
        )


def _row_message(path: Path, error: ValueError, sample_ids: pa.Array) -> str:
    """The message of a row densify_tracks refused, naming its sample and frame."""
    if len(error.args) != 6:
        return f"{path}: {error}"
    message, problem, _row, video, frame, label = error.args
    if video is None:
        return f"{path}: {message}"
    where = f"sample {sample_ids[video].as_py()!r} frame {frame}"
    if problem == "non_finite":
        return f"{path}: non-finite box coordinates at {where}"
    if problem == "inverted":
        return f"{path}: inverted box (x1 < x0 or y1 < y0) at {where}"
    if problem == "negative_frame":
        return f"{path}: negative frame index at {where}"
    if problem == "duplicate":
        return f"{path}: more than one {LABELS[label]!r} row at {where}"
    return f"{path}: {message} at {where}"
