from dsr_geom._core import OFFICIAL_THRESHOLDS as OFFICIAL_THRESHOLDS
from dsr_geom._core import correctness_curve as correctness_curve
from dsr_geom._core import densify_tracks as densify_tracks
from dsr_geom._core import dsr_batch as dsr_batch
from dsr_geom._core import dsr_score as dsr_score
from dsr_geom._core import ssr_scores as ssr_scores

__all__ = [
    "OFFICIAL_THRESHOLDS",
    "correctness_curve",
    "densify_tracks",
    "dsr_batch",
    "dsr_score",
    "ssr_scores",
]
