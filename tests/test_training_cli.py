"""``spatialalign train RUN_DIR`` on a tiny toy run directory: cache, train, clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("peft")

from spatialalign.cli import main  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.core.fileio import write_parquet  # noqa: E402
from spatialalign.core.schemas import PAIRS, SCORES  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.rundir.layout import RunDir  # noqa: E402
from spatialalign.training.data import TrainData  # noqa: E402
from spatialalign.training.trainer import check_fit  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--max-steps", "2", "--train-batch-size", "2", "--lr-warmup-steps", "1", "-q"]


def _scores(manifest: pa.Table) -> pa.Table:
    ids = manifest.column("sample_id").to_pylist()
    rows = {
        "sample_id": ids,
        "prompt_id": manifest.column("prompt_id").to_pylist(),
        "seed": manifest.column("seed").to_pylist(),
        "valid": [i % 3 != 2 for i in range(len(ids))],
        "reason": ["" if i % 3 != 2 else "too_few_frames" for i in range(len(ids))],
        "dsr": [0.9 - 0.3 * (i % 3) for i in range(len(ids))],
    }
    for col in ("r_init", "r_final", "g_init", "g_final"):
        rows[col] = [0.0] * len(ids)
    rows["n_kept"] = [9] * len(ids)
    return pa.Table.from_pydict(rows, schema=SCORES)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """3 prompts x 2 seeds sampled with the shipped toy model (2 steps); hand-made scores
    and pairs (seed 0 wins over seed 1)."""
    root = tmp_path_factory.mktemp("train") / "run"
    main(["prompts", str(root), "--train", "3", "--test", "0"])
    main(["sample", str(root), "--model", "toy", "--seeds", "2", "--steps", "2"])
    run = RunDir(root)
    write_parquet(_scores(run.read_manifest()), run.scores_path)
    _pair_seed0_over_seed1(run)
    return root


def test_train_caches_trains_and_the_adapter_samples(run_dir, tmp_path, capsys):
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    main(["train", str(root), *FAST])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("trained dpo+zo LoRA on 3 pairs of 3 prompts: 2 steps, loss ")
    run = RunDir(root)
    assert (run.train_dir / "pytorch_lora_weights.safetensors").is_file()
    assert (run.train_dir / "train_log.jsonl").is_file()
    assert len(list((run.cache_dir / "latents").glob("*.safetensors"))) == 6
    # the adapter samples through `sample --adapter`
    main(["sample", str(tmp_path / "aligned"), "--prompts", str(run.prompts_path),
          "--model", "toy", "--seeds", "1", "--steps", "2", "--adapter", str(run.train_dir)])  # fmt: skip
    assert RunDir(tmp_path / "aligned").read_manifest().num_rows == 3
    # the same call again reuses the finished run (as every stage reuses finished work)
    adapter = run.train_dir / "pytorch_lora_weights.safetensors"
    before = (adapter.read_bytes(), adapter.stat().st_mtime_ns)
    main(["train", str(root), *FAST])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("already trained: ")
    assert (adapter.read_bytes(), adapter.stat().st_mtime_ns) == before
    # another configuration refuses to overwrite; --resume finds it finished, reuses the cache
    with pytest.raises(SystemExit) as e:
        main(["train", str(root), *FAST, "--beta", "2"])
    assert e.value.code == 1 and "already holds a training run" in capsys.readouterr().err
    main(["train", str(root), *FAST, "--resume"])
    assert "2 steps" in capsys.readouterr().out
    # resuming on other pairs would silently change the data: refused
    table = pq.read_table(run.pairs_path).slice(0, 2)
    write_parquet(table, run.pairs_path)
    with pytest.raises(SystemExit):
        main(["train", str(root), *FAST, "--resume"])
    assert "pairs changed since the run started" in capsys.readouterr().err


def test_sft_trains_on_the_top_scored_samples(run_dir, tmp_path, capsys):
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    main(["train", str(root), *FAST, "--loss", "sft", "--sft-top-k", "1"])
    assert "trained sft LoRA on 3 samples of 3 prompts" in capsys.readouterr().out


def _pair_seed0_over_seed1(run: RunDir) -> None:
    manifest = run.read_manifest()
    by_prompt: dict[str, dict[int, str]] = {}
    for r in manifest.select(["sample_id", "prompt_id", "seed"]).to_pylist():
        by_prompt.setdefault(r["prompt_id"], {})[r["seed"]] = r["sample_id"]
    pairs = {"prompt_id": [], "winner": [], "loser": []}
    for pid, seeds in sorted(by_prompt.items()):
        pairs["prompt_id"].append(pid)
        pairs["winner"].append(seeds[0])
        pairs["loser"].append(seeds[1])
    write_parquet(pa.Table.from_pydict(pairs, schema=PAIRS), run.pairs_path)


def test_train_wan_end_to_end_on_a_tiny_pipeline(tmp_path, capsys):
    """sample (tiny random WanPipeline) -> pairs -> train --model wan: the VAE/UMT5 cache and
    an adapter that WanPipeline.load_lora_weights takes."""
    from diffusers import WanPipeline
    from shared_data import OFFICIAL_CSV
    from spatialalign.lora.adapter import load_lora_into_pipeline
    from spatialalign.prompts import read_prompts, write_prompts
    from test_sampling_wan import build_tiny_wan

    prompts = read_prompts(OFFICIAL_CSV)[:2]
    wan_dir = build_tiny_wan(tmp_path / "wan", prompts)
    root = tmp_path / "run"
    write_prompts(prompts, root / "prompts.parquet")
    main(["sample", str(root), "--model", "wan", "--model-path", str(wan_dir), "--num-frames",
          "5", "--height", "16", "--width", "16", "--steps", "2", "--seeds", "2", "--fps", "8",
          "--device", "cpu"])  # fmt: skip
    run = RunDir(root)
    _pair_seed0_over_seed1(run)
    # the official recipe is --model wan's default (its 48 pairs a step cut to 4 here)
    main(["train", str(root), "--model", "wan", "--model-path", str(wan_dir), *FAST,
          "--global-batch-size", "4"])  # fmt: skip
    assert "trained dpo+zo LoRA on 2 pairs of 2 prompts" in capsys.readouterr().out
    saved = json.loads((run.train_dir / "train_config.json").read_text())
    assert saved["recipe"]["name"] == "official" and saved["global_batch"] == 4
    assert (saved["timestep_sampling"], saved["pair_sampling"]) == ("official-grid",
                                                                    "prompt-uniform")  # fmt: skip
    lat = load_cache_shapes(run)
    assert lat == {(16, 2, 2, 2)}
    pipe = WanPipeline.from_pretrained(wan_dir)
    load_lora_into_pipeline(pipe, run.train_dir)
    assert "spatialalign" in pipe.transformer.peft_config


def load_cache_shapes(run: RunDir) -> set[tuple[int, ...]]:
    from spatialalign.training.cache import read_index

    return {tuple(e["shape"]) for e in read_index(run.cache_dir)["latents"].values()}


@pytest.mark.parametrize(
    ("prepare", "args", "message"),
    [
        (lambda r: r.pairs_path.unlink(), [], "no pairs in"),
        (
            lambda r: write_parquet(PAIRS.empty_table(), r.pairs_path),
            [],
            "holds no pairs",
        ),
        (lambda r: None, ["--no-encode"], "not in the cache"),
        (lambda r: None, ["--model-path", "/nonexistent/toy"], "no toy model at"),
        (lambda r: None, ["--model", "wan", "--model-path", "/tmp"], "not a diffusers pipeline"),
        (lambda r: None, ["--beta", "0"], "beta must be > 0"),
    ],
)
def test_one_line_errors(run_dir, tmp_path, capsys, prepare, args, message):
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    prepare(RunDir(root))
    with pytest.raises(SystemExit) as e:
        main(["train", str(root), *FAST, *args])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cache_that_does_not_fit_the_model_is_refused():
    pipe = ToyPipeline.random(0)
    data = TrainData({"s": torch.zeros(16, 9, 4, 4)}, {"p": torch.zeros(16, 16)})
    with pytest.raises(SpatialAlignError, match="input channels"):
        check_fit(pipe.transformer, data)
    data = TrainData({"s": torch.zeros(4, 9, 8, 8)}, {"p": torch.zeros(16, 64)})
    with pytest.raises(SpatialAlignError, match="text_dim"):
        check_fit(pipe.transformer, data)


def test_pairs_built_from_older_scores_are_flagged(run_dir, tmp_path):
    from spatialalign.core.provenance import fingerprint, with_record
    from spatialalign.training.run import stale_pairs

    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    run = RunDir(root)
    table = pq.read_table(run.pairs_path)
    write_parquet(with_record(table, {"scores": fingerprint(run.scores_path)}), run.pairs_path)
    assert stale_pairs(run) is None
    write_parquet(with_record(table, {"scores": "older"}), run.pairs_path)
    assert "built from other scores" in stale_pairs(run)


HOLD_LOCK = """
import sys
from spatialalign.loop.layout import LoopDir
from spatialalign.rundir.layout import RunDir
stage, root = sys.argv[1], sys.argv[2]
with LoopDir(root).lock() if stage == "loop" else RunDir(root).lock(stage):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held_elsewhere(stage: str, root: Path) -> Iterator[int]:
    """Another process holds ``root``'s lock as ``stage`` (a ``train`` or ``loop`` running
    there) until the block ends; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, stage, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_train_on_a_run_directory_fails_at_once(run_dir, tmp_path, capsys):
    # two trains on one run dir both exited 0 with a mixed adapter and a doubled log
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    with lock_held_elsewhere("train", root) as pid:
        with pytest.raises(SystemExit) as e:
            main(["train", str(root), *FAST])
        assert e.value.code == 1
        assert capsys.readouterr().err == f"error: another train is running on {root} (pid {pid})\n"
        assert not RunDir(root).train_dir.exists() and not RunDir(root).cache_dir.exists()
    main(["train", str(root), *FAST])  # released when the holder ends
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("trained dpo+zo LoRA")


def test_train_refuses_pairs_made_from_other_scores(run_dir, tmp_path, capsys):
    # re-scored run, pairs not rebuilt: train reused the old adapter ("already trained")
    from spatialalign.core.provenance import fingerprint, with_record

    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    run = RunDir(root)
    main(["train", str(root), *FAST])
    capsys.readouterr()
    scores = pq.read_table(run.scores_path)
    rescored = scores.set_column(
        scores.column_names.index("dsr"), "dsr", pa.array([0.5] * scores.num_rows)
    )
    write_parquet(rescored, run.scores_path)  # newer than the (record-less) pairs
    for pairs_record in (None, {"scores": fingerprint(run.scores_path) + "-old"}):
        if pairs_record is not None:
            table = pq.read_table(run.pairs_path)
            write_parquet(with_record(table, pairs_record), run.pairs_path)
        for args in ([], ["--resume"]):
            with pytest.raises(SystemExit) as e:
                main(["train", str(root), *FAST, *args])
            err = capsys.readouterr().err
            assert e.value.code == 1 and err.count("\n") == 1, err
            assert "scores.parquet" in err and f"rerun `spatialalign pairs {root}`" in err, err
    # pairs rebuilt from the current scores: trains again (into a new run directory)
    table = pq.read_table(run.pairs_path)
    write_parquet(with_record(table, {"scores": fingerprint(run.scores_path)}), run.pairs_path)
    shutil.rmtree(run.train_dir)
    main(["train", str(root), *FAST])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("trained dpo+zo LoRA")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"),
        (["--timestep-shift", "nan"], "--timestep-shift must be a finite number, got nan"),
        (["--max-grad-norm", "nan"], "--max-grad-norm must be a finite number, got nan"),
        (["--logit-std", "nan"], "--logit-std must be a finite number, got nan"),
        (["--lora-alpha", "inf"], "--lora-alpha must be a finite number, got inf"),
        (["--lora-rank", "0"], "lora_rank must be >= 1"),
        (["--lora-alpha", "0"], "lora_alpha must be > 0"),
        (["--lora-alpha", "-4"], "lora_alpha must be > 0"),
        (["--lora-rank", "65"], "lora_rank 65 is larger than the smallest layer"),
        (["--lora-rank", "100000"], "lora_rank 100000 is larger than the smallest layer"),
    ],
)
def test_bad_numbers_are_refused_before_training(run_dir, tmp_path, capsys, args, message):
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    with pytest.raises(SystemExit) as e:
        main(["train", str(root), *FAST, *args])
    err = capsys.readouterr().err
    assert e.value.code != 0 and message in err and "Traceback" not in err, err
    assert not (RunDir(root).train_dir / "pytorch_lora_weights.safetensors").exists()
    assert not RunDir(root).cache_dir.exists()  # refused before encoding anything


def test_a_diverging_run_stops_with_one_line_and_writes_no_adapter(run_dir, tmp_path, capsys):
    # a finite but huge learning rate overflows the LoRA weights: NaN loss, NaN adapter
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    with pytest.raises(SystemExit) as e:
        main(["train", str(root), *FAST, "--max-steps", "6", "--learning-rate", "1e30",
              "--lr-scheduler", "constant", "--checkpoint-every", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and "not finite" in err, err
    run = RunDir(root)
    assert not (run.train_dir / "pytorch_lora_weights.safetensors").exists()
    for line in (run.train_dir / "train_log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=_refuse)  # strict JSON: no NaN / Infinity


def _refuse(constant: str):
    raise AssertionError(f"bare {constant} in a JSON log")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_and_exits_with_128_plus_its_number(
    run_dir, tmp_path, capsys, monkeypatch, signum, code
):
    from spatialalign.training import trainer

    step = trainer._optimizer_step

    def signalled(*args, **kwargs):
        out = step(*args, **kwargs)
        os.kill(os.getpid(), signum)  # handled: a checkpoint after this step, then stop
        return out

    monkeypatch.setattr(trainer, "_optimizer_step", signalled)
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    with pytest.raises(SystemExit) as e:
        main(["train", str(root), *FAST])
    assert e.value.code == code
    assert "interrupted at step 1/2" in capsys.readouterr().err
    assert RunDir(root).train.checkpoint_paths()


def test_train_refuses_scores_older_than_the_tracks(run_dir, tmp_path, capsys):
    # re-tracked, not re-scored: pairs match the scores, but the scores are stale
    from spatialalign.core.provenance import fingerprint, record_of, with_record

    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    run = RunDir(root)
    main(["track", str(root), "--detector", "toy", "--workers", "1"])
    main(["score-batch", str(root)])
    table = pq.read_table(run.pairs_path)
    write_parquet(with_record(table, {"scores": fingerprint(run.scores_path)}), run.pairs_path)
    retracked = {**record_of(run.tracks_path), "note": "tracked again"}
    write_parquet(with_record(pq.read_table(run.tracks_path), retracked), run.tracks_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["train", str(root), *FAST])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1, err
    assert "scores.parquet is older than tracks.parquet" in err
    assert f"`spatialalign score-batch {root}`" in err and f"`spatialalign pairs {root}`" in err
