from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import numpy.typing as npt

_Boxes = npt.ArrayLike  # [N, 4] float32 or float64, xyxy
_Relations = str | Sequence[str]

__all__ = [
    "OFFICIAL_THRESHOLDS",
    "correctness_curve",
    "densify_tracks",
    "dsr_batch",
    "dsr_score",
    "ssr_scores",
]

OFFICIAL_THRESHOLDS: list[float]

# the dict dsr_batch returns (a type for checkers only: not a runtime class)
class _BatchResult(TypedDict):
    dsr: npt.NDArray[np.float64]
    r_init: npt.NDArray[np.float64]
    r_final: npt.NDArray[np.float64]
    g_init: npt.NDArray[np.float64]
    g_final: npt.NDArray[np.float64]
    n_kept: npt.NDArray[np.int64]

# one chunk of long tracks rows: dictionary indices and maps (int32), frame (int64),
# box columns (float64); every array 1-D and contiguous
class _TrackChunk(TypedDict):
    sample: npt.NDArray[np.int32]  # index into sample_map
    sample_map: npt.NDArray[np.int32]  # dictionary entry -> video index, -1: not scored
    label: npt.NDArray[np.int32]  # index into label_map
    label_map: npt.NDArray[np.int32]  # dictionary entry -> 0 animal, 1 object, -1 unknown
    frame: npt.NDArray[np.int64]
    x0: npt.NDArray[np.float64]
    y0: npt.NDArray[np.float64]
    x1: npt.NDArray[np.float64]
    y1: npt.NDArray[np.float64]

# the dict densify_tracks returns
class _DenseTracks(TypedDict):
    frames: npt.NDArray[np.int64]
    animal: npt.NDArray[np.float64]  # [F, 4]
    obj: npt.NDArray[np.float64]  # [F, 4]
    offsets: npt.NDArray[np.int64]  # [V + 1]
    n_rows: npt.NDArray[np.int64]  # [V]
    n_unknown: int

def ssr_scores(animal: _Boxes, obj: _Boxes, relation: str) -> npt.NDArray[np.float64]: ...
def dsr_score(
    animal: _Boxes, obj: _Boxes, initial: str, final: str, *, m: int = 3, min_frames: int = 20
) -> float | None: ...
def dsr_batch(
    animal: _Boxes,
    obj: _Boxes,
    offsets: npt.ArrayLike,
    initial: _Relations,
    final: _Relations,
    *,
    m: int = 3,
    min_frames: int = 20,
) -> _BatchResult: ...
def correctness_curve(
    dsr: npt.ArrayLike, thresholds: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]: ...
def densify_tracks(chunks: Sequence[_TrackChunk], n_videos: int) -> _DenseTracks: ...
