"""Ids that become file names (prompt_id, sample_id): one safe character set, one bound.

An id may hold ASCII letters, digits, ``.``, ``_`` and ``-``; it may not start with
``.`` (no hidden files, no ``.``/``..``), contain ``..``, or be longer than
:data:`MAX_ID_LENGTH` (sample ids add a suffix to a prompt id, so they may be longer:
:data:`MAX_SAMPLE_ID_LENGTH`). Such an id joined to a directory can never leave it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from spatialalign.core.errors import SpatialAlignError

MAX_ID_LENGTH = 128
"""Longest prompt_id (file names built from it stay well below 255 bytes)."""
MAX_SAMPLE_ID_LENGTH = 200
"""Longest sample_id: a prompt id plus ``_F81_seed00``-like suffixes."""
SAFE_CHARS = "A-Z a-z 0-9 . _ -"

_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def id_problem(value: object, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` is not a safe id, or None when it is."""
    if not isinstance(value, str) or not value:
        return "is empty" if value in ("", None) else f"is not text ({type(value).__name__})"
    if len(value) > max_length:
        return f"is {len(value)} characters long (at most {max_length})"
    if not _SAFE.fullmatch(value):
        bad = sorted({c for c in value if not _SAFE.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad[:5])
        return f"has character(s) {shown} outside {SAFE_CHARS}"
    if value.startswith("."):
        return "starts with '.'"
    if ".." in value:
        return "contains '..'"
    return None


def check_id(value: object, what: str, where: str = "", max_length: int = MAX_ID_LENGTH) -> str:
    """Returns ``value`` when it is a safe id; else one :class:`SpatialAlignError` line.

    ``what`` names the id (``prompt_id``), ``where`` the file/row it came from.
    """
    problem = id_problem(value, max_length)
    if problem is None:
        return value  # type: ignore[return-value]
    shown = (
        repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:60] + "…")
    )
    prefix = f"{where}: " if where else ""
    raise SpatialAlignError(f"{prefix}{what} {shown} {problem}")


def refuse_duplicates(values: Iterable[str], where: str, what: str) -> None:
    """Raises one :class:`SpatialAlignError` naming the duplicated ``what`` values (O(n))."""
    seen: set[str] = set()
    dups: dict[str, None] = {}
    for v in values:
        if v in seen:
            dups[v] = None
        seen.add(v)
    if dups:
        names = list(dups)
        shown = ", ".join(repr(v) for v in names[:5])
        more = f", ... ({len(names) - 5} more)" if len(names) > 5 else ""
        raise SpatialAlignError(f"{where}: duplicate {what}(s) {shown}{more}")
