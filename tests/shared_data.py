"""Where the project's shared data lives for tests.

CI clones the repository with the project's ``shared/`` folder beside it, so the
default is ``<repo>/../shared``; ``SPATIALALIGN_SHARED_DIR`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR = Path(
    os.environ.get("SPATIALALIGN_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")
)
OFFICIAL_CSV = SHARED_DIR / "data" / "official_eval120.csv"
"""The official 120 SpatialAlign test prompts (read in place, never copied)."""

if not OFFICIAL_CSV.is_file():  # fail loudly: these tests need the real prompts
    raise FileNotFoundError(
        f"official prompts not found at {OFFICIAL_CSV}; set SPATIALALIGN_SHARED_DIR "
        "to the folder holding data/official_eval120.csv"
    )
