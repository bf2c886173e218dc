"""Prompt files: Parquet, CSV (ours and official), JSONL, agreement checks, bad files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shared_data import OFFICIAL_CSV as OFFICIAL
from spatialalign.core.errors import SpatialAlignError
from spatialalign.prompts import (
    PROMPT_COLUMNS,
    DSRPrompt,
    is_official_csv,
    prompts_table,
    read_prompts,
    write_official_csv,
    write_prompts,
)

_WORD = {"left": "L", "right": "R", "top": "T", "bottom": "B"}

T1 = "In a barn, a dog is on the left of a crate, then the dog trots to the top of the crate."
T2 = "a hamster runs from the top of a stool to the right of the stool."


def _official_rows() -> list[dict[str, str]]:
    with OFFICIAL.open(newline="") as f:
        return list(csv.DictReader(f))


def test_official_csv_loads_and_agrees_with_its_columns() -> None:
    prompts = read_prompts(OFFICIAL)
    rows = _official_rows()
    assert len(prompts) == len(rows) == 120
    for p, row in zip(prompts, rows, strict=True):
        assert p.prompt_id == row["prompt_id"]
        assert p.text == row["prompt"]
        assert (p.scene, p.animal, p.object) == (row["scene"], row["animal"], row["object"])
        assert p.initial == _WORD[row["initial_SR"].split()[2]]
        assert p.final == _WORD[row["final_SR"].split()[2]]
        assert p.dsr_type == row["type"]


def test_official_csv_round_trips_byte_for_byte(tmp_path: Path) -> None:
    out = write_official_csv(read_prompts(OFFICIAL), tmp_path / "o.csv", with_split=False)
    assert out.read_bytes() == OFFICIAL.read_bytes()
    assert is_official_csv(OFFICIAL) and is_official_csv(out)
    ours = tmp_path / "ours.csv"
    ours.write_text(",".join(PROMPT_COLUMNS) + "\n")
    assert not is_official_csv(ours)
    with pytest.raises(SpatialAlignError, match="not found"):
        is_official_csv(tmp_path / "missing.csv")


def test_parquet_round_trip_and_columns(tmp_path: Path) -> None:
    prompts = read_prompts(OFFICIAL)[:10]
    prompts = [DSRPrompt(**{**p.to_dict(), "split": "test"}) for p in prompts]
    path = write_prompts(prompts, tmp_path / "run" / "prompts.parquet")
    table = pq.read_table(path)
    assert tuple(table.column_names) == PROMPT_COLUMNS
    assert all(t == pa.string() for t in table.schema.types)
    assert table.column("initial").to_pylist() == [p.initial for p in prompts]
    assert read_prompts(path) == prompts
    # atomic write leaves no temporary files behind
    assert sorted(x.name for x in path.parent.iterdir()) == ["prompts.parquet"]


def test_our_csv_and_jsonl(tmp_path: Path) -> None:
    table = prompts_table(
        [
            DSRPrompt("dog", "crate", "L", "T", "In a barn", "trots", T1, "a1", "train"),
            DSRPrompt("hamster", "stool", "T", "R", "", "runs", T2, "a2", "test"),
        ]
    )
    csv_path = tmp_path / "p.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=table.column_names)
        w.writeheader()
        w.writerows(table.to_pylist())
    from_csv = read_prompts(csv_path)
    assert [p.prompt_id for p in from_csv] == ["a1", "a2"]
    assert [p.dsr_type for p in from_csv] == ["LT", "TR"]
    assert [p.split for p in from_csv] == ["train", "test"]

    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"prompt": T1, "animal": "Dog", "initial": "left"})
        + "\n\n"
        + json.dumps({"prompt": T2})
        + "\n"
    )
    from_jsonl = read_prompts(jsonl)
    assert [p.dsr_type for p in from_jsonl] == ["LT", "TR"]
    assert from_jsonl[0].scene == "In a barn" and from_jsonl[1].verb == "runs"
    # ids are made up from row number and type when the file has none
    assert [p.prompt_id for p in from_jsonl] == ["0000_LT", "0001_TR"]


def test_disagreeing_columns_are_listed(tmp_path: Path) -> None:
    rows = _official_rows()[:6]
    rows[1]["final_SR"] = "to the right of" if "left" in rows[1]["final_SR"] else "to the left of"
    rows[3]["animal"] = "elephant"
    rows[4]["type"] = "BB"
    rows[5]["prompt"] = "a dog sits near a crate."
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(SpatialAlignError) as err:
        read_prompts(path)
    msg = str(err.value)
    assert "4 bad prompt row(s)" in msg
    assert "[1]" in msg and "final_SR" in msg
    assert "[3]" in msg and "'elephant'" in msg
    assert "[4]" in msg and "type 'BB'" in msg
    assert "[5] unparseable 'a dog sits near a crate.'" in msg
    assert "[0]" not in msg and "[2]" not in msg


def test_disagreeing_parquet_letters(tmp_path: Path) -> None:
    table = prompts_table([DSRPrompt("dog", "crate", "L", "T", "In a barn", "trots", T1, "a1")])
    table = table.set_column(
        PROMPT_COLUMNS.index("final"), "final", pa.array(["R"], type=pa.string())
    )
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(SpatialAlignError, match=r"final 'R' != text 'T'"):
        read_prompts(tmp_path / "p.parquet")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\n".join(json.dumps({"prompt": t, "prompt_id": "same"}) for t in (T1, T2)) + "\n"
    )
    with pytest.raises(SpatialAlignError, match="duplicate prompt_id"):
        read_prompts(path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.parquet", None, "not found"),
        ("corrupt.parquet", b"PAR1 this is not parquet", "cannot read"),
        ("bad.jsonl", b'{"prompt": "x"\n', "not JSON"),
        ("noprompt.jsonl", b'{"text": "x"}\n', '"prompt"'),
        ("noprompt.csv", b"a,b\n1,2\n", "missing column prompt"),
        ("empty.csv", b"prompt\n", "no prompts"),
        ("binary.csv", b"prompt\n\xff\xfe\x00\x00", "cannot read"),
        ("p.txt", b"hello", "unknown prompts format"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes | None, match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpatialAlignError, match=match):
        read_prompts(path)


def test_write_rejects_duplicates_and_empty(tmp_path: Path) -> None:
    p = DSRPrompt("dog", "crate", "L", "T", prompt_id="x")
    with pytest.raises(SpatialAlignError, match="duplicate"):
        write_prompts([p, p], tmp_path / "p.parquet")
    with pytest.raises(SpatialAlignError, match="no prompts"):
        write_prompts([], tmp_path / "p.parquet")
    assert not (tmp_path / "p.parquet").exists()


def test_prompt_without_text_is_written_in_the_then_form(tmp_path: Path) -> None:
    p = DSRPrompt("dog", "crate", "R", "L", scene="In a barn", verb="walks", prompt_id="x")
    (q,) = read_prompts(write_prompts([p], tmp_path / "p.parquet"))
    assert (
        q.text
        == "In a barn, a dog is on the right of a crate, then the dog walks to the left of the crate."
    )
    assert q == DSRPrompt(**{**p.to_dict(), "text": q.text})
