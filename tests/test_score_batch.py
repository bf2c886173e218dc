"""score-batch: scores.parquet / summary.json against the official scorer, reasons, errors.

The oracle is ``tests/official_scorer.py``, a per-frame re-statement of the
official ``calc_dsr_score.py`` / ``calc_correctness.py``, run on the same boxes in the
official data shape; the prompts are the real 120 official test prompts.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from official_scorer import (
    frames_from_arrays,
    official_correctness,
    official_video_reward,
)
from reference_scorer import dsr_score as reference_dsr_score
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.presets import scoring_config
from spatialalign.prompts import DSRPrompt, read_prompts, write_prompts
from spatialalign.scoring.batch import score_run
from spatialalign.scoring.summary import format_summary

OUTPUTS = ("scores.parquet", "summary.json", "correctness.png")


# ---------------------------------------------------------------------------- helpers


def random_video(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense [n, 4] animal/object boxes with misses, zero-size boxes and coincident centres."""
    kind = rng.integers(0, 3)
    start, end = rng.uniform(0, 800, 2), rng.uniform(0, 800, 2)
    t = np.linspace(0, 1, n_frames)[:, None]
    centre = start + t * (end - start) + rng.normal(0, 15, (n_frames, 2))
    wh = rng.uniform(10, 150, (n_frames, 2))
    animal = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
    oc = rng.uniform(200, 600, 2)
    owh = rng.uniform(30, 200, 2)
    obj = np.tile(np.concatenate([oc - owh / 2, oc + owh / 2]), (n_frames, 1))
    if kind == 1:  # integer pixels: coincident centres and exact ties happen
        animal, obj = np.round(animal / 40) * 40, np.round(obj / 40) * 40
        animal[:, 2:] = np.maximum(animal[:, 2:], animal[:, :2])
    # zero-width / zero-height boxes on a few frames
    zw = rng.random(n_frames) < 0.08
    animal[zw, 2] = animal[zw, 0]
    zh = rng.random(n_frames) < 0.08
    obj[zh, 3] = obj[zh, 1]
    # missed detections
    animal[rng.random(n_frames) < 0.15] = np.nan
    obj[rng.random(n_frames) < 0.05] = np.nan
    return animal, obj


def long_tracks(sample_id: str, animal: np.ndarray, obj: np.ndarray, frames=None) -> dict:
    """The long tracks rows of one video (absent rows for NaN boxes)."""
    frames = np.arange(len(animal)) if frames is None else np.asarray(frames)
    cols: dict[str, list] = {k: [] for k in ("sample_id", "frame", "label", "x0", "y0", "x1", "y1")}
    for label, boxes in (("animal", animal), ("object", obj)):
        present = ~np.isnan(boxes).all(axis=1)
        n = int(present.sum())
        cols["sample_id"] += [sample_id] * n
        cols["frame"] += frames[present].tolist()
        cols["label"] += [label] * n
        for j, c in enumerate(("x0", "y0", "x1", "y1")):
            cols[c] += boxes[present, j].tolist()
    return cols


