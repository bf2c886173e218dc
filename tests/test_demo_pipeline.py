"""`spatialalign demo`: base vs aligned toy model through eval, compare and report."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from spatialalign.cli import main
from spatialalign.core.provenance import record_of
from spatialalign.rundir.layout import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_compares_base_and_aligned_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    main(["demo", str(out), "--prompts", "6", "--seeds", "1"])
    text = capsys.readouterr().out
    for verb, target in (("eval", "base"), ("eval", "aligned"), ("compare", "base")):
        assert f"$ spatialalign {verb} {out / target}" in text
    assert f"$ spatialalign report {out / 'base'}" in text
    assert "Correct@0.7" in text and str(out / "report" / "index.html") in text

    base, aligned = RunDir(out / "base"), RunDir(out / "aligned")
    for run in (base, aligned):
        scores = pq.read_table(run.scores_path).to_pylist()
        assert len(scores) == 6
        assert record_of(run.scores_path)["preset"] == "toy"  # the preset track recorded
    # the aligned run sampled the same prompts and seeds with the shipped adapter
    adapters = {r["adapter"] for r in aligned.read_manifest().to_pylist()}
    assert len(adapters) == 1 and adapters.pop().endswith("pytorch_lora_weights.safetensors")
    assert {r["adapter"] for r in base.read_manifest().to_pylist()} == {""}
    comparison = json.loads((out / "compare" / "comparison.json").read_text())
    assert [r["name"] for r in comparison["runs"]] == ["base", "aligned"]
    assert (out / "report" / "index.html").stat().st_size > 0

    # a rerun reuses every stage's outputs
    before = pq.read_table(aligned.scores_path)
    main(["demo", str(out), "--prompts", "6", "--seeds", "1"])
    text = capsys.readouterr().out
    assert text.count("generated 0 video(s)") == 2
    after = pq.read_table(aligned.scores_path)
    np.testing.assert_array_equal(after.column("dsr").to_numpy(), before.column("dsr").to_numpy())
