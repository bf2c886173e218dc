"""Scoring and validity thresholds shared by every stage.

The official values (Wan back end) reproduce the SpatialAlign paper's scripts; the
toy world has short clips and declares its own scaled preset, registered here so
that ``track``, ``score-batch`` and training all read the same numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spatialalign.core.errors import SpatialAlignError


@dataclass(frozen=True)
class ScoringConfig:
    """DSR-Score parameters and the detection-level video validity rules."""

    m: int = 3
    """Kept frames averaged at each end of a video for r_init / r_final."""
    min_frames: int = 20
    """A video with fewer kept frames is invalid."""
    box_threshold: float = 0.4
    """GroundingDINO box score threshold."""
    text_threshold: float = 0.3
    """GroundingDINO text score threshold."""
    max_redundant: int = 16
    """Reject a video with more redundant frames than this."""
    min_valid: int = 20
    """Reject a video with fewer valid frames than this."""
    min_run: int = 4
    """Reject a video with no run of at least this many consecutive valid frames."""
    tau_train: float = 0.7
    """DSR at or above which a valid sample is a winner when building pairs."""

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


OFFICIAL = ScoringConfig()

# The toy world's clips are short (spatialalign.toy.ToyWorldConfig: 9 frames); its
# thresholds are the official ones scaled to that frame count. The toy package owns
# these numbers. m=2: the renderer rests the animal for >= 2 frames at each end (of 9,
# as m=3 is of 81 frames: only the ends, never the motion). min_frames = min_valid = 6:
# two thirds of the frames must be kept / valid (stricter than the official 20/81, since
# the ends alone are 4 of 9 frames). min_run=3: a third of the clip tracked steadily.
# max_redundant=3: the most a clip with 6 valid frames can have.
TOY = ScoringConfig(m=2, min_frames=6, max_redundant=3, min_valid=6, min_run=3)

# The hard toy world (``toy-hard``: 12 frames, distractors, occlusion when the animal passes
# behind the object). m=2 as in the toy world (the renderer rests the animal >= 2 frames at
# each end). min_frames = min_valid = 8: two thirds of 12, as in the toy preset. min_run=4: a
# third of the clip tracked steadily. max_redundant=4: the most a clip with 8 valid frames
# can have, the toy preset's rule (3 = 9 - 6).
TOY_HARD = ScoringConfig(m=2, min_frames=8, max_redundant=4, min_valid=8, min_run=4)

PRESETS: dict[str, ScoringConfig] = {
    "official": OFFICIAL,
    "wan": OFFICIAL,
    "toy": TOY,
    "toy-hard": TOY_HARD,
}


def preset_for(detector: str) -> str:
    """The validity preset that goes with a detector: ``toy`` for the toy colour detector
    (its own thresholds, docs/TOY_MODEL.md), ``official`` for GroundingDINO."""
    return "toy" if detector == "toy" else "official"


def scoring_config(name: str = "official", **overrides: float | int) -> ScoringConfig:
    """Returns a named preset (``official``/``wan``/``toy``/``toy-hard``) with optional
    overrides."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise SpatialAlignError(
            f"unknown scoring preset {name!r} (choose from {', '.join(PRESETS)})"
        ) from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **overrides)
