"""The run directory, the pipeline's spine: :mod:`~spatialalign.rundir.layout` owns every
path in it and the readers of the files stages pass each other."""

from spatialalign.rundir.layout import RunDir

__all__ = ["RunDir"]
