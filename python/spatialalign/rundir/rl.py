"""The layout of ``spatialalign rl``'s output in a run directory (:class:`RLDir`).

``rl RUN`` trains online: each iteration samples, scores and updates the LoRA. Its adapter,
checkpoints and per-iteration log live in ``RUN/run/`` (:class:`~spatialalign.rundir.train.TrainDir`,
the same names as ``train``'s, so ``export-adapter``, ``report`` and ``sample --adapter``
read them unchanged); what is its own is named here: the resolved configuration and one
rewards table per iteration (every sampled video's verdict, reward and advantage).
"""

from __future__ import annotations

from pathlib import Path

from spatialalign.core.ids import MAX_SAMPLE_ID_LENGTH, check_id
from spatialalign.rundir.base import DirLayout
from spatialalign.rundir.layout import VIDEO_SUFFIX, RunDir
from spatialalign.rundir.train import TrainDir

ITERATION_PREFIX = "iter-"
REWARDS_SUFFIX = ".parquet"
TOP_SHEET_SUFFIX = "-top.png"


class RLDir(DirLayout):
    """``rl``'s files in run directory ``root`` (beside the run's prompts)."""

    @property
    def run(self) -> RunDir:
        """The run directory (prompts, lock)."""
        return RunDir(self.root)

    @property
    def train(self) -> TrainDir:
        """``RUN/run/``: the adapter, checkpoints (step = iteration), log, TensorBoard."""
        return self.run.train

    @property
    def config_path(self) -> Path:
        """``rl_config.json``: the resolved :class:`~spatialalign.rl.config.RLConfig` and the
        model it trains (a rerun with other settings is refused)."""
        return self.root / "rl_config.json"

    @property
    def iterations_dir(self) -> Path:
        """``rl/``: one rewards table per finished iteration (and its videos, when kept)."""
        return self.root / "rl"

    def rewards_path(self, iteration: int) -> Path:
        """``rl/iter-NNNNNNN.parquet``: iteration ``iteration``'s sampled videos (prompt,
        seed, verdict, DSR terms, reward, advantage, kept by the top-k filter)."""
        return self.iterations_dir / f"{ITERATION_PREFIX}{int(iteration):07d}{REWARDS_SUFFIX}"

    def top_sheet_path(self, iteration: int) -> Path:
        """``rl/iter-NNNNNNN-top.png``: the iteration's highest-reward videos, a row of frames
        each (:mod:`spatialalign.rl.watch`, the reward-hacking watch)."""
        return self.iterations_dir / f"{ITERATION_PREFIX}{int(iteration):07d}{TOP_SHEET_SUFFIX}"

    def latest_top_sheet(self) -> Path | None:
        """The last iteration's sheet, when there is one."""
        d = self.iterations_dir
        sheets = sorted(d.glob(f"{ITERATION_PREFIX}*{TOP_SHEET_SUFFIX}")) if d.is_dir() else []
        return sheets[-1] if sheets else None

    @classmethod
    def of_train_log(cls, log_path: Path) -> RLDir | None:
        """The rl run whose ``run/train_log.jsonl`` is ``log_path``; None for a ``train``
        run's log (no ``rl_config.json`` beside its ``run/``)."""
        rl = cls(Path(log_path).parent.parent)
        return rl if rl.config_path.is_file() else None

    def videos_dir(self, iteration: int) -> Path:
        """``rl/iter-NNNNNNN/``: the iteration's videos (``rl --keep-videos``)."""
        return self.iterations_dir / f"{ITERATION_PREFIX}{int(iteration):07d}"

    def video_path(self, iteration: int, sample_id: str) -> Path:
        """A kept video of iteration ``iteration`` (its id checked, as :meth:`RunDir.video_path`)."""
        sid = check_id(sample_id, "sample_id", max_length=MAX_SAMPLE_ID_LENGTH)
        return self.videos_dir(iteration) / f"{sid}{VIDEO_SUFFIX}"

    def rewards_paths(self) -> list[Path]:
        """The rewards tables there are, oldest iteration first."""
        d = self.iterations_dir
        return sorted(d.glob(f"{ITERATION_PREFIX}*{REWARDS_SUFFIX}")) if d.is_dir() else []

    @staticmethod
    def iteration_of(path: Path) -> int:
        """The iteration of a rewards table, from its name."""
        return int(Path(path).name.removeprefix(ITERATION_PREFIX).removesuffix(REWARDS_SUFFIX))
