"""What every directory layout of a run shares: a root built from any path-like, and being
accepted wherever a path to that directory is (``os.fspath``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, init=False)
class DirLayout:
    """A directory whose file names one subclass spells (``RunDir``, ``TrainDir``, ...).

    Subclasses add only properties; equality, hashing and ``repr`` are the dataclass's (the
    class and the root)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return os.fspath(self.root)
