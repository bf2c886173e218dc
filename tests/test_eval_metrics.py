"""The per-video metrics row (weight-free path; the neural path is in test_eval_neural)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from spatialalign.evaluation.metrics import METRIC_COLUMNS, both_detected, video_metrics
from spatialalign.evaluation.proxies import (
    colourfulness,
    crop_histogram_consistency,
    sharpness,
)


def test_row_without_models():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 12, 16, 3), dtype=np.uint8)
    animal = np.tile([1.0, 1, 6, 6], (4, 1))
    obj = np.tile([8.0, 2, 14, 10], (4, 1))
    obj[2] = np.nan  # frame 2: no object -> left out of the consistency metrics
    row = video_metrics(frames, animal, obj)
    assert list(row) == list(METRIC_COLUMNS)
    assert row["sharpness"] == sharpness(frames)
    assert row["colourfulness"] == colourfulness(frames)
    keep = [0, 1, 3]
    want = crop_histogram_consistency(frames[keep], animal[keep]).mean
    assert row["hist_consistency"] == pytest.approx(want)
    assert all(math.isnan(row[c]) for c in METRIC_COLUMNS if c.startswith(("id_", "clip")))


def test_both_detected():
    a = np.array([[0, 0, 1, 1], [np.nan] * 4, [0, 0, 1, 1.0]])
    o = np.array([[np.nan] * 4, [0, 0, 1, 1], [0, 0, 2, 2.0]])
    got = both_detected(a, o)
    assert np.isnan(got[:2]).all() and (got[2] == a[2]).all()
    with pytest.raises(ValueError, match="shape"):
        both_detected(a, o[:2])
