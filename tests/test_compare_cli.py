"""`spatialalign compare`: reading runs (scores + metrics joined), files written, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.evaluation.run_tables import read_run_table, run_names
from spatialalign.rundir.layout import RunDir


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """The shipped synthetic demo run (90 scored videos, no video files)."""
    out = tmp_path_factory.mktemp("compare") / "base"
    main(["demo", str(out), "--synthetic"])
    return out


def perturbed_copy(run, dst, *, lower: int):
    """A copy of ``run`` whose first ``lower`` valid videos score DSR 0.1 lower."""
    shutil.copytree(run, dst)
    path = RunDir(dst).scores_path
    table = pq.read_table(path)
    dsr = table.column("dsr").to_numpy(zero_copy_only=False).copy()
    valid = np.flatnonzero(table.column("valid").to_numpy(zero_copy_only=False))[:lower]
    dsr[valid] -= 0.1
    index = table.column_names.index("dsr")
    table = table.set_column(index, table.schema.field("dsr"), pa.array(dsr, pa.float64()))
    pq.write_table(table, path)
    return dst


def write_metrics(run, **columns):
    ids = pq.read_table(RunDir(run).scores_path).column("sample_id").to_pylist()
    cols = {"sample_id": ids[::-1]}  # a different row order than the scores
    cols.update({k: [v(i) for i in range(len(ids))][::-1] for k, v in columns.items()})
    pq.write_table(pa.table(cols), run / "metrics.parquet")
    return ids


def test_compare_writes_table_json_and_curves(synthetic_run, tmp_path, capsys) -> None:
    other = perturbed_copy(synthetic_run, tmp_path / "worse", lower=30)
    out = tmp_path / "cmp"
    main(["compare", str(synthetic_run), str(other), "--out", str(out), "--n-boot", "200"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("| run | videos | prompts | validness | Correct@0.7 [95% CI]")
    assert lines[2].startswith("| base | 90 |") and lines[3].startswith("| worse | 90 |")
    assert lines[-1].startswith("compare: 2 run(s), baseline 'base' -> ")
    md = (out / "comparison.md").read_text()
    assert md.startswith("\n".join(lines[:4]) + "\n\n")  # the table, then the breakdown
    assert "Correct@0.7 (validness) per DSR type:" in md
    assert "Invalid videos by rejection reason:" in md
    # the breakdown's figures are score-batch's own (summary.json) for the unchanged run
    summary = json.loads((synthetic_run / "summary.json").read_text())
    base_breakdown = json.loads((out / "comparison.json").read_text())["breakdown"][0]
    assert base_breakdown["reasons"] == summary["counts"]["reasons"]
    assert set(base_breakdown["per_type"]) == set(summary["per_type"])
    for t, group in summary["per_type"].items():
        figures = base_breakdown["per_type"][t]
        assert figures["videos"] == group["n"]
        assert figures["validness"] == pytest.approx(group["validness"], abs=1e-12)
        assert figures["correctness"] == pytest.approx(group["correctness_at_0.7"], abs=1e-12)
    data = json.loads((out / "comparison.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["base", "worse"]
    assert data["config"]["n_boot"] == 200
    base, worse = (r["correctness"]["value"] for r in data["runs"])
    assert base == pytest.approx(0.711, abs=1e-3) and worse < base
    assert data["differences"][0]["correctness"]["value"] == pytest.approx(worse - base)
    assert (out / "correctness_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_default_out_and_names(synthetic_run, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    main(["compare", str(synthetic_run), str(synthetic_run), "--names", "a,b", "--n-boot", "20"])
    assert "| a | 90 |" in capsys.readouterr().out
    assert (tmp_path / "compare" / "comparison.json").is_file()


def test_metrics_are_joined_on_sample_id(synthetic_run, tmp_path, capsys) -> None:
    run = tmp_path / "with_metrics"
    shutil.copytree(synthetic_run, run)
    ids = write_metrics(run, sharpness=lambda i: float(i), label=lambda i: "x")
    table = read_run_table(run)
    assert table.column("sample_id").to_pylist() == ids  # the scores' order is kept
    assert table.column("sharpness").to_pylist() == [float(i) for i in range(len(ids))]
    assert "label" not in table.column_names  # text columns are not metrics
    main(["compare", str(run), str(synthetic_run), "--names", "m,plain", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert "| sharpness |" in text.splitlines()[0]
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["runs"][0]["metrics"]["sharpness"] == pytest.approx((len(ids) - 1) / 2)
    assert "sharpness" not in data["runs"][1]["metrics"]  # plain has no metrics.parquet
    assert text.splitlines()[3].startswith("| plain |") and text.splitlines()[3].endswith("| - |")


def test_metrics_with_duplicate_ids_are_refused(synthetic_run, tmp_path) -> None:
    run = tmp_path / "dup"
    shutil.copytree(synthetic_run, run)
    pq.write_table(pa.table({"sample_id": ["a", "a"], "m": [1.0, 2.0]}), run / "metrics.parquet")
    with pytest.raises(SpatialAlignError, match="sample_id"):
        read_run_table(run)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "run directory not found"),
        (["{empty}"], "no scores.parquet (run `spatialalign score-batch"),
        (["{run}", "{run}", "--names", "one"], "--names has 1 non-empty name(s) for 2 run(s)"),
        (["{run}", "{run}"], "the same run directory is given twice"),
    ],
)
def test_bad_runs_fail_with_one_line(synthetic_run, tmp_path, capsys, args, message) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "run": synthetic_run}
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *(a.format(**paths) for a in args), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_run_names_from_directories(tmp_path) -> None:
    assert run_names([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    # the same directory name twice: the paths as given tell them apart
    x, y = tmp_path / "x" / "run", tmp_path / "y" / "run"
    assert run_names([x, y]) == [str(x), str(y)]
    with pytest.raises(SpatialAlignError, match="unique"):
        run_names([x, y], "same,same")


def retexted_copy(run, dst, n: int = 1):
    """A copy of ``run`` whose first ``n`` prompts (of its prompts.parquet) are other
    prompts under the same prompt ids."""
    import dataclasses

    from spatialalign.prompts import read_prompts, write_prompts

    shutil.copytree(run, dst)
    path = RunDir(dst).prompts_path
    prompts = read_prompts(path)
    prompts = [
        dataclasses.replace(prompts[-1 - i], prompt_id=p.prompt_id) if i < n else p
        for i, p in enumerate(prompts)
    ]
    write_prompts(prompts, path)
    return dst, prompts[0].prompt_id


def test_a_prompt_id_with_other_texts_is_refused(synthetic_run, tmp_path, capsys) -> None:
    """Issue 18 (E): compare matched prompts by id only, so two runs of other prompts under
    the same ids compared as one; it refuses now, naming the id."""
    other, pid = retexted_copy(synthetic_run, tmp_path / "other", n=2)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(synthetic_run), str(other), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 2 prompt id(s)") and repr(pid) in err and "\n" not in err
    assert "'other'" in err and "'base'" in err
    assert not (tmp_path / "o").exists()


def test_compare_says_how_many_prompts_and_videos_it_rests_on(
    synthetic_run, tmp_path, capsys
) -> None:
    """Issue 18 (E, minor): the difference rests on the prompts both runs have; compare says
    how many (and their videos), here 10 of the 30 prompts."""
    one = tmp_path / "few"
    shutil.copytree(synthetic_run, one)
    path = RunDir(one).scores_path
    table = pq.read_table(path)
    keep = sorted(set(table.column("prompt_id").to_pylist()))[:10]
    mask = pa.compute.is_in(table.column("prompt_id"), value_set=pa.array(keep))
    pq.write_table(table.filter(mask), path)
    main(["compare", str(synthetic_run), str(one), "--out", str(tmp_path / "o"), "--n-boot", "20"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == (
        "compare: 'few' vs 'base' rests on 10 shared prompt(s): 30 video(s) of 'base', 30 of 'few'"
    )
    data = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert data["differences"][0]["n_shared_prompts"] == 10
