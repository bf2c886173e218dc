"""Cheap video probing with PyAV: size, frame rate and frame count without decoding all frames.

``sample`` uses it to decide whether a finished video can be skipped (and reads what it
was made from, the ``comment`` tag), ``ingest`` to fill the manifest. A video counts as readable when its container opens, it has a video
stream and its first frame decodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from spatialalign.core.video import VideoReadError


@dataclass(frozen=True)
class VideoInfo:
    """What the manifest records about a video file."""

    num_frames: int
    fps: float
    height: int
    width: int
    comment: str = ""
    """The container's ``comment`` tag (``sample``'s provenance record, JSON)."""


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Probes ``path``; raises :class:`VideoReadError` when it is missing or not decodable.

    The frame count comes from the container header when it has one, else from counting
    the stream's packets (no decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"no video stream in {path}")
            comment = str(container.metadata.get("comment", ""))
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoReadError(f"no decodable frames in {path}")
            height, width = first.height, first.width
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            num_frames = int(stream.frames or 0)
        if num_frames <= 0:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                num_frames = sum(1 for p in container.demux(stream) if p.size)
    except VideoReadError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as e:
        raise VideoReadError(f"cannot decode {path}: {e}") from e
    return VideoInfo(
        num_frames=num_frames,
        fps=float(rate) if rate else 0.0,
        height=height,
        width=width,
        comment=comment,
    )
