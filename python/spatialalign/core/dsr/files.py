"""Prompt files: read Parquet/CSV/JSONL (ours or the official CSV) and write ``prompts.parquet``.

Every prompt's text is parsed with the grammar; where a file also carries structured
columns (scene, animal, object, verb, initial, final, or the official ``type``,
``initial_SR``, ``final_SR``) they must agree with the text, so a file whose columns and
prompts drifted apart is refused instead of silently scored against the wrong relation.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from spatialalign.core.dsr.grammar import (
    final_phrase,
    format_prompt,
    initial_phrase,
    normalize_space,
    parse_relation,
    try_parse_prompt,
)
from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, read_parquet, write_parquet
from spatialalign.core.ids import id_problem, refuse_duplicates

# columns of prompts.parquet (DESIGN.md), in order
PROMPT_COLUMNS: tuple[str, ...] = (
    "prompt_id",
    "prompt",
    "scene",
    "animal",
    "object",
    "verb",
    "initial",
    "final",
    "split",
)
# the official SpatialAlign CSV prompt format
OFFICIAL_COLUMNS: tuple[str, ...] = (
    "group",
    "type",
    "prompt_id",
    "scene",
    "initial_SR",
    "final_SR",
    "animal",
    "object",
    "prompt",
)
PROMPT_SUFFIXES: tuple[str, ...] = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson")

_TEXT_FIELDS = ("scene", "animal", "object", "verb")
_RELATION_FIELDS = (("initial", "initial"), ("final", "final"))
_OFFICIAL_RELATION_FIELDS = (("initial_SR", "initial"), ("final_SR", "final"))


def default_prompt_id(index: int, prompt: DSRPrompt) -> str:
    """The id given to a prompt whose file has none: its row number and DSR type."""
    return f"{index:04d}_{prompt.dsr_type}"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def _same_text(a: str, b: str) -> bool:
    return normalize_space(a).casefold() == normalize_space(b).casefold()


def prompts_from_records(
    records: Sequence[Mapping[str, Any]], where: str = "prompts"
) -> list[DSRPrompt]:
    """Turns row dicts (each with at least ``prompt``) into prompts, cross-checking columns.

    Raises ONE :class:`SpatialAlignError` listing every unparseable prompt, every row whose
    columns disagree with its text, every prompt_id that is not a safe file name
    (:mod:`spatialalign.core.ids`: these become video names) and every duplicated prompt id.
    """
    if not records:
        raise SpatialAlignError(f"{where}: contains no prompts")
    problems: list[str] = []
    prompts: list[DSRPrompt] = []
    for i, rec in enumerate(records):
        text = rec.get("prompt")
        parsed = try_parse_prompt(text) if isinstance(text, str) else None
        if parsed is None:
            problems.append(f"[{i}] unparseable {text!r}")
            continue
        diffs = _disagreements(rec, parsed)
        if diffs:
            problems.append(f"[{i}] {text!r}: " + ", ".join(diffs))
            continue
        pid = rec.get("prompt_id")
        if _present(pid):
            problem = id_problem(str(pid).strip())
            if problem is not None:
                problems.append(f"[{i}] prompt_id {str(pid)[:60]!r} {problem}")
                continue
        split = rec.get("split")
        prompts.append(
            DSRPrompt(
                animal=parsed.animal,
                object=parsed.object,
                initial=parsed.initial,
                final=parsed.final,
                scene=parsed.scene,
                verb=parsed.verb,
                text=parsed.text,
                prompt_id=str(pid).strip() if _present(pid) else default_prompt_id(i, parsed),
                split=str(split).strip() if _present(split) else "",
            )
        )
    if problems:
        raise SpatialAlignError(
            f"{where}: {len(problems)} bad prompt row(s) (index: problem): " + "; ".join(problems)
        )
    _check_unique_ids(prompts, where)
    return prompts


def _disagreements(rec: Mapping[str, Any], parsed: DSRPrompt) -> list[str]:
    """Column-vs-text mismatches of one row, as "column 'value' != text 'value'"."""
    diffs: list[str] = []
    for field in _TEXT_FIELDS:
        value = rec.get(field)
        if _present(value) and not _same_text(str(value), getattr(parsed, field)):
            diffs.append(f"{field} {value!r} != text {getattr(parsed, field)!r}")
    for column, field in _RELATION_FIELDS + _OFFICIAL_RELATION_FIELDS:
        value = rec.get(column)
        if not _present(value):
            continue
        try:
            letter = parse_relation(str(value))
        except SpatialAlignError:
            diffs.append(f"{column} {value!r} is not a relation")
            continue
        if letter != getattr(parsed, field):
            diffs.append(f"{column} {value!r} != text {getattr(parsed, field)!r}")
    dsr_type = rec.get("type")
    if _present(dsr_type) and str(dsr_type).strip().upper() != parsed.dsr_type:
        diffs.append(f"type {dsr_type!r} != text {parsed.dsr_type!r}")
    return diffs


def _check_unique_ids(prompts: Iterable[DSRPrompt], where: str) -> None:
    seen: dict[str, int] = {}
    dups: list[str] = []
    for i, p in enumerate(prompts):
        if p.prompt_id in seen:
            dups.append(f"{p.prompt_id!r} (rows {seen[p.prompt_id]} and {i})")
        else:
            seen[p.prompt_id] = i
    if dups:
        raise SpatialAlignError(f"{where}: duplicate prompt_id(s): " + ", ".join(dups))


def _read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "prompt" not in reader.fieldnames:
                raise SpatialAlignError(f"{path}: missing column prompt")
            rows = []
            for row in reader:
                if None in row:  # more fields than the header names
                    raise SpatialAlignError(
                        f"{path}: line {reader.line_num} has more fields than the header"
                    )
                rows.append(row)
            return rows
    except (UnicodeDecodeError, csv.Error) as e:
        raise SpatialAlignError(f"cannot read {path}: {e}") from e


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise SpatialAlignError(f"cannot read {path}: {e}") from e
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SpatialAlignError(f"{path}: line {n} is not JSON: {e}") from e
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise SpatialAlignError(f'{path}: line {n} is not an object with a "prompt"')
        rows.append(obj)
    return rows


def _read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    table = read_parquet(path, "prompts")
    if "prompt" not in table.column_names:
        raise SpatialAlignError(f"{path}: missing column prompt")
    return table.to_pylist()


def read_prompts(path: str | os.PathLike[str]) -> list[DSRPrompt]:
    """Reads prompts from Parquet, CSV (ours or the official format) or JSONL (by suffix).

    Every text is parsed and checked against the file's structured columns; missing,
    corrupt or inconsistent files raise :class:`SpatialAlignError`.
    """
    path = Path(path)
    if not path.is_file():
        raise SpatialAlignError(f"prompts file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        rows = _read_parquet_rows(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    else:
        raise SpatialAlignError(
            f"{path}: unknown prompts format {suffix!r} (expected {', '.join(PROMPT_SUFFIXES)})"
        )
    return prompts_from_records(rows, where=str(path))


def is_official_csv(path: str | os.PathLike[str]) -> bool:
    """Whether a CSV file has the official SpatialAlign columns (``initial_SR`` ...)."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except FileNotFoundError as e:
        raise SpatialAlignError(f"prompts file not found: {path}") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise SpatialAlignError(f"cannot read {path}: {e}") from e
    return {"type", "initial_SR", "final_SR", "prompt"} <= set(header)


