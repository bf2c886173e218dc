"""Arrow schemas of the files between stages (DESIGN.md, "Files between stages").

Every stage that reads one of these tables passes it through :func:`validate_table`,
so a file from another stage (or another tool) either matches the contract — with
compatible types cast, e.g. int32 -> int64, float32 -> float64 — or fails with one
clear :class:`~spatialalign.core.errors.SpatialAlignError` naming the file and the column.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from spatialalign.core.errors import SpatialAlignError

# ``nullable=False`` marks key columns that must never hold nulls.
PROMPTS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string()),
        pa.field("scene", pa.string()),
        pa.field("animal", pa.string(), nullable=False),
        pa.field("object", pa.string(), nullable=False),
        pa.field("verb", pa.string()),
        pa.field("initial", pa.string(), nullable=False),
        pa.field("final", pa.string(), nullable=False),
        pa.field("split", pa.string()),
    ]
)

MANIFEST = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("adapter", pa.string()),
        pa.field("path", pa.string()),
        pa.field("num_frames", pa.int64()),
        pa.field("fps", pa.float64()),
        pa.field("height", pa.int64()),
        pa.field("width", pa.int64()),
    ]
)

TRACKS = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("frame", pa.int64(), nullable=False),
        pa.field("label", pa.string(), nullable=False),  # "animal" or "object"
        pa.field("x0", pa.float64(), nullable=False),
        pa.field("y0", pa.float64(), nullable=False),
        pa.field("x1", pa.float64(), nullable=False),
        pa.field("y1", pa.float64(), nullable=False),
        pa.field("score", pa.float64()),
    ]
)

DETECTIONS = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("n_valid", pa.int64()),
        pa.field("n_miss", pa.int64()),
        pa.field("n_redundant", pa.int64()),
        pa.field("longest_run", pa.int64()),
        pa.field("status", pa.string()),
        pa.field("reason", pa.string()),
    ]
)

SCORES = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # "" when valid
        pa.field("dsr", pa.float64()),  # NaN when invalid
        pa.field("r_init", pa.float64()),
        pa.field("r_final", pa.float64()),
        pa.field("g_init", pa.float64()),
        pa.field("g_final", pa.float64()),
        pa.field("n_kept", pa.int64(), nullable=False),
    ]
)

PAIRS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("winner", pa.string(), nullable=False),
        pa.field("loser", pa.string(), nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "prompts": PROMPTS,
    "manifest": MANIFEST,
    "tracks": TRACKS,
    "detections": DETECTIONS,
    "scores": SCORES,
    "pairs": PAIRS,
}


def get_schema(name: str) -> pa.Schema:
    """The schema of table ``name`` (a key of :data:`SCHEMAS`)."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise SpatialAlignError(
            f"unknown table schema {name!r} (choose from {', '.join(SCHEMAS)})"
        ) from None


def validate_table(
    table: pa.Table,
    schema_name: str,
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Checks ``table`` against the schema ``schema_name`` and returns it with types cast.

    ``columns`` restricts the check to the schema columns a reader needs (default: all
    of them); those must be present, castable without loss to the schema type, and free
    of nulls where the schema says so. Columns outside the check pass through
    unchanged. Raises :class:`SpatialAlignError` naming ``path`` and the column.
    """
    schema = get_schema(schema_name)
    wanted = list(schema.names if columns is None else columns)
    unknown = [c for c in wanted if c not in schema.names]
    if unknown:
        raise ValueError(f"{schema_name} schema has no column(s) {', '.join(unknown)}")
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise SpatialAlignError(
            f"{path}: not a valid {schema_name} table: missing column(s) {', '.join(missing)}"
        )
    for name in wanted:
        field = schema.field(name)
        index = table.column_names.index(name)
        column = table.column(index)
        if column.type != field.type:
            column = _cast(column, field, schema_name, path)
            table = table.set_column(index, field.name, column)
        if not field.nullable and column.null_count:
            raise SpatialAlignError(
                f"{path}: column {name!r} of the {schema_name} table has "
                f"{column.null_count} null value(s)"
            )
    return table


def _cast(
    column: pa.ChunkedArray, field: pa.Field, schema_name: str, path: str | os.PathLike[str]
) -> pa.ChunkedArray:
    """Casts a column to ``field.type`` when that loses nothing (safe cast)."""
    source = column.type
    if pa.types.is_dictionary(source):
        source = source.value_type
    # Refuse casts that only "work" by reinterpretation: numbers <-> text, bool -> number.
    to_text = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    from_text = pa.types.is_string(source) or pa.types.is_large_string(source)
    numeric = pa.types.is_integer(source) or pa.types.is_floating(source)
    ok = (
        (to_text and from_text)
        or (pa.types.is_integer(field.type) and pa.types.is_integer(source))
        or (pa.types.is_floating(field.type) and numeric)
        or (pa.types.is_boolean(field.type) and pa.types.is_boolean(source))
        or pa.types.is_null(source)
    )
    if ok:
        try:
            return pc.cast(column, field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raise SpatialAlignError(
        f"{path}: column {field.name!r} of the {schema_name} table has type {column.type}, "
        f"expected {field.type}"
    )
