"""Video file names: the official SpatialAlign naming ``{prompt_id}_F{frames}_seed{NN}.mp4``.

The sample id of a video is its file name without ``.mp4``; it is unique within a run
directory and matches the names the official scripts use (``1043_TL_F81_seed00``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spatialalign.rundir.layout import VIDEO_SUFFIX

_OFFICIAL = re.compile(r"^(?P<prompt_id>.+)_F(?P<frames>\d+)_seed(?P<seed>\d+)$")


def sample_id(prompt_id: str, num_frames: int, seed: int) -> str:
    """``{prompt_id}_F{frames:02d}_seed{seed:02d}``, as the official ``inference.py`` names them."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return f"{prompt_id}_F{num_frames:02d}_seed{seed:02d}"


def video_filename(prompt_id: str, num_frames: int, seed: int) -> str:
    """The mp4 file name of one sample."""
    return sample_id(prompt_id, num_frames, seed) + VIDEO_SUFFIX


@dataclass(frozen=True)
class ParsedName:
    """The parts of an officially named video: prompt id, frame count and seed."""

    prompt_id: str
    num_frames: int
    seed: int


def parse_video_name(name: str) -> ParsedName | None:
    """Parses ``{prompt_id}_F{frames}_seed{NN}[.mp4]``; None when the name does not match."""
    stem = name[: -len(VIDEO_SUFFIX)] if name.lower().endswith(VIDEO_SUFFIX) else name
    m = _OFFICIAL.match(stem)
    if m is None:
        return None
    return ParsedName(m["prompt_id"], int(m["frames"]), int(m["seed"]))
