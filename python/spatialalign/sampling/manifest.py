"""``samples/manifest.parquet``: which video belongs to which prompt and seed.

Columns (DESIGN.md): sample_id, prompt_id, seed, model, adapter, path, num_frames, fps,
height, width. ``path`` is the absolute path of the video, so later stages open it without
guessing a base directory; ``adapter`` is ``""`` for the base model. Rows are keyed by
``sample_id``: merging keeps one row per sample, the newest winning.

Sampling workers (one per rank) never write the manifest directly: each appends to its
own *part* under ``samples/.manifest-parts/``; :func:`merge_parts` folds parts into the
manifest under a file lock. A killed run leaves at worst a part and some finished
videos, both of which the next run merges back in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from spatialalign.io import read_parquet, write_parquet
from spatialalign.schemas import MANIFEST, validate_table

MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST.names)
SAMPLES_DIR = "samples"
MANIFEST_NAME = "manifest.parquet"
PARTS_DIR = ".manifest-parts"

Row = dict[str, Any]


def samples_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN_DIR/samples``: where videos and the manifest live."""
    return Path(run_dir) / SAMPLES_DIR


def manifest_path(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN_DIR/samples/manifest.parquet``."""
    return samples_dir(run_dir) / MANIFEST_NAME


def part_path(run_dir: str | os.PathLike[str], rank: int) -> Path:
    """The manifest part written by worker ``rank``."""
    return samples_dir(run_dir) / PARTS_DIR / f"rank{rank:05d}.parquet"


def manifest_table(rows: Sequence[Row]) -> pa.Table:
    """The manifest table of ``rows`` (dicts with the manifest columns), typed per the schema."""
    return pa.Table.from_pylist([{c: r.get(c) for c in MANIFEST_COLUMNS} for r in rows], MANIFEST)


def read_manifest(path: str | os.PathLike[str]) -> pa.Table:
    """Reads and validates a manifest file (or ``RUN_DIR``'s manifest when given a directory)."""
    path = Path(path)
    if path.is_dir():
        path = manifest_path(path)
    return validate_table(read_parquet(path, "manifest"), "manifest", path)


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """The rows of a manifest or part file; ``[]`` when it does not exist."""
    if not Path(path).is_file():
        return []
    return read_manifest(path).select(list(MANIFEST_COLUMNS)).to_pylist()


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
def manifest_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive lock (``flock``) that serialises manifest merges between processes."""
    lock = samples_dir(run_dir) / ".manifest.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def part_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Every manifest part currently on disk, in rank order."""
    parts = samples_dir(run_dir) / PARTS_DIR
    return sorted(parts.glob("rank*.parquet")) if parts.is_dir() else []


def merge_parts(
    run_dir: str | os.PathLike[str],
    *,
    extra_rows: Iterable[Row] = (),
    delete: Iterable[Path] | None = None,
) -> list[Row]:
    """Folds every part (and ``extra_rows``) into the manifest, under :func:`manifest_lock`.

    Rows whose video no longer exists are dropped, so the manifest always lists files
    that are there. ``delete`` names the parts to remove after the merge (default: all
    of them); a worker that may still be writing keeps its part until it merges itself.
    Returns the merged rows.
    """
    with manifest_lock(run_dir):
        path = manifest_path(run_dir)
        parts = part_files(run_dir)
        rows = merge_rows(read_rows(path), *(read_rows(p) for p in parts), extra_rows)
        rows = [r for r in rows if r["path"] and Path(r["path"]).is_file()]
        if rows or path.exists():
            write_rows(rows, path)
        for part in parts if delete is None else delete:
            Path(part).unlink(missing_ok=True)
    return rows
