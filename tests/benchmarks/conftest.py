"""Benchmarks are opt-in: collected only with ``--benchmark-enable`` / ``--benchmark-only``
(``make bench``), so the default ``pytest`` run never times anything."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or collection_path.name == "conftest.py":
        return None
    enabled = config.getoption("benchmark_enable", False) or config.getoption(
        "benchmark_only", False
    )
    return None if enabled else True
