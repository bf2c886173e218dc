"""`spatialalign sample` with the toy back end: files, manifest, determinism, resume, sharding.

Uses a tiny randomly initialised toy model (``ToyPipeline.random``) with 2 denoising
steps, so every test runs in about a second; the official 120 test prompts supply ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.schemas import MANIFEST
from spatialalign.core.video import read_video
from spatialalign.models.backends import ToyBackend
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.parallel.ranks import DistContext
from spatialalign.prompts import DSRPrompt, read_prompts, write_prompts
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.manifest import (
    MANIFEST_COLUMNS,
    PROVENANCE,
    existing_rows,
    part_files,
    read_rows,
)
from spatialalign.sampling.naming import parse_video_name, sample_id, video_filename
from spatialalign.sampling.probe import probe_video
from spatialalign.sampling.sampler import (
    plan_reuse,
    plan_samples,
    recovered_rows,
    sample_records,
    sample_videos,
    select_prompts,
    worker_share,
    write_batch,
)
from tolerance import assert_videos_close

STEPS = 2


@pytest.fixture(scope="module")
def prompts() -> list[DSRPrompt]:
    return read_prompts(OFFICIAL_CSV)[:3]


@pytest.fixture(scope="module")
def toy() -> ToyPipeline:
    return ToyPipeline.random(seed=0)


class CountingBackend(ToyBackend):
    """The toy back end, counting generate calls and optionally failing on call N."""

    def __init__(self, pipeline: ToyPipeline, fail_on_call: int | None = None) -> None:
        super().__init__(pipeline, steps=STEPS, guidance=3.0)
        self.calls: list[list[int]] = []
        self.texts: list[str] = []
        self.fail_on_call = fail_on_call

    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        self.calls.append(list(seeds))
        self.texts += prompts
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")
        return super().generate(prompts, seeds)


def _videos(run_dir: Path) -> dict[str, np.ndarray]:
    return {p.stem: read_video(p) for p in sorted((run_dir / "samples").glob("*.mp4"))}


# --- names -------------------------------------------------------------------------------


def test_names_follow_the_official_inference_script():
    # official inference.py: f"{prompt_id}_F{num_frames:02d}_seed{seed:02d}.mp4"
    assert video_filename("1043_TL", 81, 3) == "1043_TL_F81_seed03.mp4"
    assert sample_id("1043_TL", 9, 12) == "1043_TL_F09_seed12"
    parsed = parse_video_name("testLRFBT_LR_0_F81_seed04.mp4")
    assert (parsed.prompt_id, parsed.num_frames, parsed.seed) == ("testLRFBT_LR_0", 81, 4)
    assert parse_video_name("1043_TL.mp4") is None
    assert parse_video_name("1043_TL_F81_seedXY.mp4") is None


def test_plan_is_prompt_major_over_seeds(prompts, tmp_path):
    specs = plan_samples(prompts, 2, 9, tmp_path)
    assert [(s.prompt_id, s.seed) for s in specs] == [
        (p.prompt_id, k) for p in prompts for k in range(2)
    ]
    assert all(s.path.parent == RunDir(tmp_path).samples_dir for s in specs)
    with pytest.raises(SpatialAlignError, match="--seeds"):
        plan_samples(prompts, 0, 9, tmp_path)


def test_split_selection(prompts):
    tagged = [
        DSRPrompt(**{**p.to_dict(), "split": s})
        for p, s in zip(prompts, ["train", "test", "test"], strict=True)
    ]
    assert [p.prompt_id for p in select_prompts(tagged, "test")] == [
        prompts[1].prompt_id,
        prompts[2].prompt_id,
    ]
    assert len(select_prompts(tagged, "all")) == 3
    with pytest.raises(SpatialAlignError, match="no prompts in split 'train'"):
        select_prompts(prompts, "train")  # the official CSV carries no split


# --- generation --------------------------------------------------------------------------


def test_sample_writes_official_names_lossless_videos_and_manifest(prompts, toy, tmp_path):
    backend = CountingBackend(toy)
    result = sample_videos(tmp_path, backend, prompts, seeds=2, batch_size=4, progress=False)
    assert (result.total, result.generated, result.skipped) == (6, 6, 0)
    assert [len(c) for c in backend.calls] == [4, 2]  # batched

    table = RunDir(tmp_path).read_manifest()
    assert table.column_names == list(MANIFEST_COLUMNS)
    assert pq.read_schema(RunDir(tmp_path).manifest_path).equals(MANIFEST, check_metadata=False)
    rows = {r["sample_id"]: r for r in table.to_pylist()}
    expected = {f"{p.prompt_id}_F09_seed{k:02d}" for p in prompts for k in range(2)}
    assert set(rows) == expected
    for p in prompts:
        for k in range(2):
            row = rows[f"{p.prompt_id}_F09_seed{k:02d}"]
            assert (row["prompt_id"], row["seed"], row["model"], row["adapter"]) == (
                p.prompt_id,
                k,
                "toy",
                "",
            )
            path = Path(row["path"])
            assert path.is_absolute() and path.name == f"{p.prompt_id}_F09_seed{k:02d}.mp4"
            frames = read_video(path)
            assert (row["num_frames"], row["height"], row["width"]) == frames.shape[:3]
            assert row["fps"] == toy.fps
            # the file holds what the model draws for this prompt and seed (lossless: the
            # frames as drawn); drawn here alone, there in a batch of 4: within a level
            direct = toy([p.text], [k], num_inference_steps=STEPS, guidance_scale=3.0)[0]
            assert_videos_close(frames, direct, what=row["sample_id"])
    assert "generated 6 video(s)" in result.summary()


def test_same_command_gives_the_same_files(prompts, toy, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    sample_videos(a, CountingBackend(toy), prompts, seeds=2, batch_size=3, progress=False)
    sample_videos(b, CountingBackend(toy), prompts, seeds=2, batch_size=3, progress=False)
    va, vb = _videos(a), _videos(b)
    assert va.keys() == vb.keys() and len(va) == 6
    for k in va:
        np.testing.assert_array_equal(va[k], vb[k])
    # seeds matter: two seeds of one prompt differ
    pid = prompts[0].prompt_id
    assert not np.array_equal(va[f"{pid}_F09_seed00"], va[f"{pid}_F09_seed01"])


def test_resume_after_interrupt_generates_only_the_rest(prompts, toy, tmp_path):
    run = tmp_path / "run"
    interrupted = CountingBackend(toy, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        sample_videos(run, interrupted, prompts, seeds=2, batch_size=2, progress=False)
    first = interrupted.calls[0]
    assert len(list((run / "samples").glob("*.mp4"))) == 2
    assert not list((run / "samples").glob(".*.tmp"))
    assert RunDir(run).read_manifest().num_rows == 2  # merged on the way out

    resumed = CountingBackend(toy)
    result = sample_videos(run, resumed, prompts, seeds=2, batch_size=2, progress=False)
    assert (result.generated, result.skipped) == (4, 2)
    assert sum(len(c) for c in resumed.calls) == 4 and first == [0, 1]
    assert RunDir(run).read_manifest().num_rows == 6 and not part_files(RunDir(run))

    clean = tmp_path / "clean"
    sample_videos(clean, CountingBackend(toy), prompts, seeds=2, batch_size=2, progress=False)
    vr, vc = _videos(run), _videos(clean)
    assert vr.keys() == vc.keys()
    for k in vr:
        np.testing.assert_array_equal(vr[k], vc[k])

    again = CountingBackend(toy)
    result = sample_videos(run, again, prompts, seeds=2, batch_size=2, progress=False)
    assert again.calls == [] and (result.generated, result.skipped) == (0, 6)


def test_rebuilds_manifest_from_videos_and_regenerates_corrupt_ones(prompts, toy, tmp_path):
    sample_videos(tmp_path, CountingBackend(toy), prompts, seeds=2, batch_size=6, progress=False)
    samples = tmp_path / "samples"
    # a kill between writing a video and its manifest row; a corrupt file; a stale temp file
    RunDir(tmp_path).manifest_path.unlink()
    broken = samples / f"{prompts[1].prompt_id}_F09_seed01.mp4"
    good = read_video(broken)
    broken.write_bytes(b"not an mp4")
    (samples / ".x.mp4.abcd.tmp").write_bytes(b"partial")

    backend = CountingBackend(toy)
    result = sample_videos(tmp_path, backend, prompts, seeds=2, batch_size=6, progress=False)
    assert backend.calls == [[1]] and (result.generated, result.skipped) == (1, 5)
    np.testing.assert_array_equal(read_video(broken), good)
    table = RunDir(tmp_path).read_manifest()
    assert table.num_rows == 6
    assert set(table.column("num_frames").to_pylist()) == {9}
    assert not (samples / ".x.mp4.abcd.tmp").exists()


def test_more_seeds_later_keeps_earlier_rows(prompts, toy, tmp_path):
    sample_videos(tmp_path, CountingBackend(toy), prompts[:1], seeds=1, progress=False)
    backend = CountingBackend(toy)
    sample_videos(tmp_path, backend, prompts[:2], seeds=3, progress=False)
    assert sum(len(c) for c in backend.calls) == 5
    assert RunDir(tmp_path).read_manifest().num_rows == 6


def test_plan_from_a_first_seed(prompts, tmp_path):
    specs = plan_samples(prompts[:1], 3, 9, tmp_path, first_seed=998)
    assert [(s.seed, s.sample_id) for s in specs] == [
        (seed, f"{prompts[0].prompt_id}_F09_seed{seed}") for seed in (998, 999, 1000)
    ]
    for first, seeds, message in [
        (-1, 2, "--first-seed must be >= 0, got -1"),
        (2**31 - 1, 2, "reaches seed 2147483648"),
    ]:
        with pytest.raises(SpatialAlignError, match=message):
            plan_samples(prompts, seeds, 9, tmp_path, first_seed=first)


def test_cli_sample_first_seed_names_rows_records_and_videos(prompts, tmp_path, capsys):
    """``--first-seed S --seeds N`` samples seeds S..S+N-1: official names with the true
    seed, the manifest's seed column and each video's record hold it, and the video of seed
    s is the one ``--seeds`` (from 0) gives for s (another batch composition: within the
    tolerance rule)."""
    model_dir = ToyPipeline.random(seed=0).save_pretrained(tmp_path / "toy")
    write_prompts(prompts[:2], tmp_path / "prompts.parquet")
    common = ["--model-path", str(model_dir), "--steps", "2"]
    common += ["--prompts", str(tmp_path / "prompts.parquet")]
    main(["sample", str(tmp_path / "from0"), *common, "--seeds", "5"])
    main(["sample", str(tmp_path / "from3"), *common, "--seeds", "2", "--first-seed", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("sample: generated 4 video(s) (4 new), skipped 0")

    from0, from3 = RunDir(tmp_path / "from0"), RunDir(tmp_path / "from3")
    rows = from3.read_manifest(["prompt_id", "seed", "path"]).to_pylist()
    expected = [(p.prompt_id, seed) for p in prompts[:2] for seed in (3, 4)]
    assert [(r["prompt_id"], r["seed"]) for r in rows] == expected
    assert [r["sample_id"] for r in rows] == [sample_id(p, 9, s) for p, s in expected]
    assert sorted(p.name for p in from3.samples_dir.glob("*.mp4")) == sorted(
        video_filename(p, 9, s) for p, s in expected
    )
    provenance = {r["sample_id"]: r[PROVENANCE] for r in read_rows(from3.manifest_path)}
    for pid, seed in expected:
        name = video_filename(pid, 9, seed)
        record = json.loads(probe_video(from3.samples_dir / name).comment)
        assert record["seed"] == seed == provenance[sample_id(pid, 9, seed)]["seed"]
        assert_videos_close(
            read_video(from3.samples_dir / name), read_video(from0.samples_dir / name)
        )

    # seeds past 99 keep the official naming with the true seed (seed1000, not a slot)
    main(["sample", str(tmp_path / "from999"), *common, "--seeds", "2", "--first-seed", "999"])
    rows = RunDir(tmp_path / "from999").read_manifest(["seed"]).to_pylist()
    assert [(r["sample_id"].rsplit("_", 1)[1], r["seed"]) for r in rows] == [
        ("seed999", 999),
        ("seed1000", 1000),
    ] * 2


def test_refuses_to_mix_another_models_videos(prompts, toy, tmp_path):
    sample_videos(tmp_path, CountingBackend(toy), prompts, seeds=1, progress=False)
    with pytest.raises(SpatialAlignError, match="already records 3 of these samples"):
        sample_videos(
            tmp_path, CountingBackend(toy), prompts, seeds=1, adapter="/x/lora.safetensors"
        )


def test_two_ranks_without_a_process_group_split_the_work(prompts, toy, tmp_path):
    b0, b1 = CountingBackend(toy), CountingBackend(toy)
    r0 = sample_videos(
        tmp_path, b0, prompts, seeds=2, batch_size=2, dist=DistContext(0, 2), progress=False
    )
    assert RunDir(tmp_path).read_manifest().num_rows == 3  # rank 0 merged its own share
    r1 = sample_videos(
        tmp_path, b1, prompts, seeds=2, batch_size=2, dist=DistContext(1, 2), progress=False
    )
    assert (r0.generated, r1.generated) == (3, 3)
    specs = plan_samples(prompts, 2, 9, tmp_path)
    done0 = sorted(zip(b0.texts, (s for c in b0.calls for s in c), strict=True))
    assert done0 == sorted((s.prompt, s.seed) for s in specs[0::2])  # every 2nd sample
    assert RunDir(tmp_path).read_manifest().num_rows == 6 and not part_files(RunDir(tmp_path))


# --- the steps of sample_videos, one at a time ----------------------------------------------


def test_plan_reuse_on_a_half_finished_run(prompts, toy, tmp_path):
    """Seed 0 finished, seed 1 never started, one video corrupt: reuse the readable
    seed-0 videos, generate the rest, each with its reason."""
    sample_videos(tmp_path, CountingBackend(toy), prompts, seeds=1, progress=False)
    run = RunDir(tmp_path)
    specs = plan_samples(prompts, 2, 9, run)
    corrupt = specs[2]  # prompts[1], seed 0
    corrupt.path.write_bytes(b"not an mp4")
    plan = plan_reuse(specs, sample_records(specs, CountingBackend(toy), ""))
    seed0 = {s.sample_id for s in specs if s.seed == 0}
    assert set(plan.reused) == seed0 - {corrupt.sample_id}
    assert plan.why == {
        **{s.sample_id: "new" for s in specs if s.seed == 1},
        corrupt.sample_id: "unreadable video",
    }
    assert set(plan.reused[specs[0].sample_id]) == {"num_frames", "fps", "height", "width"}

    other = ToyBackend(toy, steps=STEPS, guidance=4.5)
    changed = plan_reuse(specs[:1], sample_records(specs[:1], other, ""))
    assert not changed.reused
    assert changed.why[specs[0].sample_id].startswith("settings changed: ")


def test_recovered_rows_are_reused_videos_the_manifest_lacks(prompts, toy, tmp_path):
    sample_videos(tmp_path, CountingBackend(toy), prompts, seeds=1, progress=False)
    run = RunDir(tmp_path)
    specs = plan_samples(prompts, 1, 9, run)
    plan = plan_reuse(specs, sample_records(specs, CountingBackend(toy), ""))
    existing = existing_rows(run)
    assert recovered_rows(run, specs, plan, existing) == []
    del existing[specs[1].sample_id]  # killed between the video and its manifest row
    (row,) = recovered_rows(run, specs, plan, existing)
    assert row["sample_id"] == specs[1].sample_id and PROVENANCE in row
    assert row["num_frames"] == 9


def _ids(share) -> list[str]:
    return [s.sample_id for s in share]


def test_worker_share_with_and_without_a_process_group(prompts, tmp_path):
    specs = plan_samples(prompts, 2, 9, tmp_path)  # 6 samples
    reused = {specs[0].sample_id, specs[2].sample_id}
    # no group: every 2nd sample of the full list (stable), minus the reused ones
    assert _ids(worker_share(specs, reused, DistContext(0, 2))) == _ids([specs[4]])
    assert _ids(worker_share(specs, reused, DistContext(1, 2))) == _ids(specs[1::2])
    # a group: every 2nd of the pending samples
    group = DistContext(1, 2, has_group=True)
    assert _ids(worker_share(specs, reused, group)) == _ids([specs[3], specs[5]])


def test_write_batch_refuses_a_short_batch(prompts, toy, tmp_path):
    specs = plan_samples(prompts, 1, 9, tmp_path)
    backend = CountingBackend(toy)
    records = sample_records(specs, backend, "")
    videos = backend.generate([specs[0].prompt], [0])
    with pytest.raises(RuntimeError, match="returned 1 videos for a batch of 2"):
        write_batch(RunDir(tmp_path), backend, specs[:2], videos, records)
    (specs[0].path.parent).mkdir(parents=True)
    (row,) = write_batch(RunDir(tmp_path), backend, specs[:1], videos, records)
    assert row["sample_id"] == specs[0].sample_id and specs[0].path.is_file()
    assert json.loads(probe_video(specs[0].path).comment) == records[specs[0].sample_id]


# --- LoRA and CLI -------------------------------------------------------------------------


def _save_random_lora(transformer, path: Path, *, prefixed: bool = True) -> Path:
    """A LoRA on the SpatialAlign targets with random (non-zero) weights, diffusers format."""
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    targets = ["condition_embedder.text_embedder.linear_1", "attn2.to_k", "attn2.to_v"]
    # alpha != r where the file carries diffusers' adapter metadata: loaders must honour it
    config = LoraConfig(
        r=4, lora_alpha=8 if prefixed else 4, target_modules=targets, init_lora_weights=False
    )
    transformer.add_adapter(config)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    layers = get_peft_model_state_dict(transformer)
    path.mkdir(parents=True, exist_ok=True)
    if prefixed:
        WanPipeline.save_lora_weights(
            path, transformer_lora_layers=layers, transformer_lora_adapter_metadata=config.to_dict()
        )
        return path / "pytorch_lora_weights.safetensors"
    save_file({k: v.contiguous() for k, v in layers.items()}, str(path / "lora.safetensors"))
    return path / "lora.safetensors"


@pytest.mark.parametrize("prefixed", [True, False])
def test_toy_lora_adapter_changes_samples_and_is_recorded(prompts, tmp_path, prefixed):
    from spatialalign.models.backends import BackendConfig, load_backend

    model_dir = ToyPipeline.random(seed=1).save_pretrained(tmp_path / "toy")
    adapted = ToyPipeline.from_pretrained(model_dir)
    lora = _save_random_lora(adapted.transformer, tmp_path / "lora", prefixed=prefixed)
    adapter_arg = str(lora.parent) if prefixed else str(lora)

    cfg = dict(model="toy", model_path=str(model_dir), steps=STEPS, device="cpu")
    base = load_backend(BackendConfig(**cfg))
    with_lora = load_backend(BackendConfig(**cfg, adapter=adapter_arg))
    text, seed = [prompts[0].text], [0]
    out_lora = with_lora.generate(text, seed)
    want = adapted(text, seed, num_inference_steps=STEPS, guidance_scale=3.0)
    assert_videos_close(out_lora, want)  # loaded from the file vs added in place
    assert not np.array_equal(out_lora, base.generate(text, seed))

    result = sample_videos(
        tmp_path / "run", with_lora, prompts[:1], seeds=1, adapter=str(lora), progress=False
    )
    assert result.generated == 1
    assert RunDir(tmp_path / "run").read_manifest().column("adapter").to_pylist() == [str(lora)]


def test_bad_adapter_is_one_clear_error(tmp_path):
    from spatialalign.models.backends import BackendConfig, load_backend

    model_dir = ToyPipeline.random(seed=1).save_pretrained(tmp_path / "toy")
    cfg = dict(model="toy", model_path=str(model_dir), device="cpu")
    with pytest.raises(SpatialAlignError, match="LoRA adapter not found"):
        load_backend(BackendConfig(**cfg, adapter=str(tmp_path / "nope")))
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(SpatialAlignError, match="no LoRA weights"):
        load_backend(BackendConfig(**cfg, adapter=str(tmp_path / "plain.safetensors")))


def test_cli_sample_toy(prompts, tmp_path, capsys):
    model_dir = ToyPipeline.random(seed=0).save_pretrained(tmp_path / "toy")
    run = tmp_path / "run"
    tagged = [DSRPrompt(**{**p.to_dict(), "split": "test"}) for p in prompts]
    write_prompts(tagged, tmp_path / "prompts.parquet")
    args = ["sample", str(run), "--model-path", str(model_dir), "--steps", "2"]
    args += ["--prompts", str(tmp_path / "prompts.parquet"), "--split", "test", "--seeds", "2"]
    main(args)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("sample: generated 6 video(s) (6 new), skipped 0")
    assert RunDir(run).read_manifest().num_rows == 6
    assert (run / "prompts.parquet").is_file()  # later stages find the run's prompts
    assert [p.prompt_id for p in read_prompts(run / "prompts.parquet")] == [
        p.prompt_id for p in prompts
    ]
    info = probe_video(run / "samples" / video_filename(prompts[0].prompt_id, 9, 1))
    assert (info.num_frames, info.height, info.width) == (9, 16, 16)

    main(args)  # rerun: nothing to do
    assert "generated 0 video(s), skipped 6" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "wan"], "needs --model-path"),
        (["--model", "wan", "--model-path", "/nonexistent/wan"], "not found"),
        (["--num-frames", "17"], "--model wan only"),
        (["--dtype", "bfloat16"], "--model wan only"),
        (["--prompts", "/nonexistent/p.csv"], "prompts file not found"),
        # RUN_DIR/prompts.parquet (1 prompt) must know every prompt sampled from elsewhere
        (["--prompts", str(OFFICIAL_CSV)], "lacks 119 prompt id(s)"),
        (["--split", "train"], "no prompts in split 'train'"),
        (["--seeds", "0"], "--seeds must be in 1..1000, got 0"),
        (["--first-seed", "-1"], "--first-seed must be >= 0, got -1"),
        (["--first-seed", "2147483647", "--seeds", "2"], "reaches seed 2147483648"),
    ],
)
def test_cli_sample_errors_are_one_line(tmp_path, capsys, extra, message):
    write_prompts(read_prompts(OFFICIAL_CSV)[:1], tmp_path / "prompts.parquet")
    with pytest.raises(SystemExit) as exc:
        main(["sample", str(tmp_path), *extra])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
