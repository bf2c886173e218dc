"""compare: Correctness@0.7 with prompt-bootstrap intervals, paired differences, outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from spatialalign.evaluation.compare import (
    CompareConfig,
    compare_runs,
    curves_png,
    prompt_counts,
)


def scores(prompts, dsr, valid=None, **metrics) -> pa.Table:
    dsr = np.asarray(dsr, dtype=float)
    valid = ~np.isnan(dsr) if valid is None else np.asarray(valid)
    cols = {
        "sample_id": [f"{p}_s{i}" for i, p in enumerate(prompts)],
        "prompt_id": list(prompts),
        "seed": list(range(len(prompts))),
        "valid": valid.tolist(),
        "dsr": dsr.tolist(),
    }
    cols.update({k: list(v) for k, v in metrics.items()})
    return pa.table(cols)


# p1: two hits; p2: DSR exactly 0.7 (not a hit on the official grid) and one invalid
TINY = scores(["p1", "p1", "p2", "p2"], [0.9, 0.8, 0.7, np.nan])


def test_tiny_table_by_hand():
    cfg = CompareConfig(n_boot=4, seed=0)
    run = compare_runs([("base", TINY)], config=cfg).runs[0]
    assert (run.n_videos, run.n_prompts) == (4, 2)
    assert run.correctness.value == 0.5  # 2 hits / 4 videos (0.7 is below the grid's 0.7)
    assert run.validness.value == 0.75
    # default_rng(0).integers(0, 2, size=(4, 2)) = [[1,1],[1,0],[0,0],[0,0]] (0 = p1, 1 = p2)
    # Correct: p2+p2 -> 0/4, p2+p1 -> 2/4, p1+p1 -> 4/4 twice: sorted [0, .5, 1, 1]
    # numpy quantile, linear: 2.5% at position 0.075 -> 0.075 * 0.5 = 0.0375; 97.5% -> 1
    assert (run.correctness.low, run.correctness.high) == pytest.approx((0.0375, 1.0))
    # validness replicates: [2/4, 3/4, 1, 1] -> 0.5 + 0.075 * 0.25 = 0.51875, 1
    assert (run.validness.low, run.validness.high) == pytest.approx((0.51875, 1.0))
    assert run.curve["0.0"] == 0.75 and run.curve["0.7"] == 0.5


def test_equal_prompts_give_a_zero_width_interval():
    # every prompt has exactly 1 hit in 2 videos: every replicate is exactly 0.5
    prompts = [f"p{i}" for i in range(30) for _ in range(2)]
    t = scores(prompts, [0.9, 0.1] * 30)
    c = compare_runs([("a", t)]).runs[0].correctness
    assert (c.value, c.low, c.high) == (0.5, 0.5, 0.5)


def random_run(n_prompts, rng, p_hit=0.6, per_prompt=5):
    prompts = [f"p{i:04d}" for i in range(n_prompts) for _ in range(per_prompt)]
    dsr = np.where(rng.random(len(prompts)) < p_hit, 0.9, 0.3)
    dsr[rng.random(len(prompts)) < 0.1] = np.nan
    return scores(prompts, dsr)


def test_interval_contains_estimate_and_shrinks_with_more_prompts():
    rng = np.random.default_rng(7)
    cfg = CompareConfig(n_boot=500, seed=1)
    small = compare_runs([("s", random_run(20, rng))], config=cfg).runs[0]
    large = compare_runs([("l", random_run(800, rng))], config=cfg).runs[0]
    for r in (small, large):
        for iv in (r.correctness, r.validness):
            assert iv.low <= iv.value <= iv.high
    width = lambda iv: iv.high - iv.low  # noqa: E731
    assert width(large.correctness) < 0.35 * width(small.correctness)  # ~ sqrt(20/800) = 0.16


def test_counts_agree_with_the_official_grid():
    rng = np.random.default_rng(3)
    t = random_run(40, rng)
    counts = prompt_counts(t)
    run = compare_runs([("a", t)]).runs[0]
    assert counts.hits.sum() / counts.videos.sum() == run.correctness.value


def test_paired_difference():
    base = scores(["p1", "p1", "p2", "p2", "p3"], [0.9, 0.1, 0.1, 0.1, 0.9])
    # the run improves p2 by one hit, and has an extra prompt p4 the baseline lacks
    better = scores(["p1", "p1", "p2", "p2", "p3", "p4"], [0.9, 0.1, 0.9, 0.1, 0.9, 0.9])
    cmp = compare_runs(
        [("base", base), ("same", base), ("better", better)], config=CompareConfig(n_boot=300)
    )
    same, diff = cmp.differences
    assert (same.correctness.value, same.correctness.low, same.correctness.high) == (0, 0, 0)
    # shared prompts p1..p3: base 2/5 hits, run 3/5 -> +0.2; p4 is ignored
    assert diff.n_shared_prompts == 3
    assert diff.correctness.value == pytest.approx(0.2)
    assert diff.correctness.low <= 0.2 <= diff.correctness.high
    assert diff.correctness.low >= 0.0  # the run is never worse on any prompt
    assert cmp.runs[2].correctness.value == pytest.approx(4 / 6)  # all its prompts


def test_markdown_json_metrics_and_plot(tmp_path):
    a = scores(["p1", "p2"], [0.9, np.nan], id_consistency=[0.8, math.nan], natural=[0.2, 0.4])
    b = scores(["p1", "p2"], [0.9, 0.95], id_consistency=[0.9, 0.7], natural=[0.3, 0.5])
    cmp = compare_runs([("base", a), ("aligned", b)], config=CompareConfig(n_boot=50))
    assert cmp.metric_names == ["id_consistency", "natural"]
    assert cmp.runs[0].metrics["id_consistency"] == pytest.approx(0.8)  # NaN ignored
    assert cmp.runs[1].metrics["natural"] == pytest.approx(0.4)
    md = cmp.to_markdown().splitlines()
    assert len(md) == 2 + 2  # header, separator, one row per run
    assert md[2].startswith("| base |") and md[3].startswith("| aligned |")
    assert "+0.500" in md[3] and "0.800" in md[2]
    d = cmp.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["baseline"] == "base" and d["runs"][1]["correctness"]["value"] == 1.0
    png = curves_png(cmp, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs():
    with pytest.raises(ValueError, match="no runs"):
        compare_runs([])
    with pytest.raises(ValueError, match="unique"):
        compare_runs([("a", TINY), ("a", TINY)])
    with pytest.raises(ValueError, match="dsr"):
        compare_runs([("a", TINY.drop_columns(["dsr"]))])


def test_empty_run_has_no_estimate():
    cmp = compare_runs([("base", TINY), ("empty", TINY.slice(0, 0))])
    empty = cmp.runs[1]
    assert empty.n_videos == 0 and math.isnan(empty.correctness.value)
    assert cmp.differences[0].n_shared_prompts == 0
    assert "| empty | 0 | 0 | - | - [-, -] | - [-, -] |" in cmp.to_markdown()
    json.dumps(cmp.to_dict(), allow_nan=False)


def test_breakdown_per_type_and_reason_by_hand():
    # base: p1 (LR) hits twice; p2 (TB) DSR exactly 0.7 (no hit) and one no_stable_run
    base = TINY.append_column("reason", pa.array(["", "", "", "no_stable_run"]))
    # aligned: p1 one hit and one redundant, p2 both hits
    aligned = scores(["p1", "p1", "p2", "p2"], [0.95, np.nan, 0.71, 0.9])
    aligned = aligned.append_column("reason", pa.array(["", "redundant", "", ""]))
    types = {"p1": "LR", "p2": "TB"}
    cmp = compare_runs(
        [("base", base), ("aligned", aligned)],
        config=CompareConfig(n_boot=4),
        dsr_types=[types, types],
    )
    b, a = cmp.breakdowns
    assert b.per_type["LR"] == a.per_type["TB"]  # two valid hits of two
    assert (b.per_type["LR"].videos, b.per_type["LR"].validness) == (2, 1.0)
    assert b.per_type["LR"].correctness == 1.0
    assert (b.per_type["TB"].validness, b.per_type["TB"].correctness) == (0.5, 0.0)
    assert (a.per_type["LR"].validness, a.per_type["LR"].correctness) == (0.5, 0.5)
    assert b.reasons == {"no_stable_run": 1} and a.reasons == {"redundant": 1}
    md = cmp.breakdown_markdown().splitlines()
    assert "| DSR type | videos | base | aligned |" in md
    assert "| LR | 2 | 1.000 (1.000) | 0.500 (0.500) |" in md
    assert "| TB | 2 | 0.000 (0.500) | 1.000 (1.000) |" in md
    assert "| no_stable_run | 1 | 0 |" in md and "| redundant | 0 | 1 |" in md
    assert "| all invalid | 1 | 1 |" in md
    d = cmp.to_dict()["breakdown"]
    assert d[1]["per_type"]["LR"] == {"videos": 2, "validness": 0.5, "correctness": 0.5}
    # without prompt types: only the reasons; a prompt the types do not name is "?"
    plain = compare_runs([("base", base)], config=CompareConfig(n_boot=4))
    assert plain.breakdowns[0].per_type == {} and "DSR type" not in plain.breakdown_markdown()
    partial = compare_runs([("base", base)], config=CompareConfig(n_boot=4), dsr_types=[{}])
    assert set(partial.breakdowns[0].per_type) == {"?"}
    with pytest.raises(ValueError, match="dsr_types has 1 entries for 2 runs"):
        compare_runs([("a", base), ("b", base)], dsr_types=[types])
