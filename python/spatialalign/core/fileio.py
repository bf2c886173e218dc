"""Files between stages: atomic writes and Parquet/JSON helpers with clear errors.

Every stage writes through :func:`atomic_path` (write to a temporary name in the
same directory, then ``os.replace``), so a killed run never leaves a half-written
file under the final name, and a rerun can trust whatever exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spatialalign.core.errors import SpatialAlignError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give outputs normal permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Writes ``table`` atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_parquet(path: str | os.PathLike[str], what: str | None = None) -> pa.Table:
    """Reads a Parquet file; missing or corrupt files raise :class:`SpatialAlignError`."""
    path = Path(path)
    label = f"{what} " if what else ""
    if not path.is_file():
        raise SpatialAlignError(f"{label}file not found: {path}")
    try:
        # one open file: another process may atomically replace ``path`` meanwhile (a
        # sampling worker rewriting its manifest part), and reading by name opens it more
        # than once (footer, then pages), which can mix the old file with the new one
        with open(path, "rb") as f:
            return pq.read_table(f)
    except (pa.ArrowException, OSError) as e:
        raise SpatialAlignError(f"cannot read {label}{path}: {e}") from e


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Reads JSON; missing or corrupt files raise :class:`SpatialAlignError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise SpatialAlignError(f"file not found: {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpatialAlignError(f"cannot read {path}: {e}") from e


@contextlib.contextmanager
def exclusive_lock(
    path: str | os.PathLike[str], holder: str, where: str | os.PathLike[str]
) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` for the block, or fails at once.

    Two processes working on one directory (two trains on a run, two loops on a loop)
    would interleave their writes, so the second one raises :class:`SpatialAlignError`
    ("another train is running on RUN (pid 1234)"): the lock file holds the holder's
    ``pid`` and ``holder`` (what it is doing) while it is held. The kernel releases the
    lock when the holder exits, however it exits, so a killed run never leaves a stale
    lock behind (the file stays; its content is only read while someone holds it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid, _, what = f.read().strip().partition(" ")
            pid = pid if pid.isdigit() else "unknown"
            raise SpatialAlignError(
                f"another {what or holder} is running on {where} (pid {pid})"
            ) from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()} {holder}\n")
            f.flush()
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
