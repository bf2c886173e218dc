"""DSR-Score geometry core (Rust): SSR per frame, DSR per video, batch scoring, and
the densification of long tracks rows into the arrays batch scoring takes.

See DESIGN.md ("Python API of dsr_geom"). Boxes are ``[N, 4]`` xyxy pixels with y
downwards; an all-NaN row means "not detected"; any other malformed input raises
``ValueError`` naming the offending row or video.
"""

from dsr_geom._core import (
    OFFICIAL_THRESHOLDS,
    correctness_curve,
    densify_tracks,
    dsr_batch,
    dsr_score,
    ssr_scores,
)

__all__ = [
    "OFFICIAL_THRESHOLDS",
    "correctness_curve",
    "densify_tracks",
    "dsr_batch",
    "dsr_score",
    "ssr_scores",
]
