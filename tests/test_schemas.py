"""spatialalign.core.schemas: the file contract of DESIGN.md and validate_table's checks/casts."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from shared_data import DESIGN_MD as DESIGN
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.schemas import SCHEMAS, get_schema, validate_table

# DESIGN.md "Files between stages" file name -> our schema name
FILES = {
    "prompts.parquet": "prompts",
    "samples/manifest.parquet": "manifest",
    "tracks.parquet": "tracks",
    "detections.parquet": "detections",
    "scores.parquet": "scores",
    "pairs.parquet": "pairs",
}


def design_columns() -> dict[str, list[str]]:
    """Parses the column lists out of DESIGN.md's "Files between stages" table."""
    found = {}
    for line in DESIGN.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        for name in names:
            if name in FILES:
                text = re.sub(r"\([^)]*\)", "", cells[2])  # drop "(`animal`/`object`)" notes
                found[FILES[name]] = [c.strip() for c in text.split(",")]
    return found


def test_schemas_match_design_md_column_lists() -> None:
    columns = design_columns()
    assert set(columns) == set(FILES.values())
    for name, expected in columns.items():
        assert get_schema(name).names == expected, name


def tracks_table(**overrides: pa.Array) -> pa.Table:
    cols = {
        "sample_id": pa.array(["a", "a"]),
        "frame": pa.array([0, 1], pa.int32()),
        "label": pa.array(["animal", "object"]),
        "x0": pa.array([0.0, 1.0], pa.float32()),
        "y0": pa.array([0.0, 1.0], pa.float32()),
        "x1": pa.array([2, 3], pa.int64()),
        "y1": pa.array([2.0, 3.0]),
        "score": pa.array([0.5, 0.6]),
    }
    cols.update(overrides)
    return pa.table(cols)


def test_compatible_types_are_cast_to_the_schema() -> None:
    table = tracks_table(label=pa.array(["animal", "object"]).dictionary_encode())
    out = validate_table(table, "tracks", "t.parquet")
    assert out.schema.names == SCHEMAS["tracks"].names
    assert out.schema.types == SCHEMAS["tracks"].types
    assert out.column("frame").to_pylist() == [0, 1]
    assert out.column("x1").to_pylist() == [2.0, 3.0]
    assert out.column("label").to_pylist() == ["animal", "object"]


def test_missing_columns_are_named() -> None:
    table = tracks_table().drop_columns(["x0", "label"])
    with pytest.raises(SpatialAlignError, match=r"t\.parquet.*missing column\(s\) label, x0"):
        validate_table(table, "tracks", "t.parquet")


@pytest.mark.parametrize(
    "column, array",
    [
        ("frame", pa.array(["0", "1"])),  # text where a number belongs
        ("x0", pa.array(["1.5", "2"])),
        ("sample_id", pa.array([1, 2])),  # number where text belongs
        ("frame", pa.array([0.5, 1.0])),  # float -> int would lose data
        ("frame", pa.array([True, False])),
    ],
)
def test_incompatible_types_are_refused(column: str, array: pa.Array) -> None:
    with pytest.raises(SpatialAlignError, match=rf"column '{column}'.*expected"):
        validate_table(tracks_table(**{column: array}), "tracks", "t.parquet")


def test_nulls_in_key_columns_are_refused_but_allowed_elsewhere() -> None:
    with pytest.raises(SpatialAlignError, match=r"'sample_id'.*1 null"):
        validate_table(tracks_table(sample_id=pa.array(["a", None])), "tracks", "t.parquet")
    # score is optional information: nulls pass
    out = validate_table(tracks_table(score=pa.array([None, 0.5])), "tracks", "t.parquet")
    assert out.column("score").null_count == 1


def test_columns_subset_and_passthrough() -> None:
    manifest = pa.table(
        {"sample_id": ["s0"], "prompt_id": ["p"], "seed": pa.array([3], pa.int16()), "x": [1]}
    )
    with pytest.raises(SpatialAlignError, match="missing column"):
        validate_table(manifest, "manifest", "m.parquet")
    out = validate_table(manifest, "manifest", "m.parquet", columns=["sample_id", "seed"])
    assert out.column("seed").type == pa.int64()
    assert out.column("x").to_pylist() == [1]  # extra columns pass through


def test_unknown_schema_or_column() -> None:
    with pytest.raises(SpatialAlignError, match="unknown table schema"):
        validate_table(tracks_table(), "nope", "t.parquet")
    with pytest.raises(ValueError, match="no column"):
        validate_table(tracks_table(), "tracks", "t.parquet", columns=["bogus"])
