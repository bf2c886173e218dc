"""Weight-free proxies on synthetic frames with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from spatialalign.evaluation.crops import box_crops, crop_slices
from spatialalign.evaluation.proxies import (
    colour_histogram,
    colourfulness,
    colourfulness_per_frame,
    crop_histogram_consistency,
    histogram_intersection,
    laplacian_variance,
    sharpness,
)

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def solid(colour, h=6, w=8, f=1):
    return np.broadcast_to(np.array(colour, np.uint8), (f, h, w, 3)).copy()


def test_sharpness_constant_is_zero_and_single_dot_by_hand():
    assert sharpness(solid((90, 120, 200), f=3)) == 0.0
    # a 5x5 black image with one (1,1,1) pixel in the centre: grey 0.299+0.587+0.114 = 1.
    # Laplacian: -4 at the centre, +1 at its 4 neighbours, 0 at the other 20 pixels;
    # mean 0, variance (16 + 4*1) / 25 = 0.8
    img = np.zeros((1, 5, 5, 3), np.uint8)
    img[0, 2, 2] = 1
    assert laplacian_variance(img)[0] == pytest.approx(0.8)


def test_blur_lowers_sharpness():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    blurred = ndimage.uniform_filter(img.astype(float), size=(1, 3, 3, 1)).round().astype(np.uint8)
    assert sharpness(blurred) < 0.5 * sharpness(img)


def test_colourfulness_known_values():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 256, (2, 6, 6, 1), dtype=np.uint8)
    assert colourfulness(np.repeat(g, 3, axis=-1)) == 0.0  # any grey image: rg = yb = 0
    # solid red: rg = 255, yb = 127.5, no spread -> 0.3 * sqrt(255^2 + 127.5^2) = 85.5296
    assert colourfulness(solid(RED)) == pytest.approx(0.3 * math.hypot(255, 127.5))
    # half red, half green: rg = +-255 (mean 0, std 255), yb = 127.5 everywhere
    # -> 255 + 0.3 * 127.5 = 293.25
    img = solid(RED)
    img[:, :, 4:] = GREEN
    assert colourfulness_per_frame(img)[0] == pytest.approx(293.25)
    # mean over frames: one grey, one red
    video = np.concatenate([solid((7, 7, 7)), solid(RED)])
    assert colourfulness(video) == pytest.approx(0.3 * math.hypot(255, 127.5) / 2)


def test_histogram_intersection_basics():
    red_small, red_big = colour_histogram(solid(RED, 2, 2)[0]), colour_histogram(solid(RED)[0])
    assert histogram_intersection(red_small, red_big) == 1.0  # size does not matter
    assert histogram_intersection(red_big, colour_histogram(solid(BLUE)[0])) == 0.0
    assert colour_histogram(solid(RED)[0]).sum() == pytest.approx(1.0)


def test_crop_histogram_consistency_by_hand():
    # 4 frames 6x8; the animal box covers columns 0..3 (x 0..4), rows 0..5.
    # f0: red crop; f1: animal missing (skipped); f2: half red / half blue; f3: blue.
    frames = solid(GREEN, f=4)
    frames[0, :, :4] = RED
    frames[2, :, :2] = RED
    frames[2, :, 2:4] = BLUE
    frames[3, :, :4] = BLUE
    box = [0, 0, 4, 6]
    animal = np.array([box, [np.nan] * 4, box, box], float)
    # histograms: h0 = red; h2 = 1/2 red + 1/2 blue; h3 = blue
    # to first:    I(h2, h0) = 0.5, I(h3, h0) = 0   -> 0.25
    # to previous: I(h2, h0) = 0.5, I(h3, h2) = 0.5 -> 0.5 ; mean (0.25 + 0.5) / 2 = 0.375
    c = crop_histogram_consistency(frames, animal)
    assert (c.to_first, c.to_previous, c.n_frames) == (0.25, 0.5, 3)
    assert c.mean == pytest.approx(0.375)
    # identical crops -> exactly 1
    same = crop_histogram_consistency(solid(RED, f=5), np.tile(box, (5, 1)).astype(float))
    assert same.mean == 1.0 and same.n_frames == 5
    # fewer than two crops: undefined
    one = crop_histogram_consistency(frames[:1], animal[:1])
    assert math.isnan(one.mean) and one.n_frames == 1


def test_crop_windows():
    # truncated to integers, clipped to the frame, at least one pixel
    assert crop_slices(np.array([1.7, 0.2, 3.9, 2.0]), 6, 8) == (slice(0, 2), slice(1, 3))
    assert crop_slices(np.array([-5, -5, 100, 100.0]), 6, 8) == (slice(0, 6), slice(0, 8))
    assert crop_slices(np.array([2.2, 2.5, 2.4, 2.6]), 6, 8) == (slice(2, 3), slice(2, 3))
    assert crop_slices(np.array([20.0, 0, 30, 4]), 6, 8) is None  # outside the image
    assert crop_slices(np.full(4, np.nan), 6, 8) is None
    with pytest.raises(ValueError, match="uint8"):
        box_crops(np.zeros((2, 4, 4, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="one per frame"):
        box_crops(solid(RED, f=2), np.zeros((3, 4)))
