"""The layout of a loop directory, owned in one place.

``RUN/prompts.parquet`` (the TRAIN prompts, made once), ``RUN/loop.json`` and ``RUN/loop.md``
(settings and the per-round table), and per round ``k``: ``round_k/train/`` (a run directory:
samples, tracks, scores, pairs, cache, ``run/``), ``round_k/eval/`` (an ``eval`` run
directory) and, when merging, ``round_k/model/`` (the model with round k's LoRA fused in).
Round 0 has only ``eval/`` (the starting model).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from spatialalign.core.fileio import exclusive_lock
from spatialalign.rundir.layout import LOCK_NAME, RunDir


@dataclass(frozen=True)
class LoopDir:
    """One loop's directory and the names of everything the loop writes in it."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def prompts_run(self) -> RunDir:
        """The loop directory as a run directory holding only the TRAIN prompts every round
        samples (written once, by :meth:`RunDir.write_prompts`)."""
        return RunDir(self.root)

    @property
    def prompts_path(self) -> Path:
        """The TRAIN prompts every round samples (``RUN/prompts.parquet``)."""
        return self.prompts_run.prompts_path

    @property
    def state_path(self) -> Path:
        """``loop.json``: the settings and the per-round table."""
        return self.root / "loop.json"

    @property
    def table_path(self) -> Path:
        """``loop.md``: the per-round table as Markdown."""
        return self.root / "loop.md"

    @property
    def lock_path(self) -> Path:
        """The loop's lock file (a second ``loop`` on the directory fails at once)."""
        return self.root / LOCK_NAME

    def lock(self) -> AbstractContextManager[None]:
        """Holds the loop directory's exclusive lock (:func:`spatialalign.core.fileio.exclusive_lock`)."""
        return exclusive_lock(self.lock_path, "loop", self.root)

    def round_dir(self, k: int) -> Path:
        return self.root / f"round_{int(k)}"

    def train_run(self, k: int) -> RunDir:
        """Round k's training run directory (round k >= 1)."""
        return RunDir(self.round_dir(k) / "train")

    def eval_run(self, k: int) -> RunDir:
        """Round k's evaluation run directory."""
        return RunDir(self.round_dir(k) / "eval")

    def adapter_path(self, k: int) -> Path:
        """The LoRA round k trained (``round_k/train/run/pytorch_lora_weights.safetensors``)."""
        return self.train_run(k).train.adapter_path

    def model_dir(self, k: int) -> Path:
        """``--merge``: the model of round k (round k-1's model with round k's LoRA fused in)."""
        return self.round_dir(k) / "model"
