"""What a file was made from: content fingerprints, Parquet metadata records, and why to redo.

Every stage writes, next to its results, a JSON record of its inputs and settings
(in the Parquet schema metadata under :data:`METADATA_KEY`, or in an mp4's ``comment``
tag for videos). A rerun compares the record with what it would use now and redoes
exactly the items that differ, naming the difference (:func:`explain_change`).

Content fingerprints (:func:`fingerprint`) identify a file by what it holds, not by
where it is or when it was written, so moving or copying a run directory keeps its work:
files up to :data:`FULL_HASH_BYTES` are hashed whole (blake2b), larger ones by their
size plus the first, middle and last MiB (model weights: a few reads per shard). A
directory's fingerprint covers every non-hidden file in it (relative name + content
fingerprint). :class:`StampedFingerprint` adds ``(size, mtime_ns)`` so that a rerun
re-hashes only files whose stat changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"spatialalign"
"""Parquet schema metadata key holding a file's provenance record (JSON)."""
FULL_HASH_BYTES = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
MISSING = "missing"
"""The fingerprint of a path that does not exist."""


def _file_fingerprint(path: Path, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        else:
            for offset in (0, size // 2, size - _CHUNK):
                f.seek(offset)
                h.update(f.read(_CHUNK))
    return f"{size}:{h.hexdigest()}"


def fingerprint(path: str | os.PathLike[str] | None) -> str:
    """Content fingerprint of a file or directory (``"missing"`` when absent)."""
    if path is None or str(path) == "":
        return MISSING
    path = Path(path)
    try:
        if path.is_file():
            return _file_fingerprint(path, path.stat().st_size)
        if not path.is_dir():
            return MISSING
        h = hashlib.blake2b(digest_size=16)
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = item.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            h.update(f"{rel.as_posix()}\0{_file_fingerprint(item, item.stat().st_size)}\n".encode())
        return f"dir:{h.hexdigest()}"
    except OSError:
        return MISSING


@dataclass(frozen=True)
class StampedFingerprint:
    """A file's content fingerprint plus the stat it was taken at (to skip re-hashing)."""

    fingerprint: str
    size: int = -1
    mtime_ns: int = -1

    @classmethod
    def of(cls, path: str | os.PathLike[str], known: StampedFingerprint | None = None):
        """Fingerprints ``path``; reuses ``known`` when its size and mtime are unchanged."""
        try:
            st = Path(path).stat()
        except (OSError, ValueError):
            return cls(MISSING)
        if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return known
        return cls(fingerprint(path), st.st_size, st.st_mtime_ns)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> StampedFingerprint | None:
        if not d or "fingerprint" not in d:
            return None
        return cls(str(d["fingerprint"]), int(d.get("size", -1)), int(d.get("mtime_ns", -1)))


def with_record(table: pa.Table, record: Mapping[str, Any]) -> pa.Table:
    """``table`` with ``record`` (JSON) in its schema metadata."""
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(record, sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def record_of(source: pa.Table | pa.Schema | str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance record of a table, schema or Parquet file (None when absent/unreadable)."""
    if isinstance(source, pa.Table):
        source = source.schema
    if not isinstance(source, pa.Schema):
        try:
            source = pq.read_schema(source)
        except (pa.ArrowException, OSError):
            return None
    raw = (source.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def explain_change(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The differences between two records, as ``"guidance 3.0 -> 4.5"`` strings (sorted keys)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += explain_change(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key} {_short(a)} -> {_short(b)}")
    return out


def tracks_inputs(
    tracks_path: str | os.PathLike[str], detections_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """What a table made from ``track``'s output records of it: both files' content
    fingerprints, the track settings key and each video's fingerprint (from track's record).
    ``score-batch`` records it in scores.parquet; ``pairs`` compares it with the tables now."""
    record = (record_of(tracks_path) if Path(tracks_path).is_file() else None) or {}
    videos = record.get("videos") if isinstance(record.get("videos"), Mapping) else {}
    return {
        "tracks": fingerprint(tracks_path),
        "detections": fingerprint(detections_path),
        "settings_key": record.get("settings_key"),
        "videos": {str(k): str(v) for k, v in videos.items()},
    }


def tracks_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> int | None:
    """How many videos' tracks differ between two :func:`tracks_inputs` records: None when
    both files are the same, every video when the track settings differ, else the videos
    whose fingerprint differs or that only one lists (0: the files differ, the videos not)."""
    if (old.get("tracks"), old.get("detections")) == (new.get("tracks"), new.get("detections")):
        return None
    a, b = old.get("videos") or {}, new.get("videos") or {}
    if old.get("settings_key") != new.get("settings_key"):
        return len(set(a) | set(b))
    return sum(1 for k in set(a) | set(b) if a.get(k) != b.get(k))
