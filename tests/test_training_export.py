"""Adapters at any step: the checkpoint keep policy, ``--save-adapter-steps`` during training
and ``spatialalign export-adapter RUN --step N`` from a kept checkpoint."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from spatialalign.cli import main  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.rundir import TrainDir  # noqa: E402
from spatialalign.training.export import export_adapter  # noqa: E402
from spatialalign.training.trainer import LORA_CONFIG_KEY  # noqa: E402
from spatialalign.trainlib.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from test_training_trainer import run, tiny_cfg  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def kept_steps(out) -> list[int]:
    """The steps of the checkpoints a training directory keeps."""
    return [TrainDir.checkpoint_step(p) for p in TrainDir(out).checkpoint_paths()]


ADAPTER = "pytorch_lora_weights.safetensors"


def kept_cfg(**kw):
    """5 steps, a checkpoint every step, the latest 1 kept plus every 2nd for good, the
    adapters of steps 2 and 5 written during training."""
    base = dict(max_steps=5, checkpoint_every=1, keep_checkpoints=1, keep_checkpoint_every=2,
                save_adapter_steps="2,5")  # fmt: skip
    return tiny_cfg(**{**base, **kw})


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def assert_same_adapter(a: Path, b: Path) -> None:
    """Bit for bit: the same tensors and the same adapter metadata (the files' bytes may still
    differ: safetensors orders its header keys by a hash map)."""
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys() and ta
    assert all(torch.equal(ta[k], tb[k]) and ta[k].dtype == tb[k].dtype for k in ta)
    assert _metadata(a) == _metadata(b)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run directory ROOT whose ROOT/run/ holds a finished :func:`kept_cfg` run."""
    root = tmp_path_factory.mktemp("export") / "root"
    res = run(root / "run", kept_cfg())
    assert res.steps == 5 and res.adapter == root / "run" / ADAPTER
    return root


def test_the_keep_policy_and_the_adapters_written_during_training(trained):
    out = trained / "run"
    assert kept_steps(out) == [2, 4, 5]
    adapters = sorted(p.name for p in (out / "adapters").iterdir())
    assert adapters == ["step-0000002", "step-0000005"]
    # one process, one code path (the trainer's writer on the same weights): bit for bit
    assert_same_adapter(out / "adapters" / "step-0000005" / ADAPTER, out / ADAPTER)
    assert not list((out / "adapters").rglob(".adapter.*"))  # no temporary left


def test_the_exported_final_step_is_the_runs_adapter_bit_for_bit(trained, tmp_path):
    out = trained / "run"
    res = export_adapter(trained, 5, out=tmp_path / "final.safetensors")
    assert res.path == tmp_path / "final.safetensors" and res.step == 5
    assert_same_adapter(res.path, out / ADAPTER)
    # step 2's checkpoint holds the weights its adapter was written from during training
    res2 = export_adapter(out, 2, out=tmp_path / "two")  # RUN may be the run/ itself
    assert res2.path == tmp_path / "two" / ADAPTER
    assert_same_adapter(res2.path, out / "adapters" / "step-0000002" / ADAPTER)
    # and step 4's LoRA is another one
    four = load_file(str(export_adapter(trained, 4, out=tmp_path / "4.safetensors").path))
    final = load_file(str(out / ADAPTER))
    assert any(not torch.equal(four[k], final[k]) for k in final)


def test_an_exported_adapter_loads_into_the_toy_pipeline(trained, tmp_path):
    from spatialalign.models.toy.pipeline import ToyPipeline

    path = export_adapter(trained, 4, out=tmp_path / "four.safetensors").path
    pipe = ToyPipeline.random(0)
    pipe.load_lora_weights(path)
    cfg = pipe.transformer.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha) == (4, 8.0)  # rank and alpha travel with the export


