"""The toy colour detector against the renderer's ground truth."""

from __future__ import annotations

import dsr_geom
import numpy as np
import pytest
from scipy import ndimage
from shared_data import OFFICIAL_CSV as OFFICIAL
from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.presets import scoring_config
from spatialalign.core.video import read_video, write_video
from spatialalign.detection.base import Detector, FrameDetections
from spatialalign.detection.color import ColorDetector
from spatialalign.prompts import read_prompts
from spatialalign.toy import render_clip

TOY = scoring_config("toy")


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _match_rate(dets: list[FrameDetections], clip, p: DSRPrompt) -> tuple[int, int]:
    """(frames with exactly one box per class, each at IoU >= 0.8 with ground truth; frames)."""
    good = 0
    for f, d in enumerate(dets):
        if d.count(p.animal) != 1 or d.count(p.object) != 1:
            continue
        a = d.boxes[d.labels.index(p.animal)]
        o = d.boxes[d.labels.index(p.object)]
        good += _iou(a, clip.animal_boxes[f]) >= 0.8 and _iou(o, clip.object_boxes[f]) >= 0.8
    return good, len(dets)


@pytest.fixture(scope="module")
def official():
    return read_prompts(OFFICIAL)


def test_implements_detector_protocol():
    det = ColorDetector()
    assert isinstance(det, Detector)
    assert det.name == "toy"


def test_boxes_match_ground_truth_on_official_prompts(official):
    det = ColorDetector()
    good = total = 0
    for seed, p in enumerate(official):
        clip = render_clip(p, seed)
        dets = det.detect(clip.frames, [p.animal, p.object])
        assert len(dets) == clip.frames.shape[0]
        for d in dets:
            assert set(d.labels) <= {p.animal, p.object}
            assert ((d.scores > 0) & (d.scores <= 1)).all()
        g, n = _match_rate(dets, clip, p)
        good, total = good + g, total + n
    assert good / total >= 0.95


def test_boxes_survive_mp4_round_trip(tmp_path, official):
    det = ColorDetector()
    good = total = 0
    for seed, p in enumerate(official[::6]):
        clip = render_clip(p, seed)
        path = write_video(tmp_path / f"{seed}.mp4", clip.frames, fps=8)
        frames = read_video(path)
        g, n = _match_rate(det.detect(frames, [p.animal, p.object]), clip, p)
        good, total = good + g, total + n
    assert good / total >= 0.95


def test_robust_to_blur_noise_and_colour_drift(official):
    """Generated videos are blurry and their colours drift: a Gaussian blur (sigma 0.5),
    a per-clip colour shift (sd 15 per channel) and pixel noise (sd 4) still leave
    >= 90% of frames with one box per class at IoU >= 0.8."""
    det = ColorDetector()
    rng = np.random.default_rng(0)
    good = total = 0
    for seed, p in enumerate(official):
        clip = render_clip(p, seed)
        f = ndimage.gaussian_filter(clip.frames.astype(float), (0, 0.5, 0.5, 0))
        f += rng.normal(0, 15, (1, 1, 1, 3)) + rng.normal(0, 4, f.shape)
        frames = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        g, n = _match_rate(det.detect(frames, [p.animal, p.object]), clip, p)
        good, total = good + g, total + n
    assert good / total >= 0.9


def test_detected_dsr_equals_ground_truth_dsr(official):
    """Tracks from the detector score like the ground truth (issue 5's toy criterion)."""
    det = ColorDetector()
    for seed, p in enumerate(official[:40]):
        clip = render_clip(p, seed)
        dets = det.detect(clip.frames, [p.animal, p.object])
        a = np.array([d.boxes[d.labels.index(p.animal)] for d in dets])
        o = np.array([d.boxes[d.labels.index(p.object)] for d in dets])
        kw = dict(m=TOY.m, min_frames=TOY.min_frames)
        gt = dsr_geom.dsr_score(clip.animal_boxes, clip.object_boxes, p.initial, p.final, **kw)
        got = dsr_geom.dsr_score(a, o, p.initial, p.final, **kw)
        assert got == pytest.approx(gt, abs=0.05)


def test_extra_instance_gives_extra_box():
    p = DSRPrompt("duck", "crate", "L", "R", "In a quiet study", "walks")
    clip = render_clip(p, 4)
    frames = clip.frames.copy()
    x0, y0, x1, y1 = clip.animal_boxes[0].astype(int)
    sprite = clip.frames[0, y0:y1, x0:x1]
    # paste a second duck in the first frame, away from both sprites
    free = np.ones(frames.shape[1:3], dtype=bool)
    for b in (clip.animal_boxes[0], clip.object_boxes[0]):
        bx0, by0, bx1, by1 = b.astype(int)
        free[max(by0 - 1, 0) : by1 + 1, max(bx0 - 1, 0) : bx1 + 1] = False
    h, w = sprite.shape[:2]
    spot = next(
        (y, x)
        for y in range(16 - h + 1)
        for x in range(16 - w + 1)
        if free[y : y + h, x : x + w].all()
    )
    frames[0, spot[0] : spot[0] + h, spot[1] : spot[1] + w] = sprite
    dets = ColorDetector().detect(frames, [p.animal, p.object])
    assert dets[0].count("duck") == 2 and dets[0].count("crate") == 1
    assert all(d.count("duck") == 1 for d in dets[1:])


def test_missing_animal_gives_no_animal_box():
    p = DSRPrompt("bird", "bench", "T", "B", "In a narrow attic", "hops")
    clip = render_clip(p, 1)
    frames = clip.frames.copy()
    x0, y0, x1, y1 = clip.animal_boxes[3].astype(int)
    bg = np.median(frames[3].reshape(-1, 3), axis=0).astype(np.uint8)
    frames[3, y0:y1, x0:x1] = bg
    dets = ColorDetector().detect(frames, [p.animal, p.object])
    assert dets[3].count("bird") == 0 and dets[3].count("bench") == 1
    assert dets[2].count("bird") == 1


def test_noise_and_empty_frames_give_no_detections():
    det = ColorDetector()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    smooth = np.clip(
        ndimage.gaussian_filter(noise.astype(float), (0, 1.0, 1.0, 0)) * 2 - 128, 0, 255
    ).astype(np.uint8)
    for frames in (noise, smooth):
        for names in (["cat", "rock"], ["bird", "sofa"], ["rabbit", "stump"]):
            assert sum(len(d.boxes) for d in det.detect(frames, names)) == 0
    # a scene with no sprites: only its background
    clip = render_clip(DSRPrompt("dog", "pot", "L", "R", "In a cozy workshop", "runs"), 0)
    empty = np.broadcast_to(np.median(clip.frames[0].reshape(-1, 3), axis=0), (3, 16, 16, 3))
    dets = det.detect(empty.astype(np.uint8), ["dog", "pot"])
    assert all(len(d.boxes) == 0 for d in dets)


def test_bad_input():
    det = ColorDetector()
    with pytest.raises(ValueError):
        det.detect(np.zeros((4, 16, 16), dtype=np.uint8), ["cat", "rock"])
    with pytest.raises(ValueError):
        det.detect(np.zeros((4, 16, 16, 3), dtype=np.uint8), [])
