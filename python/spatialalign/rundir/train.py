"""The layout of ``train``'s directories in a run: ``RUN/run/`` (:class:`TrainDir`) and
``RUN/cache/`` (:class:`CacheDir`), owned here beside :class:`~spatialalign.rundir.RunDir`.

The trainer, the cache, ``export-adapter``, the loop and the report take these paths from
here, so a file name of the training output is spelled once. Where the adapter goes is
decided here; its file name is the adapter format's (:data:`LORA_WEIGHT_NAME`, diffusers').
"""

from __future__ import annotations

from pathlib import Path

from spatialalign.lora.adapter import LORA_WEIGHT_NAME
from spatialalign.rundir.base import DirLayout

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_SUFFIX = ".safetensors"


class TrainDir(DirLayout):
    """``train``'s output directory (``RUN/run/``): the LoRA, checkpoints, logs, settings."""

    @property
    def adapter_path(self) -> Path:
        """The trained LoRA in diffusers' format (``pytorch_lora_weights.safetensors``)."""
        return self.root / LORA_WEIGHT_NAME

    @property
    def log_path(self) -> Path:
        """``train_log.jsonl``: one JSON object per optimizer step (the report draws it)."""
        return self.root / "train_log.jsonl"

    @property
    def config_path(self) -> Path:
        """``train_config.json``: the resolved training configuration (resume checks it)."""
        return self.root / "train_config.json"

    @property
    def inputs_path(self) -> Path:
        """``inputs.json``: fingerprints of what the run trains on (pairs, scores, model)."""
        return self.root / "inputs.json"

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard's event files, when tensorboard is installed."""
        return self.root / "tensorboard"

    @property
    def checkpoints_dir(self) -> Path:
        """The kept checkpoints (LoRA, optimizer, scheduler, RNG, step)."""
        return self.root / "checkpoints"

    def checkpoint_path(self, step: int) -> Path:
        """``checkpoints/checkpoint-{step:07d}.safetensors``."""
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{int(step):07d}{CHECKPOINT_SUFFIX}"

    def checkpoint_paths(self) -> list[Path]:
        """The run's checkpoints, oldest first."""
        d = self.checkpoints_dir
        return sorted(d.glob(f"{CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX}")) if d.is_dir() else []

    @staticmethod
    def checkpoint_step(path: Path) -> int:
        """The step of a checkpoint file, from its name."""
        return int(Path(path).name.removeprefix(CHECKPOINT_PREFIX).removesuffix(CHECKPOINT_SUFFIX))

    @property
    def adapters_dir(self) -> Path:
        """The adapters of chosen steps (``--save-adapter-steps``, ``export-adapter``)."""
        return self.root / "adapters"

    def adapter_dir(self, step: int) -> Path:
        """Where the LoRA of ``step`` is written during training (``save_adapter_steps``)
        and by default by ``export-adapter``: ``adapters/step-{step:07d}/``."""
        return self.adapters_dir / f"step-{int(step):07d}"

    def step_adapter_path(self, step: int) -> Path:
        """The LoRA file of ``step`` in :meth:`adapter_dir`."""
        return self.adapter_dir(step) / LORA_WEIGHT_NAME


class CacheDir(DirLayout):
    """``train``'s cache (``RUN/cache/``): latents and text embeddings, one safetensors
    file per item under a directory per kind, and the index that says what each is of."""

    @property
    def index_path(self) -> Path:
        """``index.json``: the cache's format, encoder identity and per-item sources."""
        return self.root / "index.json"

    def item_path(self, kind: str, item_id: str) -> Path:
        """``{kind}/{item_id}.safetensors`` (``kind``: latents or text; ids checked by the
        cache before they get here)."""
        return self.root / kind / f"{item_id}.safetensors"
