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
DESIGN_MD = SHARED_DIR / "DESIGN.md"
"""The design contract; tests check our schemas against its tables."""
OFFICIAL_TRAIN_STEP = SHARED_DIR / "data" / "official_train_step"
"""The official training step on a tiny Wan (golden fixture; its README says what is what)."""
OFFICIAL_STEP_CASES = OFFICIAL_TRAIN_STEP / "cases.json"
OFFICIAL_STEP_TENSORS = OFFICIAL_TRAIN_STEP / "fixture.safetensors"

# fail loudly rather than skip: these tests need the real files
for _path in (OFFICIAL_CSV, DESIGN_MD, OFFICIAL_STEP_CASES, OFFICIAL_STEP_TENSORS):
    if not _path.is_file():
        raise FileNotFoundError(
            f"shared file not found at {_path}; set SPATIALALIGN_SHARED_DIR to the project's "
            "shared folder (holding DESIGN.md, data/official_eval120.csv and "
            "data/official_train_step/)"
        )
