"""The sampling stage: generate videos per prompt x seed (``sample``) or bring them in (``ingest``).

Videos land in ``RUN_DIR/samples/`` with the official names
``{prompt_id}_F{frames}_seed{NN}.mp4`` and are listed in ``samples/manifest.parquet``
(paths and reading: :class:`spatialalign.rundir.layout.RunDir`).
"""

from spatialalign.models.backends import BackendConfig, ToyBackend, WanBackend, load_backend
from spatialalign.sampling.ingest import ingest_videos
from spatialalign.sampling.naming import parse_video_name, sample_id, video_filename
from spatialalign.sampling.sampler import (
    SampleRunResult,
    plan_samples,
    sample_videos,
    select_prompts,
)

__all__ = [
    "BackendConfig",
    "SampleRunResult",
    "ToyBackend",
    "WanBackend",
    "ingest_videos",
    "load_backend",
    "parse_video_name",
    "plan_samples",
    "sample_id",
    "sample_videos",
    "select_prompts",
    "video_filename",
]