def write_run(
    run: Path,
    prompts: list[DSRPrompt],
    videos: dict[str, tuple[str, int, np.ndarray, np.ndarray]],
    *,
    detections: dict[str, tuple[str, str]] | None = None,
    rng: np.random.Generator | None = None,
    extra_tracks: dict | None = None,
) -> None:
    """Writes a run dir: prompts.parquet, manifest, tracks (rows shuffled), detections."""
    run.mkdir(parents=True, exist_ok=True)
    write_prompts(prompts, run / "prompts.parquet")  # the prompts stage's writer
    (run / "samples").mkdir(exist_ok=True)
    ids = list(videos)
    pq.write_table(
        pa.table(
            {
                "sample_id": ids,
                "prompt_id": [videos[s][0] for s in ids],
                "seed": pa.array([videos[s][1] for s in ids], pa.int32()),
                "path": [f"samples/{s}.mp4" for s in ids],
            }
        ),
        run / "samples" / "manifest.parquet",
    )
    cols: dict[str, list] = {k: [] for k in ("sample_id", "frame", "label", "x0", "y0", "x1", "y1")}
    for s in ids:
        for k, v in long_tracks(s, videos[s][2], videos[s][3]).items():
            cols[k] += v
    for k, v in (extra_tracks or {}).items():
        cols[k] += v
    table = pa.table(cols)
    table = table.append_column("score", pa.array(np.full(table.num_rows, 0.5)))
    if rng is not None:
        table = table.take(rng.permutation(table.num_rows))
    pq.write_table(table, run / "tracks.parquet", row_group_size=max(1, table.num_rows // 3))
    if detections is not None:
        pq.write_table(
            pa.table(
                {
                    "sample_id": list(detections),
                    "n_valid": [0] * len(detections),
                    "n_miss": [0] * len(detections),
                    "n_redundant": [0] * len(detections),
                    "longest_run": [0] * len(detections),
                    "status": [v[0] for v in detections.values()],
                    "reason": [v[1] for v in detections.values()],
                }
            ),
            run / "detections.parquet",
        )


@pytest.fixture(scope="module")
def official_prompts() -> list[DSRPrompt]:
    return read_prompts(OFFICIAL_CSV)


@pytest.fixture(scope="module")
def official_run(tmp_path_factory, official_prompts):
    """All 120 official prompts x 2 seeds with random boxes, some rejected or untracked."""
    rng = np.random.default_rng(7)
    run = tmp_path_factory.mktemp("official_run")
    videos, detections = {}, {}
    for p in official_prompts:
        for seed in range(2):
            sid = f"{p.prompt_id}_F81_seed{seed:02d}"
            n = int(rng.integers(14, 60))  # some fall below min_frames=20
            videos[sid] = (p.prompt_id, seed, *random_video(rng, n))
            u = rng.random()
            if u < 0.06:
                detections[sid] = ("rejected", "redundant")
            elif u < 0.09:
                detections[sid] = ("rejected", "no_stable_run")
            elif u < 0.11:  # never tracked, no detections row either
                videos[sid] = (p.prompt_id, seed, np.zeros((0, 4)), np.zeros((0, 4)))
            else:
                detections[sid] = ("valid", "")
    write_run(run, official_prompts, videos, detections=detections, rng=rng)
    result = score_run(run, config=scoring_config("official"), progress=False)
    return run, videos, detections, result


# ---------------------------------------------------------------------------- official


def test_dsr_equals_official_scorer_per_video(official_run, official_prompts) -> None:
    run, videos, detections, result = official_run
    by_id = {p.prompt_id: p for p in official_prompts}
    scores = {r["sample_id"]: r for r in result.scores.to_pylist()}
    assert list(scores) == list(videos)  # every manifest sample, in manifest order
    n_compared = 0
    for sid, (pid, seed, animal, obj) in videos.items():
        p = by_id[pid]
        row = scores[sid]
        assert row["prompt_id"] == pid and row["seed"] == seed
        rejected = detections.get(sid, ("valid", ""))[0] != "valid"
        if rejected or len(animal) == 0:  # the official detection step saves no frames
            expected = -100.0
        else:
            frames = frames_from_arrays(animal, obj, p.animal, p.object)
            expected = official_video_reward(frames, p.animal, p.object, p.dsr_type)
        if expected == -100.0:
            assert not row["valid"] and math.isnan(row["dsr"]), sid
        else:
            assert row["valid"], sid
            assert row["dsr"] == pytest.approx(expected, abs=1e-12), sid
            n_compared += 1
    assert n_compared > 120  # most videos are valid and compared


def test_summary_correctness_equals_official(official_run) -> None:
    run, videos, detections, result = official_run
    rewards = [-100.0 if not r["valid"] else r["dsr"] for r in result.scores.to_pylist()]
    official = official_correctness(rewards)
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["correctness"].values()) == official
    assert summary["correctness_at_0.7"] == official[7]
    assert summary["validness"] == official[0]
    assert summary["thresholds"] == list(np.arange(0, 1, 0.1))
    assert summary["thresholds"][7] == 0.7000000000000001


def test_reasons_and_counts(official_run) -> None:
    run, videos, detections, result = official_run
    scores = pq.read_table(run / "scores.parquet").to_pylist()
    for row in scores:
        sid = row["sample_id"]
        status, reason = detections.get(sid, (None, None))
        n_kept = row["n_kept"]
        if status == "rejected":
            assert row["reason"] == reason and not row["valid"]
        elif status is None:
            assert row["reason"] == "no_tracks" and n_kept == 0
        elif n_kept < 20:
            assert row["reason"] == "too_few_frames" and not row["valid"]
        else:
            assert row["reason"] == "" and row["valid"]
    summary = result.summary
    expected_reasons: dict[str, int] = {}
    for row in scores:
        if row["reason"]:
            expected_reasons[row["reason"]] = expected_reasons.get(row["reason"], 0) + 1
    assert summary["counts"]["reasons"] == expected_reasons
    assert set(expected_reasons) == {"redundant", "no_stable_run", "no_tracks", "too_few_frames"}
    assert summary["n_videos"] == len(videos) == summary["counts"]["videos"]
    # per type: counts add up and each type's Correctness@0.7 is the official one on its videos
    types = {s: pid.split("_")[1] for s, (pid, *_rest) in videos.items()}
    assert sum(g["n"] for g in summary["per_type"].values()) == len(videos)
    for t, group in summary["per_type"].items():
        rows = [r for r in scores if types[r["sample_id"]] == t]
        rewards = [r["dsr"] if r["valid"] else -100.0 for r in rows]
        assert group["n"] == len(rows)
        assert group["correctness_at_0.7"] == official_correctness(rewards)[7]
        valid = [r["dsr"] for r in rows if r["valid"]]
        assert group["mean_dsr"] == pytest.approx(np.mean(valid), abs=1e-12)
        assert group["validness"] == len(valid) / len(rows)
    assert "LR" in format_summary(summary) and "Correctness@tau" in format_summary(summary)


def test_components_match_reference_and_bottom_relation(tmp_path) -> None:
    """B (our extension) has no official oracle: check against the numpy reference."""
    rng = np.random.default_rng(3)
    types = ["LB", "BT", "RB", "BL", "TR"]
    prompts = [
        DSRPrompt(animal="cat", object="box", initial=t[0], final=t[1], prompt_id=f"p{i}")
        for i, t in enumerate(types)
    ]
    videos = {}
    for i, p in enumerate(prompts):
        for seed in range(3):
            videos[f"s{i}_{seed}"] = (p.prompt_id, seed, *random_video(rng, 30))
    write_run(tmp_path, prompts, videos, rng=rng)
    result = score_run(tmp_path, config=scoring_config("toy"), progress=False)
    cfg = scoring_config("toy")
    for row in result.scores.to_pylist():
        pid, _, animal, obj = videos[row["sample_id"]]
        p = prompts[int(pid[1:])]
        expected = reference_dsr_score(
            animal, obj, p.initial, p.final, m=cfg.m, min_frames=cfg.min_frames
        )
        if expected is None:
            assert not row["valid"]
        else:
            assert row["dsr"] == pytest.approx(expected, abs=1e-12)
            # the components recombine into the DSR
            parts = row["r_init"] + row["g_init"] + row["r_final"] + row["g_final"]
            assert row["dsr"] == pytest.approx(parts / 8 + 0.5, abs=1e-12)
    assert result.summary["config"]["m"] == 2


def test_detections_status_and_reason_rules(tmp_path) -> None:
    """status decides; a null status falls back to the reason; empty reason -> status."""
    rng = np.random.default_rng(8)
    p = DSRPrompt(animal="fox", object="stump", initial="L", final="R", prompt_id="p0")
    videos = {f"s{i}": ("p0", i, *random_video(rng, 60)) for i in range(5)}
    detections = {
        "s0": ("Valid ", ""),  # case and spaces do not matter
        "s1": ("rejected", ""),  # no reason given: the status is the reason
        "s2": (None, "unreadable_video"),
        "s3": (None, ""),  # neither: accepted
        "s4": ("rejected", "redundant"),
    }
    write_run(tmp_path, [p], videos, detections=detections)
    rows = {r["sample_id"]: r for r in score_run(tmp_path, progress=False).scores.to_pylist()}
    expected = {"s0": "", "s1": "rejected", "s2": "unreadable_video", "s3": "", "s4": "redundant"}
    for sid, reason in expected.items():
        if reason == "" and rows[sid]["n_kept"] < 20:
            reason = "too_few_frames"
        assert rows[sid]["reason"] == reason, sid
        assert rows[sid]["valid"] == (reason == ""), sid
        assert math.isnan(rows[sid]["dsr"]) != rows[sid]["valid"], sid


# ---------------------------------------------------------------------------- tracks


def test_frame_order_gaps_and_nan_rows(tmp_path) -> None:
    """Frames need not be contiguous or sorted; an all-NaN box row means 'not detected'."""
    rng = np.random.default_rng(11)
    p = DSRPrompt(animal="fox", object="stump", initial="L", final="R", prompt_id="p0")
    animal, obj = random_video(rng, 40)
    animal[:3] = [[10, 10, 50, 50]] * 3
    obj[:3] = [[100, 10, 140, 50]] * 3
    frames = np.sort(rng.choice(1000, size=40, replace=False))  # sparse frame indices
    write_run(tmp_path, [p], {}, rng=rng)  # prompts only
    cols = long_tracks("s0", animal, obj, frames)
    # an explicit all-NaN row for a frame where the animal was missed
    missed = int(np.flatnonzero(np.isnan(animal).all(axis=1))[0])
    cols["sample_id"].append("s0")
    cols["frame"].append(int(frames[missed]))
    cols["label"].append("animal")
    for c in ("x0", "y0", "x1", "y1"):
        cols[c].append(float("nan"))
    table = pa.table(cols)
    pq.write_table(table.take(rng.permutation(table.num_rows)), tmp_path / "tracks.parquet")
    pq.write_table(
        pa.table({"sample_id": ["s0"], "prompt_id": ["p0"], "seed": [5]}),
        tmp_path / "samples" / "manifest.parquet",
    )
    result = score_run(tmp_path, progress=False)
    row = result.scores.to_pylist()[0]
    expected = official_video_reward(
        frames_from_arrays(animal, obj, "fox", "stump"), "fox", "stump", "LR"
    )
    assert row["dsr"] == pytest.approx(expected, abs=1e-12)
    assert row["r_init"] == pytest.approx(1.0)  # the first three frames are clearly "left"


def test_float32_tracks_are_accepted(tmp_path) -> None:
    rng = np.random.default_rng(5)
    p = DSRPrompt(animal="fox", object="stump", initial="R", final="T", prompt_id="p0")
    animal, obj = random_video(rng, 50)
    animal, obj = animal.astype(np.float32), obj.astype(np.float32)
    write_run(tmp_path, [p], {"s0": ("p0", 0, animal, obj)})
    t = pq.read_table(tmp_path / "tracks.parquet")
    t = t.cast(pa.schema([f.with_type(pa.float32()) if f.name[0] in "xy" else f for f in t.schema]))
    pq.write_table(t, tmp_path / "tracks.parquet")
    row = score_run(tmp_path, progress=False).scores.to_pylist()[0]
    expected = official_video_reward(
        frames_from_arrays(animal.astype(np.float64), obj.astype(np.float64), "fox", "stump"),
        "fox",
        "stump",
        "RT",
    )
    assert row["dsr"] == pytest.approx(expected, abs=1e-12)


def test_tracks_of_unknown_samples_are_ignored_with_a_warning(tmp_path) -> None:
    rng = np.random.default_rng(2)
    p = DSRPrompt(animal="fox", object="stump", initial="L", final="R", prompt_id="p0")
    a, o = random_video(rng, 30)
    extra = long_tracks("stranger", a, o)
    write_run(tmp_path, [p], {"s0": ("p0", 0, a, o)}, extra_tracks=extra)
    result = score_run(tmp_path, progress=False)
    assert result.n_videos == 1
    assert any("not in the manifest" in w for w in result.warnings)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["label"].__setitem__(0, "dog"), "unknown label"),
        (lambda c: [c[k].append(c[k][0]) for k in c], "more than one"),
        (lambda c: c["x1"].__setitem__(0, c["x0"][0] - 1), "inverted box"),
        (lambda c: c["y0"].__setitem__(0, float("inf")), "non-finite"),
        (lambda c: c["x0"].__setitem__(0, float("nan")), "non-finite"),
        (lambda c: c["frame"].__setitem__(0, -1), "negative frame"),
    ],
)
def test_bad_tracks_rows_are_refused_with_the_sample_named(tmp_path, mutate, message) -> None:
    rng = np.random.default_rng(1)
    p = DSRPrompt(animal="fox", object="stump", initial="L", final="R", prompt_id="p0")
    a, o = random_video(rng, 25)
    a[0] = [1, 1, 5, 5]
    write_run(tmp_path, [p], {"s0": ("p0", 0, a, o)})
    cols = pq.read_table(tmp_path / "tracks.parquet").to_pydict()
    mutate(cols)
    pq.write_table(pa.table(cols), tmp_path / "tracks.parquet")
    with pytest.raises(SpatialAlignError, match=message):
        score_run(tmp_path, progress=False)
    assert not any((tmp_path / f).exists() for f in OUTPUTS)


