"""`spatialalign demo`: prompts -> sample -> track -> score-batch on the shipped toy model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from spatialalign.cli import main
from spatialalign.provenance import record_of
from spatialalign.rundir import RunDir


def test_demo_runs_the_toy_pipeline_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    main(["demo", str(out), "--prompts", "6", "--seeds", "1"])
    text = capsys.readouterr().out
    for verb in ("prompts", "sample", "track", "score-batch"):
        assert f"$ spatialalign {verb} {out}" in text
    assert "C@0.7" in text and "validness" in text
    manifest = RunDir(out).read_manifest().to_pylist()  # paths resolved
    assert len(manifest) == 6 and all(Path(r["path"]).is_file() for r in manifest)
    # score-batch (no --preset) used the preset track recorded
    assert record_of(out / "scores.parquet")["preset"] == "toy"
    scores = pq.read_table(out / "scores.parquet").to_pylist()
    assert sorted(r["sample_id"] for r in scores) == sorted(r["sample_id"] for r in manifest)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_videos"] == 6
    assert (out / "correctness.png").stat().st_size > 0

    # a rerun reuses every stage's outputs
    main(["demo", str(out), "--prompts", "6", "--seeds", "1"])
    text = capsys.readouterr().out
    assert "generated 0 video(s), skipped 6" in text
    again = pq.read_table(out / "scores.parquet")
    assert again.column("sample_id").to_pylist() == [r["sample_id"] for r in scores]
    np.testing.assert_array_equal(again.column("dsr").to_numpy(), [r["dsr"] for r in scores])
