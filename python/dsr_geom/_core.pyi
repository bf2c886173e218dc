from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import numpy.typing as npt

_Boxes = npt.ArrayLike  # [N, 4] float32 or float64, xyxy
_Relations = str | Sequence[str]

__all__ = ["OFFICIAL_THRESHOLDS", "correctness_curve", "dsr_batch", "dsr_score", "ssr_scores"]

OFFICIAL_THRESHOLDS: list[float]

# the dict dsr_batch returns (a type for checkers only: not a runtime class)
class _BatchResult(TypedDict):
    dsr: npt.NDArray[np.float64]
    r_init: npt.NDArray[np.float64]
    r_final: npt.NDArray[np.float64]
    g_init: npt.NDArray[np.float64]
    g_final: npt.NDArray[np.float64]
    n_kept: npt.NDArray[np.int64]

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