# ---------------------------------------------------------------------------- CLI


@pytest.fixture()
def small_run(tmp_path) -> Path:
    rng = np.random.default_rng(9)
    prompts = [
        DSRPrompt(animal="fox", object="stump", initial="L", final="R", prompt_id="p0"),
        DSRPrompt(animal="owl", object="log", initial="T", final="L", prompt_id="p1"),
    ]
    videos = {f"s{i}": (f"p{i % 2}", i, *random_video(rng, 24 + i)) for i in range(6)}
    write_run(tmp_path / "run", prompts, videos, rng=rng)
    return tmp_path / "run"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_outputs_and_ends_with_one_line(small_run, capsys) -> None:
    code, out, err = run_cli(["score-batch", str(small_run)], capsys)
    assert code == 0, err
    for name in OUTPUTS:
        assert (small_run / name).is_file()
    assert (small_run / "correctness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = out.strip().splitlines()[-1]
    assert last.startswith("scored 6 videos:") and "Correctness@0.7" in last
    assert not [p for p in small_run.iterdir() if p.name.endswith(".tmp")]


def test_cli_preset_and_overrides_reach_the_scorer(small_run, capsys, tmp_path) -> None:
    out_dir = tmp_path / "elsewhere"
    code, _, err = run_cli(
        ["score-batch", str(small_run), "--preset", "toy", "--min-frames", "27", "--m", "4",
         "--out", str(out_dir), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["config"]["min_frames"] == 27 and summary["config"]["m"] == 4
    assert summary["config"]["max_redundant"] == scoring_config("toy").max_redundant
    scores = pq.read_table(out_dir / "scores.parquet").to_pylist()
    for row in scores:
        assert row["valid"] == (row["n_kept"] >= 27)
    assert not (small_run / "scores.parquet").exists()  # --out leaves the run dir alone


def test_cli_external_prompts_file(tmp_path, official_prompts, capsys) -> None:
    """--prompts reads the official CSV format directly."""
    rng = np.random.default_rng(4)
    chosen = official_prompts[:3]
    videos = {f"v{i}": (p.prompt_id, 0, *random_video(rng, 30)) for i, p in enumerate(chosen)}
    write_run(tmp_path, chosen, videos)
    (tmp_path / "prompts.parquet").unlink()
    code, _, err = run_cli(["score-batch", str(tmp_path), "--prompts", str(OFFICIAL_CSV)], capsys)
    assert code == 0, err
    rows = pq.read_table(tmp_path / "scores.parquet").to_pylist()
    for row, p in zip(rows, chosen, strict=True):
        _, _, a, o = videos[row["sample_id"]]
        expected = official_video_reward(
            frames_from_arrays(a, o, p.animal, p.object), p.animal, p.object, p.dsr_type
        )
        assert (row["dsr"] if row["valid"] else -100.0) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda run: (run / "tracks.parquet").write_bytes(b"PAR1 this is not parquet"), "tracks"),
        (lambda run: (run / "tracks.parquet").unlink(), "tracks file not found"),
        (lambda run: (run / "samples" / "manifest.parquet").unlink(), "manifest"),
        (lambda run: (run / "prompts.parquet").write_text("garbage"), "prompts"),
        (
            lambda run: pq.write_table(
                pa.table({"sample_id": ["s0"], "prompt_id": ["nope"], "seed": [0]}),
                run / "samples" / "manifest.parquet",
            ),
            "not in the prompts",
        ),
        (
            lambda run: pq.write_table(
                pa.table({"sample_id": ["s0"], "status": ["valid"]}), run / "detections.parquet"
            ),
            "missing column",
        ),
    ],
)
def test_cli_bad_input_one_line_error_and_nothing_written(small_run, capsys, break_it, message):
    break_it(small_run)
    code, out, err = run_cli(["score-batch", str(small_run), "--plots"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err + out
    for name in (*OUTPUTS, "plots"):
        assert not (small_run / name).exists()
    assert not [p for p in small_run.iterdir() if p.name.startswith(".")]


def test_corrupt_tracks_keeps_previous_outputs_intact(small_run, capsys) -> None:
    """A failed rerun must not touch the outputs of an earlier successful run."""
    assert run_cli(["score-batch", str(small_run)], capsys)[0] == 0
    before = {n: (small_run / n).read_bytes() for n in OUTPUTS}
    data = (small_run / "tracks.parquet").read_bytes()
    (small_run / "tracks.parquet").write_bytes(data[: len(data) // 2])  # truncated file
    code, _, err = run_cli(["score-batch", str(small_run)], capsys)
    assert code == 1 and err.startswith("error: ")
    assert {n: (small_run / n).read_bytes() for n in OUTPUTS} == before


def test_plots_written_and_resumed(small_run, capsys) -> None:
    code, _, err = run_cli(["score-batch", str(small_run), "--plots"], capsys)
    assert code == 0, err
    pngs = sorted((small_run / "plots").glob("*.png"))
    assert [p.stem for p in pngs] == [f"s{i}" for i in range(6)]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    stamp = {p: p.stat().st_mtime_ns for p in pngs}
    os.utime(pngs[0], ns=(1, 1))  # mark: a rerun with the same inputs keeps this file
    assert run_cli(["score-batch", str(small_run), "--plots"], capsys)[0] == 0
    assert pngs[0].stat().st_mtime_ns == 1
    assert all(p.stat().st_mtime_ns == stamp[p] for p in pngs[1:])
    # another config redraws everything
    assert run_cli(["score-batch", str(small_run), "--plots", "--m", "5"], capsys)[0] == 0
    assert pngs[0].stat().st_mtime_ns != 1
