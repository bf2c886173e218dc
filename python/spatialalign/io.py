"""Files between stages: atomic writes and Parquet/JSON helpers with clear errors.

Every stage writes through :func:`atomic_path` (write to a temporary name in the
same directory, then ``os.replace``), so a killed run never leaves a half-written
file under the final name, and a rerun can trust whatever exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spatialalign.errors import SpatialAlignError

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
        return pq.read_table(path)
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