def test_other_formats_go_through_convert_lora(trained, tmp_path):
    from spatialalign.lora.convert import convert_lora

    out = trained / "run"
    want = convert_lora(out / ADAPTER, tmp_path / "want.safetensors", "diffsynth").path
    got = export_adapter(trained, 5, to="diffsynth", out=tmp_path / "got.safetensors")
    assert got.fmt == "diffsynth" and "folded" in got.line()
    a, b = load_file(str(got.path)), load_file(str(want))
    # the same conversion of the same tensors: bit for bit
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("blocks.0.cross_attn.k.") for k in a)
    comfy = export_adapter(trained, 5, to="comfyui", out=tmp_path / "c")
    assert comfy.path == tmp_path / "c" / "lora_comfyui.safetensors"
    assert not list(tmp_path.rglob(".export.*"))


def test_a_step_without_a_checkpoint_lists_the_steps_there_are(trained, tmp_path):
    with pytest.raises(SpatialAlignError) as e:
        export_adapter(trained, 3)
    msg = str(e.value)
    assert msg.startswith("no checkpoint of step 3 in ") and "\n" not in msg
    assert "steps available: 2, 4, 5;" in msg and "--keep-checkpoint-every" in msg
    # the adapter of a step whose checkpoint is gone may have been written during training
    shutil.copytree(trained, tmp_path / "copy")
    (tmp_path / "copy" / "run" / "checkpoints" / "checkpoint-0000002.safetensors").unlink()
    with pytest.raises(SpatialAlignError, match=r"steps available: 4, 5; its adapter was saved"):
        export_adapter(tmp_path / "copy", 2)
    with pytest.raises(SpatialAlignError, match="no training checkpoints in"):
        export_adapter(tmp_path, 2)
    with pytest.raises(SpatialAlignError, match="it is the run's own adapter"):
        export_adapter(trained, 4, out=trained / "run")
    with pytest.raises(SpatialAlignError, match="among the run's checkpoints"):
        export_adapter(trained, 4, out=trained / "run" / "checkpoints" / "x.safetensors")


def test_the_cli(trained, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(trained, root)
    main(["export-adapter", str(root), "--step", "4"])
    out = capsys.readouterr().out
    path = root / "run" / "adapters" / "step-0000004" / ADAPTER
    assert out == f"exported the LoRA of step 4 ({len(load_file(str(path)))} tensors, " \
                  f"diffusers) -> {path}\n"  # fmt: skip
    main(["export-adapter", str(root), "--step", "4", "--to", "diffsynth"])
    assert (path.parent / "lora_diffsynth.safetensors").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["export-adapter", str(root), "--step", "3"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and "steps available: 2, 4, 5" in err


def test_a_checkpoint_that_records_no_adapter_config(trained, tmp_path):
    # checkpoints written before they recorded the peft config: rank and alpha from the run
    root = tmp_path / "root"
    shutil.copytree(trained, root)
    path = root / "run" / "checkpoints" / "checkpoint-0000005.safetensors"
    tensors, meta = load_checkpoint(path)
    del meta[LORA_CONFIG_KEY]
    save_checkpoint(path, tensors, meta)
    res = export_adapter(root, 5, out=tmp_path / "old.safetensors")
    assert_same_adapter(res.path, root / "run" / ADAPTER)


def test_an_interrupted_run_resumes_to_the_same_checkpoints_and_adapters(trained, tmp_path):
    def kill_at_3(step, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: checkpoint, then stop

    out = tmp_path / "part"
    part = run(out, kept_cfg(), on_step=kill_at_3)
    assert part.interrupted and kept_steps(out) == [2, 3]
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["step-0000002"]
    # a hard kill after step 3 would leave step 2: the resumed run writes step 5's adapter
    TrainDir(out).checkpoint_paths()[-1].unlink()
    done = run(out, kept_cfg(resume=True))
    assert done.steps == 5
    full = trained / "run"
    assert kept_steps(out) == [2, 4, 5]
    # bit equality is right here: one process, one code path, the same inputs
    for step in ("step-0000002", "step-0000005"):
        assert_same_adapter(out / "adapters" / step / ADAPTER, full / "adapters" / step / ADAPTER)
    assert_same_adapter(out / ADAPTER, full / ADAPTER)
