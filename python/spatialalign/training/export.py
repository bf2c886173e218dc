"""``export-adapter``: the LoRA of any kept training checkpoint, as a loadable adapter file.

A checkpoint (``run/checkpoints/checkpoint-NNNNNNN.safetensors``) holds the LoRA weights under
``lora.`` and, since this command exists, the adapter's peft config in its metadata (older
ones: rank and alpha from ``train_config.json``). The diffusers file is written by the
trainer's own writer (:func:`spatialalign.training.trainer.write_adapter`), so the LoRA of
the final step is the run's ``pytorch_lora_weights.safetensors`` tensor for tensor; the other
formats go through :func:`spatialalign.lora.convert.convert_lora`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatialalign.core.errors import SpatialAlignError
from spatialalign.lora.adapter import LORA_WEIGHT_NAME
from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.train import TrainDir

EXPORT_FORMATS = ("diffusers", "diffsynth", "comfyui", "kohya")
"""The formats ``export-adapter --to`` writes (those of ``convert-lora``)."""


@dataclass
class ExportResult:
    """What :func:`export_adapter` wrote."""

    path: Path
    step: int
    fmt: str
    n_tensors: int
    note: str = ""

    def line(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return (
            f"exported the LoRA of step {self.step} ({self.n_tensors} tensors, {self.fmt})"
            f"{extra} -> {self.path}"
        )


def train_dir_of(run: str | os.PathLike[str]) -> Path:
    """The training output directory of ``run``: a run directory's ``run/``, or that
    directory itself (the one holding ``checkpoints/``)."""
    root = Path(run).expanduser()
    for d in (RunDir(root).train_dir, root):
        if TrainDir(d).checkpoints_dir.is_dir():
            return d
    raise SpatialAlignError(
        f"no training checkpoints in {root} (neither {RunDir(root).train.checkpoints_dir} nor "
        f"{TrainDir(root).checkpoints_dir} exists): export-adapter reads a `spatialalign train` run"
    )


def available_steps(train_dir: Path) -> list[int]:
    """The steps of the checkpoints kept in ``train_dir``."""
    return [TrainDir.checkpoint_step(p) for p in TrainDir(train_dir).checkpoint_paths()]


def _missing_step(train_dir: Path, step: int) -> SpatialAlignError:
    steps = available_steps(train_dir)
    have = ", ".join(str(s) for s in steps) if steps else "none"
    saved = TrainDir(train_dir).step_adapter_path(step)
    hint = (
        f"; its adapter was saved during training: {saved}"
        if saved.is_file()
        else "; train with --keep-checkpoint-every or --save-adapter-steps to keep a step"
    )
    return SpatialAlignError(
        f"no checkpoint of step {step} in {TrainDir(train_dir).checkpoints_dir}: steps available: "
        f"{have}{hint}"
    )


def checkpoint_lora(train_dir: Path, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The LoRA weights (peft names) of the checkpoint of ``step`` and the adapter's peft
    config (recorded in the checkpoint, else rebuilt from ``train_config.json``)."""
    from spatialalign.training.trainer import LORA_CONFIG_KEY, LORA_PREFIX
    from spatialalign.trainlib.checkpoint import load_checkpoint, strip_prefix

    path = TrainDir(train_dir).checkpoint_path(step)
    if not path.is_file():
        raise _missing_step(train_dir, step)
    tensors, meta = load_checkpoint(path)
    state = strip_prefix(tensors, LORA_PREFIX)
    if not state:
        raise SpatialAlignError(f"checkpoint {path} holds no LoRA weights")
    config = meta.get(LORA_CONFIG_KEY) or _config_from_run(train_dir, path)
    return state, config


def _config_from_run(train_dir: Path, checkpoint: Path) -> dict[str, Any]:
    """The peft config of a checkpoint written before checkpoints recorded it: the
    SpatialAlign LoRA with the run's rank and alpha."""
    from spatialalign.core.fileio import read_json
    from spatialalign.lora.adapter import lora_config

    path = TrainDir(train_dir).config_path
    if not path.is_file():
        raise SpatialAlignError(
            f"checkpoint {checkpoint} records no adapter config and {path} is missing: "
            "cannot tell the LoRA's rank and alpha"
        )
    cfg = read_json(path)
    return lora_config(int(cfg["lora_rank"]), float(cfg["lora_alpha"])).to_dict()


def export_adapter(
    run: str | os.PathLike[str],
    step: int,
    *,
    to: str = "diffusers",
    out: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Writes the LoRA of ``run``'s checkpoint of ``step`` in format ``to`` to ``out`` (a
    ``.safetensors`` file or a directory; default ``run/adapters/step-NNNNNNN/``, where
    ``train --save-adapter-steps`` writes), atomically. Refuses a step without a checkpoint
    (listing the steps there are) and an ``out`` that is the run's own adapter or a
    checkpoint."""
    from spatialalign.lora.convert import convert_lora, lora_output_file
    from spatialalign.training.trainer import write_adapter

    if to not in EXPORT_FORMATS:
        raise SpatialAlignError(f"unknown LoRA format {to!r} (one of {', '.join(EXPORT_FORMATS)})")
    if step < 1:
        raise SpatialAlignError(f"--step must be >= 1, got {step}")
    train_dir = train_dir_of(run)
    state, config = checkpoint_lora(train_dir, step)
    target = Path(out).expanduser() if out is not None else TrainDir(train_dir).adapter_dir(step)
    if out is None or (not target.suffix and not target.exists()):
        target.mkdir(parents=True, exist_ok=True)  # a directory to write into
    path = lora_output_file(target, to)
    own = TrainDir(train_dir)
    _refuse_run_files(path, own.adapter_path, own.checkpoints_dir)
    if to == "diffusers":
        write_adapter(path, state, config)
        return ExportResult(path, step, to, len(state))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export.") as tmp:
        src = write_adapter(Path(tmp) / LORA_WEIGHT_NAME, state, config)
        result = convert_lora(src, path, to)
    note = "alpha/rank folded into lora_B" if result.folded else ""
    return ExportResult(result.path, step, to, result.n_tensors, note)


def _refuse_run_files(path: Path, adapter: Path, checkpoints: Path) -> None:
    """An export never writes over the run's final adapter or into its checkpoints."""
    resolved = path.resolve()
    if resolved == adapter.resolve():
        raise SpatialAlignError(
            f"refusing to write {path}: it is the run's own adapter (choose another --out)"
        )
    if resolved.parent == checkpoints.resolve():
        raise SpatialAlignError(f"refusing to write {path} among the run's checkpoints")