def _prompt_text(p: DSRPrompt) -> str:
    return p.text or format_prompt(p)


def _resolved_ids(prompts: Sequence[DSRPrompt]) -> list[str]:
    ids = [p.prompt_id or default_prompt_id(i, p) for i, p in enumerate(prompts)]
    refuse_duplicates(ids, "prompts", "prompt_id")
    return ids


def prompts_table(prompts: Sequence[DSRPrompt]) -> pa.Table:
    """The ``prompts.parquet`` table (DESIGN.md columns, all strings) of ``prompts``.

    Prompts without text get the "then" phrasing; prompts without id get
    :func:`default_prompt_id`.
    """
    ids = _resolved_ids(prompts)
    columns: dict[str, list[str]] = {c: [] for c in PROMPT_COLUMNS}
    for pid, p in zip(ids, prompts, strict=True):
        columns["prompt_id"].append(pid)
        columns["prompt"].append(_prompt_text(p))
        for field in ("scene", "animal", "object", "verb", "initial", "final", "split"):
            columns[field].append(getattr(p, field))
    return pa.table({c: pa.array(v, type=pa.string()) for c, v in columns.items()})


def write_prompts(prompts: Sequence[DSRPrompt], path: str | os.PathLike[str]) -> Path:
    """Writes ``prompts.parquet`` atomically."""
    if not prompts:
        raise SpatialAlignError("no prompts to write")
    return write_parquet(prompts_table(prompts), path)


_LEADING_GROUP = re.compile(r"^(\d+)_")


def official_csv_text(prompts: Sequence[DSRPrompt], *, with_split: bool = True) -> str:
    """The official SpatialAlign CSV format of ``prompts``, as text.

    ``group`` is the number an id like ``1043_TL`` starts with, else the 1-based row.
    ``with_split`` appends a ``split`` column after the official ones (readers that look
    columns up by name ignore it) so that our files round-trip; ``False`` writes exactly
    the official columns.
    """
    if not prompts:
        raise SpatialAlignError("no prompts to write")
    ids = _resolved_ids(prompts)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(OFFICIAL_COLUMNS) + (["split"] if with_split else []))
    for i, (pid, p) in enumerate(zip(ids, prompts, strict=True)):
        m = _LEADING_GROUP.match(pid)
        row = [
            m.group(1) if m else str(i + 1),
            p.dsr_type,
            pid,
            p.scene,
            initial_phrase(p.initial),
            final_phrase(p.final),
            p.animal,
            p.object,
            _prompt_text(p),
        ]
        if with_split:
            row.append(p.split)
        writer.writerow(row)
    return buffer.getvalue()


def write_official_csv(
    prompts: Sequence[DSRPrompt], path: str | os.PathLike[str], *, with_split: bool = True
) -> Path:
    """Writes :func:`official_csv_text` atomically."""
    text = official_csv_text(prompts, with_split=with_split)
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    return Path(path)
