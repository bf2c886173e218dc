"""``samples/manifest.parquet``: which video belongs to which prompt and seed, and what made it.

Columns (DESIGN.md): sample_id, prompt_id, seed, model, adapter, path, num_frames, fps,
height, width. ``path`` is relative to the run directory for videos inside it (so a run
directory can be moved) and absolute for videos referenced elsewhere (``ingest``);
:meth:`~spatialalign.rundir.layout.RunDir.read_manifest` resolves both. ``adapter`` is ``""``
for the base model. Rows are keyed by ``sample_id``: merging keeps one row per sample,
the newest winning. Each row's provenance (what ``sample`` or ``ingest`` made it from:
prompt text, seed, model, adapter and settings, the video's content fingerprint) is a
dict under the row key ``"provenance"``, stored in the file's schema metadata as
``{"samples": {sample_id: provenance}}``.

Sampling workers (one per rank) never write the manifest directly: each appends to its
own *part* (:meth:`RunDir.manifest_part_path`); :func:`merge_manifest_parts` folds parts
into the manifest under a file lock. A killed run leaves at worst a part and some
finished videos, both of which the next run merges back in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.provenance import record_of, with_record
from spatialalign.core.schemas import MANIFEST
from spatialalign.rundir.layout import SAMPLE_RECORDS, RunDir, check_manifest

MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST.names)
PROVENANCE = "provenance"
"""Row key of a sample's provenance dict (kept in the file's schema metadata)."""

Row = dict[str, Any]


def manifest_table(rows: Sequence[Row]) -> pa.Table:
    """The manifest table of ``rows`` (dicts with the manifest columns), typed per the schema,
    with the rows' provenance in the schema metadata."""
    table = pa.Table.from_pylist([{c: r.get(c) for c in MANIFEST_COLUMNS} for r in rows], MANIFEST)
    samples = {r["sample_id"]: r[PROVENANCE] for r in rows if r.get(PROVENANCE)}
    return with_record(table, {"stage": "manifest", SAMPLE_RECORDS: samples})


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """The rows (paths as stored) of a manifest or part file, with their provenance;
    ``[]`` when the file does not exist."""
    if not Path(path).is_file():
        return []
    table = check_manifest(read_parquet(path, "manifest"), path)
    samples = (record_of(table) or {}).get(SAMPLE_RECORDS) or {}
    rows = table.select(list(MANIFEST_COLUMNS)).to_pylist()
    for r in rows:
        if isinstance(samples.get(r["sample_id"]), dict):
            r[PROVENANCE] = samples[r["sample_id"]]
    return rows


def merge_rows(*row_lists: Iterable[Row]) -> list[Row]:
    """One row per sample_id (a later list wins), sorted by prompt_id, seed, sample_id."""
    merged: dict[str, Row] = {}
    for rows in row_lists:
        for row in rows:
            merged[row["sample_id"]] = row
    return sorted(merged.values(), key=lambda r: (r["prompt_id"], r["seed"], r["sample_id"]))


def write_rows(rows: Sequence[Row], path: str | os.PathLike[str]) -> Path:
    """Writes ``rows`` as a manifest (or part) file, atomically."""
    return write_parquet(manifest_table(rows), path)


@contextlib.contextmanager
def manifest_lock(run: RunDir) -> Iterator[None]:
    """An exclusive lock (``flock``) that serialises manifest merges between processes."""
    lock = run.manifest_lock_path
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def part_files(run: RunDir) -> list[Path]:
    """Every manifest part currently on disk, in rank order."""
    parts = run.manifest_parts_dir
    return sorted(parts.glob("rank*.parquet")) if parts.is_dir() else []


def existing_rows(run: RunDir) -> dict[str, Row]:
    """sample_id -> row over the manifest and every part (parts win)."""
    rows = merge_rows(read_rows(run.manifest_path), *map(read_rows, part_files(run)))
    return {r["sample_id"]: r for r in rows}


def merge_manifest_parts(
    run: RunDir,
    *,
    extra_rows: Iterable[Row] = (),
    delete: Iterable[Path] | None = None,
    prompt_ids: Collection[str] | None = None,
) -> list[Row]:
    """Folds every part (and ``extra_rows``) into the manifest, under :func:`manifest_lock`.

    Rows whose video no longer exists are dropped, so the manifest always lists files
    that are there, and so are rows of prompts not in ``prompt_ids`` (when given: the
    run's prompts file was replaced, e.g. ``prompts --force``; their videos stay on
    disk). ``delete`` names the parts to remove after the merge (default: all of them);
    a worker that may still be writing keeps its part until it merges itself. Returns
    the merged rows.
    """
    with manifest_lock(run):
        path = run.manifest_path
        parts = part_files(run)
        rows = merge_rows(read_rows(path), *(read_rows(p) for p in parts), extra_rows)
        rows = [r for r in rows if (v := run.resolve_video(r["path"])) and v.is_file()]
        if prompt_ids is not None:
            rows = [r for r in rows if r["prompt_id"] in prompt_ids]
        if rows or path.exists():
            write_rows(rows, path)
        for part in parts if delete is None else delete:
            Path(part).unlink(missing_ok=True)
    return rows
