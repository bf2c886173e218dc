"""The ``pairs`` stage: winner/loser sample pairs per prompt from ``scores.parquet``."""

from spatialalign.pairs.build import Pair, PairConfig, PairReport, ScoredSample, build_pairs

__all__ = ["Pair", "PairConfig", "PairReport", "ScoredSample", "build_pairs"]
