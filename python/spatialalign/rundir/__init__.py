"""The run directory, the pipeline's spine: :mod:`~spatialalign.rundir.layout` owns every
path in it and the readers of the files stages pass each other; :mod:`~spatialalign.rundir.train`
the paths inside ``train``'s output and cache directories."""

from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.train import CacheDir, TrainDir

__all__ = ["CacheDir", "RunDir", "TrainDir"]
