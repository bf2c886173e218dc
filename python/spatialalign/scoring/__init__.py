"""Scoring stage: DSR-Score of tracked boxes, batch scoring of a run, summaries and plots."""

from spatialalign.scoring.batch import ScoreResult, load_run, score_loaded, score_run
from spatialalign.scoring.summary import build_summary, format_summary

__all__ = [
    "ScoreResult",
    "build_summary",
    "format_summary",
    "load_run",
    "score_loaded",
    "score_run",
]
