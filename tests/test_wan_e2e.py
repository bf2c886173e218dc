"""Issue 12's loop on a tiny random ``WanPipeline``, through the CLI verbs users run:
sample -> (hand-made pairs) -> train dpo+zo 3 steps (cache included) -> sample again with
the LoRA, which changes the videos. Nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.fileio import write_parquet
from spatialalign.core.schemas import PAIRS
from spatialalign.core.video import read_video
from spatialalign.prompts import read_prompts, write_prompts
from spatialalign.rundir.layout import RunDir
from test_sampling_wan import build_tiny_wan
from tolerance import LOSSY_VIDEO, assert_videos_close

pytest.importorskip("peft")
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.slow,
]  # sample, cache, train and resample a tiny Wan

GEOMETRY = ["--num-frames", "5", "--height", "16", "--width", "16", "--steps", "2"]


def _pairs(run: RunDir) -> None:
    """Seed 0 wins over seed 1 for every prompt."""
    rows = run.read_manifest().select(["sample_id", "prompt_id", "seed"]).to_pylist()
    by_prompt: dict[str, dict[int, str]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], {})[r["seed"]] = r["sample_id"]
    pids = sorted(by_prompt)
    table = {
        "prompt_id": pids,
        "winner": [by_prompt[p][0] for p in pids],
        "loser": [by_prompt[p][1] for p in pids],
    }
    write_parquet(pa.Table.from_pydict(table, schema=PAIRS), run.pairs_path)


def _videos(run: RunDir) -> dict[str, np.ndarray]:
    rows = run.read_manifest().select(["sample_id", "path"]).to_pylist()
    return {r["sample_id"]: read_video(r["path"]) for r in rows}


def test_sample_cache_train_reload_sample(tmp_path, capsys):
    prompts = read_prompts(OFFICIAL_CSV)[:2]
    wan = build_tiny_wan(tmp_path / "tiny-wan", prompts)
    root = tmp_path / "run"
    write_prompts(prompts, tmp_path / "prompts.parquet")
    model = ["--model", "wan", "--model-dir", str(wan), "--device", "cpu"]
    main(["sample", str(root), "--prompts", str(tmp_path / "prompts.parquet"), *model,
          *GEOMETRY, "--seeds", "2", "--batch-size", "2"])  # fmt: skip
    run = RunDir(root)
    assert run.read_manifest().num_rows == 4
    _pairs(run)

    main(["train", str(root), "--model", "wan", "--model-path", str(wan), "--max-steps", "3",
          "--train-batch-size", "2", "--lr-warmup-steps", "1", "--learning-rate", "0.05",
          "--checkpoint-every", "0", "-q"])  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("trained dpo+zo LoRA on 2 pairs of 2 prompts: 3 steps")
    adapter = run.train_dir / "pytorch_lora_weights.safetensors"
    assert adapter.is_file()
    assert len(list((run.cache_dir / "latents").glob("*.safetensors"))) == 4
    assert len(list((run.cache_dir / "text").glob("*.safetensors"))) == 2

    aligned = tmp_path / "aligned"
    main(["sample", str(aligned), "--prompts", str(run.prompts_path), *model, *GEOMETRY,
          "--seeds", "2", "--batch-size", "2", "--adapter", str(run.train_dir)])  # fmt: skip
    base, tuned = _videos(run), _videos(RunDir(aligned))
    assert sorted(base) == sorted(tuned)
    diffs = [np.abs(base[s].astype(int) - tuned[s]).mean() for s in base]
    assert min(diffs) > 0.5, diffs  # every video changed, well beyond codec noise
    rows = RunDir(aligned).read_manifest().to_pylist()
    assert {r["adapter"] for r in rows} == {str(adapter.resolve())}

    # `eval` takes sample's model options (one definition): with the same Wan geometry and
    # adapter its seed-0 videos are the aligned sampling's
    ev = tmp_path / "eval"
    main(["eval", str(ev), "--prompts", str(run.prompts_path), "--split", "all", *model,
          *GEOMETRY, "--seeds", "1", "--batch-size", "2", "--adapter", str(run.train_dir)])  # fmt: skip
    evaluated = _videos(RunDir(ev))
    assert len(evaluated) == 2
    for sid, video in evaluated.items():
        # eval samples 1 seed per prompt, sample 2 (another batch composition), both through
        # H.264: within the lossy-video bounds of tests/README.md
        assert_videos_close(video, tuned[sid], what=sid, **LOSSY_VIDEO)
    assert (ev / "summary.json").is_file() and (ev / "metrics.parquet").is_file()
