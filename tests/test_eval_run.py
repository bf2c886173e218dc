"""``spatialalign eval`` on the toy model: files, summary keys, reruns, best-of-N, errors."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_json
from spatialalign.core.schemas import SCORES
from spatialalign.evaluation.bestofn import candidate_seed, select_best
from spatialalign.evaluation.eval_run import EvalRunConfig, eval_run
from spatialalign.evaluation.metrics_file import ALL_COLUMNS
from spatialalign.rundir.layout import RunDir
from tolerance import assert_videos_close

SCORE_BATCH_KEYS = {
    "n_videos",
    "n_valid",
    "validness",
    "correctness_at_0.7",
    "mean_dsr",
    "correctness",
    "thresholds",
    "counts",
    "per_type",
    "config",
}


# ------------------------------------------------------------------ selection, by hand


def _candidates(rows: list[tuple[str, int, bool, float]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"sample_id": f"{p}_s{seed}", "prompt_id": p, "seed": seed, "valid": v, "dsr": d}
            for p, seed, v, d in rows
        ]
    )


def test_candidate_seeds_nest_and_start_at_the_slot():
    assert [candidate_seed(1, k, 5) for k in range(4)] == [1, 6, 11, 16]
    four = {candidate_seed(s, k, 5) for s in range(5) for k in range(4)}
    eight = {candidate_seed(s, k, 5) for s in range(5) for k in range(8)}
    assert four == set(range(20)) and four < eight == set(range(40))


def test_select_best_picks_the_max_dsr_valid_candidate():
    nan = math.nan
    # 2 slots x 3 candidates: slot s, candidate k has seed s + 2k
    table = _candidates(
        [
            # p1 slot 0: an invalid row with a high number loses to every valid one
            ("p1", 0, True, 0.5),
            ("p1", 2, False, 0.95),
            ("p1", 4, True, 0.8),
            # p1 slot 1: a tie goes to the lowest k
            ("p1", 1, True, 0.7),
            ("p1", 3, True, 0.7),
            ("p1", 5, True, 0.6),
            # p2 slot 0: nothing valid -> candidate 0, invalid
            ("p2", 0, False, nan),
            ("p2", 2, False, nan),
            ("p2", 4, False, nan),
            # p2 slot 1
            ("p2", 1, True, 0.2),
            ("p2", 3, False, nan),
            ("p2", 5, True, 0.3),
            # a seed beyond slots x N is not a candidate of this run
            ("p2", 6, True, 1.0),
        ]
    )
    sel = select_best(table, best_of=3, seeds=2).to_pylist()
    got = {(r["prompt_id"], r["slot"]): r for r in sel}
    assert len(sel) == 4
    assert (got["p1", 0]["k"], got["p1", 0]["candidate"], got["p1", 0]["dsr"]) == (2, "p1_s4", 0.8)
    assert got["p1", 0]["n_valid_candidates"] == 2
    assert (got["p1", 1]["k"], got["p1", 1]["candidate_seed"]) == (0, 1)
    assert got["p2", 0]["k"] == 0 and not got["p2", 0]["valid"]
    assert math.isnan(got["p2", 0]["dsr"]) and got["p2", 0]["n_valid_candidates"] == 0
    assert (got["p2", 1]["k"], got["p2", 1]["candidate_seed"], got["p2", 1]["dsr"]) == (2, 5, 0.3)


def test_candidates_from_a_first_seed_start_at_the_slots_seed():
    # 2 slots from seed 100: slot s, candidate k has seed 100 + s + 2k
    assert [candidate_seed(1, k, 2, first_seed=100) for k in range(3)] == [101, 103, 105]
    table = _candidates(
        [
            ("p1", 100, True, 0.5),
            ("p1", 102, True, 0.9),
            ("p1", 101, False, math.nan),
            ("p1", 103, True, 0.2),
            # seeds of another first seed are not candidates of this run
            ("p1", 99, True, 1.0),
            ("p1", 104, True, 1.0),
            ("p1", 0, True, 1.0),
        ]
    )
    sel = select_best(table, best_of=2, seeds=2, first_seed=100).to_pylist()
    got = {r["slot"]: (r["k"], r["candidate"], r["candidate_seed"]) for r in sel}
    assert got == {0: (1, "p1_s102", 102), 1: (1, "p1_s103", 103)}
    assert [r["n_candidates"] for r in sel] == [2, 2]


def test_select_best_refuses_missing_candidates():
    table = _candidates([("p1", 0, True, 0.5)])
    with pytest.raises(SpatialAlignError, match="candidate"):
        select_best(table, best_of=2, seeds=1)


# ------------------------------------------------------------------ end to end (toy)


def _quiet(cfg: EvalRunConfig) -> EvalRunConfig:
    cfg.progress = False
    return cfg


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, one_torch_thread):
    run = tmp_path_factory.mktemp("eval") / "base"
    lines: list[str] = []
    result = eval_run(run, _quiet(EvalRunConfig(prompts="toy-test:3", seeds=2)), echo=lines.append)
    return run, result, lines


def test_eval_writes_scores_summary_and_metrics(plain_run):
    run, result, _ = plain_run
    rd = RunDir(run)
    scores = rd.read_scores()
    assert scores.schema.names == SCORES.names and scores.num_rows == 6
    metrics = pq.read_table(rd.metrics_path)
    assert metrics.column_names == ["sample_id", *ALL_COLUMNS]
    assert metrics.column("sample_id").to_pylist() == scores.column("sample_id").to_pylist()
    assert np.isfinite(metrics.column("sharpness").to_numpy()).all()
    summary = read_json(rd.summary_path)
    assert SCORE_BATCH_KEYS <= set(summary)
    assert set(summary["metrics"]) == set(ALL_COLUMNS)
    assert summary["metrics"]["id_consistency"] is None  # no --dinov2
    assert summary["metrics"]["sharpness"] == pytest.approx(
        float(np.mean(metrics.column("sharpness").to_numpy()))
    )
    assert summary["sampling"]["videos_sampled"] == 6 and summary["sampling"]["factor"] == 1
    assert summary["sampling"]["wall_seconds"] > 0
    assert summary["eval"]["seeds"] == 2 and summary["eval"]["n_prompts"] == 3
    assert sorted(set(scores.column("seed").to_pylist())) == [0, 1]
    assert result.line().startswith("eval: 6 videos")


def test_eval_rerun_redoes_nothing(plain_run, one_torch_thread):
    run, first, _ = plain_run
    rd = RunDir(run)
    mtimes = {p: p.stat().st_mtime_ns for p in rd.samples_dir.glob("*.mp4")}
    lines: list[str] = []
    again = eval_run(run, _quiet(EvalRunConfig(prompts="toy-test:3", seeds=2)), echo=lines.append)
    text = "\n".join(lines)
    assert "generated 0 video(s)" in text
    assert "track: 0 video(s) tracked" in text
    assert "metrics: 0 video(s) measured" in text and "6 reused" in text
    assert {p: p.stat().st_mtime_ns for p in rd.samples_dir.glob("*.mp4")} == mtimes
    assert again.summary["sampling"] == first.summary["sampling"]
    assert again.summary["metrics"] == first.summary["metrics"]


@pytest.mark.slow
def test_best_of_keeps_the_best_candidate_per_slot(tmp_path, one_torch_thread):
    run = RunDir(tmp_path / "bo2")
    cfg = EvalRunConfig(prompts="toy-test:2", seeds=1, best_of=2)
    result = eval_run(run.root, _quiet(cfg))
    cand = RunDir(run.candidates_dir)
    cscores = cand.read_scores().to_pylist()
    assert len(cscores) == 4  # 2 prompts x 1 slot x 2 candidates
    scores = {r["prompt_id"]: r for r in run.read_scores().to_pylist()}
    assert len(scores) == 2
    for pid, row in scores.items():
        mine = [c for c in cscores if c["prompt_id"] == pid]
        valid = [c for c in mine if c["valid"]]
        assert row["seed"] == 0 and row["sample_id"].endswith("_seed00")
        if valid:  # the selected video, retracked in RUN, scores as the best candidate did
            best = max(valid, key=lambda c: (c["dsr"], -c["seed"]))
            assert row["valid"] and row["dsr"] == pytest.approx(best["dsr"])
        else:
            assert not row["valid"]
    manifest = run.read_manifest(["path"], resolve_paths=False).column("path").to_pylist()
    assert all(p.startswith("candidates/samples/") for p in manifest)
    sampling = result.summary["sampling"]
    assert sampling["videos_sampled"] == 2 * 2  # N x slots
    assert sampling["factor"] == 2 and sampling["slots"] == 2
    assert run.selection_path.is_file()

    # a rerun reuses every candidate and keeps the compute figure
    lines: list[str] = []
    again = eval_run(run.root, _quiet(cfg), echo=lines.append)
    assert "generated 0 video(s)" in "\n".join(lines)
    assert sum("track: 0 video(s) tracked" in line for line in lines) == 2
    assert again.summary["sampling"] == sampling

    # a larger N samples only the new seeds: best-of-2's candidates are best-of-3's first two
    lines.clear()
    three = eval_run(
        run.root, _quiet(EvalRunConfig(prompts="toy-test:2", seeds=1, best_of=3)), echo=lines.append
    )
    assert "generated 2 video(s) (2 new), skipped 4 finished" in "\n".join(lines)
    assert three.summary["sampling"]["videos_sampled"] == 6
    for pid, row in scores.items():
        now = {r["prompt_id"]: r for r in run.read_scores().to_pylist()}[pid]
        if row["valid"]:
            assert now["valid"] and now["dsr"] >= row["dsr"]


@pytest.mark.slow
def test_candidate_zero_is_the_base_video(plain_run, tmp_path, one_torch_thread):
    from spatialalign.core.video import read_video

    base, _, _ = plain_run
    run = RunDir(tmp_path / "bo2")
    eval_run(run.root, _quiet(EvalRunConfig(prompts="toy-test:3", seeds=2, best_of=2)))
    cand = RunDir(run.candidates_dir)
    for seed in (0, 1):
        name = next(RunDir(base).samples_dir.glob(f"*_seed{seed:02d}.mp4")).name
        # the base run sampled 3 prompts x 2 seeds, best-of another batch composition
        assert_videos_close(
            read_video(cand.samples_dir / name), read_video(RunDir(base).samples_dir / name)
        )


def test_first_seed_with_best_of_keeps_candidate_zero_the_base_video(tmp_path, one_torch_thread):
    """``eval --first-seed F``: the slots are seeds F..F+S-1 (names, seed column, summary);
    with ``--best-of`` candidate k of slot s has seed F + s + k*S, so candidate 0 of every
    slot is the base run's video, and the kept videos carry the slots' names and seeds."""
    from spatialalign.core.video import read_video
    from spatialalign.models.backends import BackendConfig

    def cfg(best_of: int) -> EvalRunConfig:
        backend = BackendConfig(steps=4)
        return EvalRunConfig(
            backend=backend, prompts="toy-test:2", seeds=2, first_seed=7, best_of=best_of
        )

    base = RunDir(tmp_path / "base")
    result = eval_run(base.root, _quiet(cfg(1)))
    scores = base.read_scores().to_pylist()
    assert sorted({r["seed"] for r in scores}) == [7, 8] and len(scores) == 4
    assert all(r["sample_id"].endswith(f"_seed{r['seed']:02d}") for r in scores)
    assert result.summary["eval"]["first_seed"] == 7

    run = RunDir(tmp_path / "bo2")
    eval_run(run.root, _quiet(cfg(2)))
    cand = RunDir(run.candidates_dir)
    assert sorted({r["seed"] for r in cand.read_scores().to_pylist()}) == [7, 8, 9, 10]
    for path in base.samples_dir.glob("*.mp4"):
        # the base run sampled 2 prompts x 2 seeds, best-of another batch composition
        assert_videos_close(read_video(cand.samples_dir / path.name), read_video(path))
    selection = pq.read_table(run.selection_path).to_pylist()
    for sel in selection:
        assert sel["candidate_seed"] == 7 + sel["slot"] + 2 * sel["k"]
        assert sel["sample_id"].endswith(f"_seed{7 + sel['slot']:02d}")
    kept = run.read_scores().to_pylist()
    assert sorted((r["prompt_id"], r["seed"]) for r in kept) == sorted(
        (r["prompt_id"], r["seed"]) for r in scores
    )
    assert sorted(r["sample_id"] for r in kept) == sorted(r["sample_id"] for r in scores)


# ------------------------------------------------------------------ one-line errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompts", "no/such/prompts.csv"], "prompts file not found"),
        (["--prompts", "toy-test", "--best-of", "0"], "--best-of must be in 1..100"),
        (["--prompts", "toy-test", "--detector", "yolo"], "unknown detector 'yolo'"),
        (["--prompts", "toy-test", "--dinov2", "no/such/dir"], "model directory not found"),
        (["--prompts", "toy-test", "--musiq", "no/such/musiq.pth"], "weights file not found"),
        (["--prompts", "toy-test:0"], "expected a file, toy-test or toy-test:N"),
        (["--prompts", "toy-test", "--seeds", "0"], "--seeds must be in 1..1000, got 0"),
        (["--prompts", "toy-test", "--first-seed", "-5"], "--first-seed must be >= 0, got -5"),
        (
            ["--prompts", "toy-test", "--first-seed", "2147483600", "--best-of", "10"],
            "--first-seed 2147483600 + --seeds 5 x 10 reaches seed 2147483649",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run), *args])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("error:")
    assert not run.exists()  # refused before anything was written


def test_unknown_model_is_one_line_in_every_verb_that_samples(tmp_path, capsys):
    # the back end's --model is one spec's option: the same one-line error everywhere
    for verb in ("eval", "sample", "loop", "train"):
        with pytest.raises(SystemExit) as e:
            main([verb, str(tmp_path / verb), "--model", "sora"])
        assert e.value.code == 1
        assert (
            capsys.readouterr().err
            == "error: unknown model 'sora' (choose from toy, toy-hard, wan)\n"
        )
        assert not (tmp_path / verb).exists()


# ------------------------------------------------------------------ neural metrics


def _save_tiny_models(root):
    """A tiny random DINOv2 and CLIP saved as local model directories."""
    import torch
    import transformers

    torch.manual_seed(0)
    dino_cfg = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=14,
    )
    transformers.Dinov2Model(dino_cfg).save_pretrained(root / "dino")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz.":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    tok = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    text = dict(vocab_size=len(tok), max_position_embeddings=32, bos_token_id=0, eos_token_id=1)
    clip_cfg = transformers.CLIPConfig(
        text_config={**small, **text, "pad_token_id": 1},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    transformers.CLIPModel(clip_cfg).save_pretrained(root / "clip")
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tok)
    processor.save_pretrained(root / "clip")
    return root / "dino", root / "clip"


def test_neural_metrics_fill_their_columns_and_a_model_change_recomputes(
    plain_run, tmp_path, one_torch_thread
):
    import shutil

    base, first, _ = plain_run
    run = tmp_path / "copy"
    shutil.copytree(base, run)  # a moved run directory keeps its videos and tracks
    dino, clip = _save_tiny_models(tmp_path)
    cfg = EvalRunConfig(prompts="toy-test:3", seeds=2, dinov2=str(dino), clip=str(clip))
    cfg.dino_image_size = 28
    lines: list[str] = []
    result = eval_run(run, _quiet(cfg), echo=lines.append)
    text = "\n".join(lines)
    assert "generated 0 video(s)" in text and "track: 0 video(s) tracked" in text
    assert "metrics: 6 video(s) measured (6 settings changed: clip" in text
    means = result.summary["metrics"]
    for col in ("id_consistency", "id_consistency_first", "clip_iqa_natural"):
        assert means[col] is not None and math.isfinite(means[col])
    assert 0 < means["clip_iqa_natural"] < 1
    # the proxies do not depend on the models
    assert means["sharpness"] == pytest.approx(first.summary["metrics"]["sharpness"])
    assert result.summary["eval"]["dinov2"] == str(dino.resolve())
    lines.clear()
    eval_run(run, _quiet(cfg), echo=lines.append)
    assert "metrics: 0 video(s) measured, 6 reused" in "\n".join(lines)


def test_musiq_fills_imaging_quality_and_its_weights_are_part_of_the_settings(
    plain_run, tmp_path, monkeypatch, one_torch_thread
):
    import shutil

    import torch

    pytest.importorskip("pyiqa")
    from pyiqa.archs.musiq_arch import MUSIQ
    from safetensors.torch import save_file
    from spatialalign.evaluation import musiq

    base, _, _ = plain_run
    run = tmp_path / "copy"
    shutil.copytree(base, run)
    tiny = dict(hidden_size=32, mlp_dim=64, num_heads=2, num_layers=1)
    torch.manual_seed(0)
    weights = tmp_path / "musiq.safetensors"
    save_file(MUSIQ(pretrained=False, num_class=1, **tiny).state_dict(), str(weights))
    load = musiq.load_musiq
    # eval builds the full-size MUSIQ of the SPAQ checkpoint; these weights are tiny
    monkeypatch.setattr(musiq, "load_musiq", lambda path: load(path, **tiny))

    cfg = EvalRunConfig(prompts="toy-test:3", seeds=2, musiq=str(weights))
    lines: list[str] = []
    result = eval_run(run, _quiet(cfg), echo=lines.append)
    assert "metrics: 6 video(s) measured (6 settings changed: musiq" in "\n".join(lines)
    quality = pq.read_table(RunDir(run).metrics_path).column("imaging_quality").to_numpy()
    assert np.isfinite(quality).all()
    assert result.summary["metrics"]["imaging_quality"] == pytest.approx(quality.mean())
    assert result.summary["eval"]["musiq"] == str(weights.resolve())
    assert math.isnan(pq.read_table(RunDir(base).metrics_path)["imaging_quality"][0].as_py())
    lines.clear()
    eval_run(run, _quiet(cfg), echo=lines.append)
    assert "metrics: 0 video(s) measured, 6 reused" in "\n".join(lines)


def test_cli_rerun_prints_the_summary_line(plain_run, capsys, one_torch_thread):
    run, _, _ = plain_run
    main(["eval", str(run), "--prompts", "toy-test:3", "--seeds", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert "sample: generated 0 video(s)" in out[0]
    assert out[-1].startswith("eval: 6 videos (") and "Correctness@0.7" in out[-1]


def test_refuses_to_run_sharded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "run"), "--prompts", "toy-test"])
    assert "eval runs in one process" in capsys.readouterr().err


def test_toy_test_refuses_a_run_with_other_prompts(plain_run, capsys):
    run, _, _ = plain_run
    with pytest.raises(SystemExit):
        main(["eval", str(run), "--prompts", "toy-test:2", "--seeds", "2"])
    assert "holds other prompts than toy-test:2" in capsys.readouterr().err
