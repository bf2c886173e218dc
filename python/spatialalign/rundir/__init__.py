"""The run directory, the pipeline's spine: :mod:`~spatialalign.rundir.layout` owns every
path in it and the readers of the files stages pass each other; :mod:`~spatialalign.rundir.train`
the paths inside ``train``'s output and cache directories; :mod:`~spatialalign.rundir.rl`
``rl``'s own files (its configuration and per-iteration rewards)."""

from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.rl import RLDir
from spatialalign.rundir.train import CacheDir, TrainDir

__all__ = ["CacheDir", "RLDir", "RunDir", "TrainDir"]
