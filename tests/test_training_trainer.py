"""The training loop on the toy model with tiny data: resume bit for bit, the saved adapter,
two processes (accelerate launch --cpu, gloo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("accelerate")

from safetensors.torch import load_file  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.rundir import TrainDir  # noqa: E402
from spatialalign.training.config import TrainConfig  # noqa: E402
from spatialalign.training.data import Pair, Sample, TrainData  # noqa: E402
from spatialalign.training.trainer import train  # noqa: E402
from tolerance import FLOAT32_NET  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    "In a garden, a fox is on the left of a stump, then the fox runs to the right of the stump.",
    "In a kitchen, a cat is on the top of a box, then the cat jumps to the left of the box.",
]


def tiny_data(pipe: ToyPipeline) -> TrainData:
    g = torch.Generator().manual_seed(0)
    latents = {f"s{i}": torch.randn(*pipe.latent_shape, generator=g) for i in range(6)}
    emb = pipe.encode_prompt(PROMPTS)
    text = {"p0": emb[0], "p1": emb[1]}
    pairs = [Pair("p0", "s0", "s1"), Pair("p0", "s2", "s1"), Pair("p1", "s3", "s4")]
    samples = [Sample("p0" if i < 3 else "p1", f"s{i}", i / 6) for i in range(6)]
    return TrainData(latents, text, pairs, samples)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(
        max_steps=5,
        train_batch_size=2,
        learning_rate=1e-2,
        lr_warmup_steps=1,
        lora_rank=4,
        lora_alpha=8.0,
        checkpoint_every=2,
    )
    return TrainConfig(**{**base, **kw})


def run(out: Path, cfg: TrainConfig, **kw):
    pipe = ToyPipeline.random(0)
    return train(pipe.transformer, tiny_data(pipe), cfg, out, progress=False, **kw)


def _log(out: Path) -> list[dict]:
    recs = [json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "step_time"} for r in recs]


def test_interrupted_run_resumes_bit_for_bit(tmp_path):
    full = run(tmp_path / "full", tiny_cfg())
    assert full.steps == 5 and not full.interrupted and full.adapter.is_file()
    expected = load_file(str(full.adapter))

    def kill_at_3(step, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: checkpoint, then stop

    part = run(tmp_path / "part", tiny_cfg(), on_step=kill_at_3)
    assert part.interrupted and part.steps == 3 and part.adapter is None
    assert [p.name for p in TrainDir(tmp_path / "part").checkpoint_paths()] == [
        "checkpoint-0000002.safetensors",
        "checkpoint-0000003.safetensors",
    ]
    # a hard kill after step 3 would leave only the periodic checkpoint of step 2
    shutil.copytree(tmp_path / "part", tmp_path / "hard")
    TrainDir(tmp_path / "hard").checkpoint_paths()[-1].unlink()
    for name in ("part", "hard"):
        with pytest.raises(SpatialAlignError, match="already holds a training run"):
            run(tmp_path / name, tiny_cfg())
        done = run(tmp_path / name, tiny_cfg(resume=True))
        assert done.steps == 5 and not done.interrupted
        got = load_file(str(done.adapter))
        assert got.keys() == expected.keys()
        # bit equality is right here: one process, one code path, the same inputs
        assert all(torch.equal(got[k], expected[k]) for k in expected), name
        assert _log(tmp_path / name) == _log(tmp_path / "full"), name
    # a finished run resumed again keeps its adapter file (same bytes, same fingerprint)
    before = (full.adapter.read_bytes(), full.adapter.stat().st_mtime_ns)
    again = run(tmp_path / "full", tiny_cfg(resume=True))
    assert (
        again.steps == 5
        and (again.adapter.read_bytes(), again.adapter.stat().st_mtime_ns) == before
    )
    with pytest.raises(SpatialAlignError, match="differs in beta"):
        run(tmp_path / "hard", tiny_cfg(resume=True, beta=2.0))
    # the batch may be split otherwise (processes, micro-batches), not changed in size
    with pytest.raises(SpatialAlignError, match="differs in global_batch"):
        run(tmp_path / "hard", tiny_cfg(resume=True, train_batch_size=1))
    split = run(tmp_path / "hard", tiny_cfg(resume=True, train_batch_size=1, global_batch_size=2))
    assert split.steps == 5


def test_logged_terms_and_adapter_loads_into_the_toy_pipeline(tmp_path):
    res = run(tmp_path / "run", tiny_cfg(max_steps=3, checkpoint_every=0))
    rec = _log(tmp_path / "run")[-1]
    for key in ("loss", "loss_dpo", "loss_zo", "score_w", "score_l", "margin", "accuracy", "lr"):
        assert key in rec and rec[key] == rec[key], key  # present, not NaN
    pipe = ToyPipeline.random(0)
    base = pipe.sample_latents([PROMPTS[0]], [0], num_inference_steps=2)
    pipe.load_lora_weights(res.adapter)
    adapted = pipe.sample_latents([PROMPTS[0]], [0], num_inference_steps=2)
    assert not torch.allclose(base, adapted)
    cfg = pipe.transformer.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha) == (4, 8.0)  # alpha != r survives the file


@pytest.mark.parametrize("loss", ["dpo", "dpo+sft", "sft", "rwr"])
def test_every_variant_trains(tmp_path, loss):
    res = run(tmp_path / loss, tiny_cfg(loss=loss, max_steps=2, shared_noise=True))
    assert res.steps == 2 and res.last_log["loss"] > 0


def test_gradient_checkpointing_trains_the_same_adapter(tmp_path):
    plain = run(tmp_path / "a", tiny_cfg(max_steps=2, checkpoint_every=0))
    ckpt = run(
        tmp_path / "b", tiny_cfg(max_steps=2, checkpoint_every=0, gradient_checkpointing=True)
    )
    a, b = load_file(str(plain.adapter)), load_file(str(ckpt.adapter))
    for k in a:  # recomputed activations: another code path, float32 rounding apart
        torch.testing.assert_close(a[k], b[k], **FLOAT32_NET)


def test_adapter_loads_into_a_tiny_wan_pipeline(tmp_path):
    from diffusers import WanPipeline
    from shared_data import OFFICIAL_CSV
    from spatialalign.lora.adapter import load_lora_into_pipeline
    from spatialalign.prompts import read_prompts
    from test_sampling_wan import build_tiny_wan

    wan_dir = build_tiny_wan(tmp_path / "wan", read_prompts(OFFICIAL_CSV)[:1])
    pipe = WanPipeline.from_pretrained(wan_dir)
    g = torch.Generator().manual_seed(0)
    lat = {f"s{i}": torch.randn(16, 2, 2, 2, generator=g) for i in range(4)}
    data = TrainData(lat, {"p": torch.randn(8, 32, generator=g)}, [Pair("p", "s0", "s1")])
    res = train(pipe.transformer, data, tiny_cfg(max_steps=2, checkpoint_every=0), tmp_path / "r")

    def latents(p):
        return p(
            "a fox",
            num_frames=5,
            height=16,
            width=16,
            num_inference_steps=2,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        ).frames

    fresh = WanPipeline.from_pretrained(wan_dir)
    base = latents(fresh)
    load_lora_into_pipeline(fresh, res.adapter)
    assert not torch.allclose(base, latents(fresh))


def _strict_json(line: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"bare {constant} in a JSON log line: {line}")

    return json.loads(line, parse_constant=refuse)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from spatialalign.training import trainer

    full = run(tmp_path / "full", tiny_cfg())
    real = trainer.pair_loss
    calls = []

    def nan_at_step_3(*args, **kwargs):  # one micro-batch per step here
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(trainer, "pair_loss", nan_at_step_3)
    out = tmp_path / "nan"
    with pytest.raises(SpatialAlignError) as e:
        run(out, tiny_cfg())
    msg = str(e.value)
    assert msg.startswith("training stopped at step 3: the loss is not finite (loss nan")
    assert "checkpoint-0000002.safetensors is intact" in msg and "\n" not in msg
    assert [p.name for p in TrainDir(out).checkpoint_paths()] == ["checkpoint-0000002.safetensors"]
    assert not (out / "pytorch_lora_weights.safetensors").exists()  # no NaN adapter
    assert [
        _strict_json(ln)["step"] for ln in (out / "train_log.jsonl").read_text().splitlines()
    ] == [1, 2]
    # the checkpoint is the good state of step 2: resuming from it gives the full run
    monkeypatch.setattr(trainer, "pair_loss", real)
    done = run(out, tiny_cfg(resume=True))
    got, want = load_file(str(done.adapter)), load_file(str(full.adapter))
    # bit equality is right here: one process, one code path, the same inputs
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("lr", [1e30, 1e38])
def test_weights_that_overflow_stop_the_run_before_they_are_saved(tmp_path, lr):
    out = tmp_path / "huge"
    cfg = tiny_cfg(learning_rate=lr, lr_scheduler="constant", lr_warmup_steps=0,
                   checkpoint_every=1)  # fmt: skip
    with pytest.raises(SpatialAlignError, match="not finite"):
        run(out, cfg)
    assert not (out / "pytorch_lora_weights.safetensors").exists()
    for path in TrainDir(out).checkpoint_paths():  # whatever was saved is finite
        assert all(torch.isfinite(v).all() for v in load_file(str(path)).values()), path


def test_the_log_is_strict_json(tmp_path):
    from spatialalign.training.trainer import StepLogger, _truncate_log

    logger = StepLogger(tmp_path, enabled=True, resume_step=0)
    logger.write(1, {"loss": 0.5, "accuracy": float("nan"), "margin": float("-inf")})
    logger.write(2, {"loss": 0.25, "accuracy": 1.0, "margin": 2.0})
    logger.close()
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert _strict_json(lines[0]) == {"step": 1, "loss": 0.5, "accuracy": None, "margin": None}
    _truncate_log(tmp_path / "train_log.jsonl", 1)  # the reader takes the nulls
    assert (tmp_path / "train_log.jsonl").read_text().splitlines() == lines[:1]


@pytest.mark.parametrize("kind", ["OSError", "SafetensorError"])
def test_a_full_disk_at_a_checkpoint_is_one_line_and_resume_stays_exact(
    tmp_path, monkeypatch, kind
):
    import errno

    import safetensors.torch
    from safetensors import SafetensorError

    full = run(tmp_path / "full", tiny_cfg())
    real = safetensors.torch.save_file
    saves = []

    def disk_full_at_step_4(tensors, filename, metadata=None):
        saves.append(filename)
        if len(saves) == 2:  # the checkpoint of step 4 (every 2 steps)
            real(tensors, filename, metadata=metadata)  # a partial file on disk ...
            if kind == "OSError":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")  # fmt: skip
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_at_step_4)
    out = tmp_path / "part"
    with pytest.raises(SpatialAlignError) as e:
        run(out, tiny_cfg())
    msg = str(e.value)
    assert msg.startswith("training stopped at step 4: cannot write checkpoint ")
    assert "No space left on device" in msg and "\n" not in msg
    assert "checkpoint-0000002.safetensors is intact" in msg and msg.endswith("--resume")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint-0000002.safetensors"  # ... removed: no temporary file left either
    ]
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    done = run(out, tiny_cfg(resume=True))
    got, want = load_file(str(done.adapter)), load_file(str(full.adapter))
    # bit equality is right here: one process, one code path, the same inputs
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert _log(out) == _log(tmp_path / "full")


def test_the_lora_rank_is_bounded_by_the_smallest_targeted_layer():
    from spatialalign.lora.adapter import lora_target_names
    from spatialalign.training.trainer import prepare_transformer

    transformer = ToyPipeline.random(0).transformer
    modules = dict(transformer.named_modules())
    smallest = min(
        min(modules[n].in_features, modules[n].out_features) for n in lora_target_names(transformer)
    )
    with pytest.raises(SpatialAlignError, match=f"use a rank of at most {smallest}$"):
        prepare_transformer(transformer, TrainConfig(lora_rank=smallest + 1))
    assert not getattr(transformer, "peft_config", None)  # refused before adding anything
    params = prepare_transformer(transformer, TrainConfig(lora_rank=smallest))
    assert params and transformer.peft_config["default"].r == smallest


def _worker(out: str, cfg_json: str) -> None:
    """Entry point of the multi-process runs (``torchrun``): trains into ``out`` with the
    tiny config overridden by ``cfg_json``."""
    from spatialalign.parallel.sharding import is_sharded

    cfg = tiny_cfg(**json.loads(cfg_json))
    pipe = ToyPipeline.random(0)
    train(pipe.transformer, tiny_data(pipe), cfg, out, progress=False)
    # the FSDP runs really shard every block (and the DDP one does not)
    fsdp = cfg.distributed == "fsdp"
    assert all(is_sharded(b) == fsdp for b in [pipe.transformer, *pipe.transformer.blocks])


def _torchrun(out: Path, **cfg) -> None:
    """Two CPU processes (torchrun, gloo) running :func:`_worker`.
    (``accelerate launch --cpu`` starts several CPU processes only through mpirun.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, __file__, str(out), json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _assert_same_adapter(a_path: Path, b_path: Path) -> None:
    a, b = load_file(str(a_path)), load_file(str(b_path))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """DDP on two CPU processes with one pair each = one process with two pairs."""
    one = run(tmp_path / "one", tiny_cfg(max_steps=3, train_batch_size=2, checkpoint_every=0))
    _torchrun(tmp_path / "two", max_steps=3, train_batch_size=1, checkpoint_every=0)
    _assert_same_adapter(one.adapter, tmp_path / "two" / one.adapter.name)
    assert _log(tmp_path / "two")[-1]["loss"] == pytest.approx(_log(tmp_path / "one")[-1]["loss"])


@pytest.mark.slow
def test_fsdp_trains_like_one_process_and_resumes_any_checkpoint(tmp_path):
    """FSDP2 on two CPU processes (sharded blocks, gradient checkpointing, two micro-batches
    a step) = one process with the whole batch; its checkpoints hold whole tensors, so a
    one-process run resumes from an FSDP checkpoint and vice versa, at the same result."""
    common = dict(gradient_checkpointing=True, lr_scheduler="constant", lr_warmup_steps=0)
    one = run(tmp_path / "one", tiny_cfg(max_steps=4, train_batch_size=2, **common))
    # FSDP from scratch, with gradient accumulation: 2 processes x 1 pair x 2 micro-batches
    fsdp = dict(distributed="fsdp", train_batch_size=1, global_batch_size=4, **common)
    ref2 = run(
        tmp_path / "ref2", tiny_cfg(max_steps=2, train_batch_size=2, global_batch_size=4, **common)
    )
    _torchrun(tmp_path / "fsdp", max_steps=2, **fsdp)
    _assert_same_adapter(ref2.adapter, tmp_path / "fsdp" / ref2.adapter.name)
    losses = [r["loss"] for r in _log(tmp_path / "fsdp")]
    assert losses == pytest.approx([r["loss"] for r in _log(tmp_path / "ref2")])
    # one process resumes the FSDP run's (gathered) checkpoint
    cont = tiny_cfg(max_steps=4, train_batch_size=2, global_batch_size=4, resume=True, **common)
    shutil.copytree(tmp_path / "fsdp", tmp_path / "fsdp_then_one")
    run(tmp_path / "fsdp_then_one", cont)
    # FSDP resumes a one-process checkpoint (each process loads its shard)
    part = run(tmp_path / "part", tiny_cfg(max_steps=2, train_batch_size=2, **common))
    assert part.steps == 2
    _torchrun(
        tmp_path / "part",
        max_steps=4,
        resume=True,
        distributed="fsdp",
        train_batch_size=1,
        **common,
    )
    _assert_same_adapter(one.adapter, tmp_path / "part" / one.adapter.name)
    full4 = run(tmp_path / "full4", cont.__class__(**{**cont.to_dict(), "resume": False}))
    _assert_same_adapter(full4.adapter, tmp_path / "fsdp_then_one" / one.adapter.name)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
