"""``spatialalign prompts RUN_DIR``: writes, skips identical files, refuses to clobber."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from shared_data import OFFICIAL_CSV as OFFICIAL
from spatialalign.cli import cli, main
from spatialalign.prompts import generate_dataset, read_prompts


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["prompts", *args])
    return result.exit_code, result.output


def test_writes_the_dataset_and_skips_when_identical(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out = _run(str(run), "--train", "30", "--test", "12", "--seed", "4", "--official-csv")
    assert code == 0, out
    assert out.count("\n") == 1 and "42 prompts" in out and "(written)" in out
    expected = generate_dataset(n_train=30, n_test=12, seed=4)
    assert read_prompts(run / "prompts.parquet") == expected
    assert read_prompts(run / "prompts_official.csv") == expected
    before = (run / "prompts.parquet").stat().st_mtime_ns

    code, out = _run(str(run), "--train", "30", "--test", "12", "--seed", "4", "--official-csv")
    assert code == 0 and "unchanged, skipped" in out and "(written)" not in out
    assert (run / "prompts.parquet").stat().st_mtime_ns == before


def test_refuses_to_overwrite_different_prompts_without_force(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _run(str(run), "--train", "6", "--test", "6")[0] == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["prompts", str(run), "--train", "6", "--test", "6", "--seed", "1"])
    assert exit_info.value.code == 1
    assert read_prompts(run / "prompts.parquet") == generate_dataset(6, 6, seed=0)
    code, out = _run(str(run), "--train", "6", "--test", "6", "--seed", "1", "--force")
    assert code == 0, out
    assert read_prompts(run / "prompts.parquet") == generate_dataset(6, 6, seed=1)


def test_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "prompts.parquet").write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exit_info:
        main(["prompts", str(run), "--train", "6", "--test", "0"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err


def test_form_and_bottom_options(tmp_path: Path) -> None:
    code, out = _run(
        str(tmp_path), "--train", "12", "--test", "12", "--form", "from-to", "--bottom"
    )
    assert code == 0, out
    table = pq.read_table(tmp_path / "prompts.parquet")
    texts = table.column("prompt").to_pylist()
    assert all(" from the " in t for t in texts)
    types = {
        i + f for i, f in zip(*table.select(["initial", "final"]).to_pydict().values(), strict=True)
    }
    assert len(types) == 12


def test_import_official_csv(tmp_path: Path) -> None:
    code, out = _run(str(tmp_path), "--from", str(OFFICIAL))
    assert code == 0, out
    assert read_prompts(tmp_path / "prompts.parquet") == read_prompts(OFFICIAL)
    code, out = _run(str(tmp_path), "--from", str(OFFICIAL), "--train", "3")
    assert code == 2 and "--from" in out
