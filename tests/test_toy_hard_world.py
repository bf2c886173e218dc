"""The hard toy world (``toy-hard``): its prompts (all four relations, both phrasings), its
renderer (relations, distractors, camera pan, occlusion, texture) and that its rendered
clips pass the real pipeline (colour detector -> tracker -> scorer) with the ``toy-hard``
preset."""

from __future__ import annotations

import collections
import dataclasses

import dsr_geom
import numpy as np
import pyarrow as pa
import pytest
from spatialalign.core.dsr.grammar import parse_prompt
from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.dsr.vocab import BOTTOM_TYPES, DSR_TYPES, SCENES
from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.presets import TOY_HARD, scoring_config
from spatialalign.core.schemas import MANIFEST
from spatialalign.core.video import write_video
from spatialalign.detection.color import ColorDetector
from spatialalign.detection.palette import (
    ANIMALS,
    OBJECTS,
    animal_style,
    object_style,
    scene_background,
    scene_texture,
)
from spatialalign.detection.pipeline import track_run
from spatialalign.detection.tracker import tracker_config
from spatialalign.prompts import write_prompts
from spatialalign.prompts.splits import HARD_SPLIT, TOY_SPLIT
from spatialalign.scoring.batch import score_run
from spatialalign.toy.world import WORLDS, HardWorldConfig, render_clip, world_config

HARD = WORLDS["hard"]
TEST = HARD_SPLIT.prompts("test")
SPRITES = np.array([s.color for s in (*ANIMALS.values(), *OBJECTS.values())], dtype=float)


def _one_per_type() -> dict[str, DSRPrompt]:
    out: dict[str, DSRPrompt] = {}
    for p in TEST:
        out.setdefault(p.dsr_type, p)
    return out


def _pixels_of(frames: np.ndarray, color) -> np.ndarray:
    """bool [F, H, W]: pixels painted exactly ``color``."""
    return (frames == np.asarray(color, np.uint8)).all(-1)


# ------------------------------------------------------------------------------ prompts
def test_hard_split_has_every_type_and_both_phrasings():
    assert set(_one_per_type()) == set(DSR_TYPES + BOTTOM_TYPES)
    assert collections.Counter(p.dsr_type for p in TEST) == {
        t: 10 for t in DSR_TYPES + BOTTOM_TYPES
    }
    then = [p for p in TEST if ", then the " in p.text]
    from_to = [p for p in TEST if ", then the " not in p.text]
    assert len(then) == len(from_to) == 60
    for p in from_to:
        assert f" {p.verb} from the " in p.text  # the from-to phrasing
    for p in TEST + HARD_SPLIT.prompts("train")[:120]:
        q = parse_prompt(p.text)  # the grammar reads both phrasings back to the same prompt
        assert (q.animal, q.object, q.initial, q.final, q.verb, q.scene) == (
            p.animal,
            p.object,
            p.initial,
            p.final,
            p.verb,
            p.scene,
        )
    # TRAIN and TEST share no (animal, object, scene); the toy split is untouched
    train = {(p.animal, p.object, p.scene) for p in HARD_SPLIT.prompts("train")}
    assert not train & {(p.animal, p.object, p.scene) for p in TEST}
    toy_test = TOY_SPLIT.prompts("test")
    assert {p.dsr_type for p in toy_test} == set(DSR_TYPES)
    assert all(", then the " in p.text for p in toy_test)


# ----------------------------------------------------------------------------- renderer
def test_clip_shapes_determinism_and_config_checks():
    p = TEST[0]
    a, b = render_clip(p, 3, HARD), render_clip(p, 3, HARD)
    assert a.frames.shape == (12, 16, 16, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.animal_boxes, b.animal_boxes)
    assert not np.array_equal(a.frames, render_clip(p, 4, HARD).frames)
    assert world_config("hard") is HARD and world_config("toy") is WORLDS["toy"]
    with pytest.raises(ValueError, match="unknown toy world"):
        world_config("medium")
    with pytest.raises(ValueError, match="minus the pan"):
        HardWorldConfig(height=16, pan=2)
    with pytest.raises(ValueError, match="distractors"):
        HardWorldConfig(distractors=(2, 1))


@pytest.mark.parametrize("dsr_type", DSR_TYPES + BOTTOM_TYPES)
def test_ground_truth_boxes_show_both_relations(dsr_type):
    """Every type of the four relations: the ground-truth boxes score DSR >= 0.85 (0.875 is
    the perpendicular types' ceiling at rest) with the toy-hard preset, over many seeds."""
    p = _one_per_type()[dsr_type]
    for seed in range(12):
        c = render_clip(p, seed, HARD)
        dsr = dsr_geom.dsr_score(
            c.animal_boxes.astype(float),
            c.object_boxes.astype(float),
            p.initial,
            p.final,
            m=TOY_HARD.m,
            min_frames=TOY_HARD.min_frames,
        )
        assert dsr >= 0.85, (seed, dsr)


@pytest.mark.parametrize(
    ("world", "mean_count"),
    [(HARD, (1.0, 1.0)), (dataclasses.replace(HARD, distractors=(1, 2)), (1.3, 1.7))],
    ids=["default-one", "one-or-two"],
)
def test_distractors_are_other_far_colour_classes_that_move(world, mean_count):
    """The default draws one distractor per clip; (1, 2) one or two, about even."""
    moved = counts = 0
    n_clips = 0
    for p in TEST[:60]:
        for seed in range(2):
            c = render_clip(p, seed, world)
            n = len(c.distractor_boxes)
            assert world.distractors[0] <= n <= world.distractors[1]
            counts += n
            n_clips += 1
            mine = np.array([animal_style(p.animal).color, object_style(p.object).color], float)
            # every non-background colour in the clip is the animal's, the object's or a
            # distractor's, and a distractor's is far from the prompt's two
            colours = {tuple(int(v) for v in px) for px in c.frames.reshape(-1, 3)}
            sprites = {col for col in colours if np.linalg.norm(SPRITES - col, axis=1).min() == 0}
            others = sprites - {tuple(map(int, m)) for m in mine}
            assert 1 <= len(others) <= n
            for col in others:
                assert np.linalg.norm(mine - np.array(col, float), axis=1).min() >= 120
            visible = c.distractor_boxes[:, :, 2] > 0  # [D, F]
            for j in range(n):
                shown = c.distractor_boxes[j][visible[j]]
                moved += len(shown) > 1 and not np.all(shown == shown[0])
    assert mean_count[0] <= counts / n_clips <= mean_count[1]
    assert moved >= counts // 2  # most distractors move (a few are drawn at rest)


def test_camera_pan_moves_everything_together():
    """The object never moves in the world, so its box's shift is the camera's; the
    background texture shifts with it, and the pan is slow (<= ``pan`` px per axis)."""
    panned = 0
    for p in TEST[:40]:
        c = render_clip(p, 0, HARD)
        shift = c.object_boxes - c.object_boxes[0]
        assert (shift[:, 0] == shift[:, 2]).all() and (shift[:, 1] == shift[:, 3]).all()
        assert np.abs(shift).max() <= HARD.pan
        assert (np.abs(np.diff(c.object_boxes[:, :2], axis=0)) <= 1).all()  # slow
        panned += np.abs(shift[-1]).sum() >= 2
        # a background pixel far from every sprite box shows the same texture one
        # camera step later at its shifted place
        free = np.ones((HARD.height, HARD.width), bool)
        for boxes in (c.animal_boxes, c.object_boxes, *c.distractor_boxes):
            for x0, y0, x1, y1 in boxes.astype(int):
                free[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = False
        dx, dy = (shift[-1, :2]).astype(int)
        ys, xs = np.nonzero(free)
        ok = (ys + dy >= 0) & (ys + dy < HARD.height) & (xs + dx >= 0) & (xs + dx < HARD.width)
        ys, xs = ys[ok], xs[ok]
        keep = free[ys + dy, xs + dx]
        np.testing.assert_array_equal(
            c.frames[0][ys[keep], xs[keep]], c.frames[-1][ys[keep] + dy, xs[keep] + dx]
        )
    assert panned >= 35


def test_animal_passes_behind_the_object_partly_hidden():
    """Some clips take the straight path through the object: mid-clip frames where the
    animal's box overlaps the object's, its pixels partly (not always wholly) covered."""
    partial = hidden = overlapping_clips = 0
    for p in TEST:
        c = render_clip(p, 0, HARD)
        a, o = c.animal_boxes, c.object_boxes
        overlap = (
            (a[:, 0] < o[:, 2]) & (o[:, 0] < a[:, 2]) & (a[:, 1] < o[:, 3]) & (o[:, 1] < a[:, 3])
        )
        assert not overlap[: TOY_HARD.m].any() and not overlap[-TOY_HARD.m :].any()  # ends at rest
        if not overlap.any():
            continue
        overlapping_clips += 1
        animal_px = _pixels_of(c.frames, animal_style(p.animal).color).sum(axis=(1, 2))
        full = animal_px[0]
        for i in np.flatnonzero(overlap):
            partial += 0 < animal_px[i] < full
            hidden += animal_px[i] == 0
    assert overlapping_clips >= 20
    assert partial > hidden > 0 or partial >= 20


def test_textured_scenes_stay_far_from_every_sprite_colour():
    for scene in SCENES:
        tex = scene_texture(scene, 23, 23, 12)
        np.testing.assert_array_equal(tex, scene_texture(scene, 23, 23, 12))
        assert np.abs(tex).max() <= 12 and tex.std() >= 2  # visible, bounded
        img = (scene_background(scene, 23, 23) + tex).astype(float)
        for light in (-4, 4):
            d = np.linalg.norm((img + light)[:, :, None, :] - SPRITES, axis=-1)
            assert d.min() >= 80, (scene, d.min())
    assert not np.array_equal(scene_texture(SCENES[0], 8, 8), scene_texture(SCENES[1], 8, 8))


# ------------------------------------------------------------------- through the pipeline
def _row(sid: str, p: DSRPrompt, seed: int, path) -> dict:
    return dict(
        sample_id=sid,
        prompt_id=p.prompt_id,
        seed=seed,
        model="toy-hard",
        adapter="",
        path=str(path),
        num_frames=HARD.num_frames,
        fps=float(HARD.fps),
        height=HARD.height,
        width=HARD.width,
    )


def test_rendered_clips_pass_detector_tracker_and_scorer(tmp_path):
    """The world itself is right: 120 TEST prompts x 2 seeds, written as videos, tracked and
    scored with the toy-hard preset, are >= 95 % valid and >= 95 % right at 0.7, and the
    tracked DSR is within 0.05 (mean absolute difference) of the ground-truth boxes' DSR."""
    run = tmp_path / "run"
    write_prompts(TEST, run / "prompts.parquet")
    rows, truth = [], {}
    for p in TEST:
        for seed in (0, 1):
            c = render_clip(p, seed, HARD)
            sid = f"{p.prompt_id}_seed{seed}"
            path = run / "samples" / f"{sid}.mp4"
            write_video(path, c.frames, fps=HARD.fps)
            rows.append(_row(sid, p, seed, path))
            truth[sid] = dsr_geom.dsr_score(
                c.animal_boxes.astype(float),
                c.object_boxes.astype(float),
                p.initial,
                p.final,
                m=TOY_HARD.m,
                min_frames=TOY_HARD.min_frames,
            )
    write_parquet(pa.Table.from_pylist(rows, MANIFEST), run / "samples" / "manifest.parquet")
    scoring = scoring_config("toy-hard")
    track_run(
        run, ColorDetector(), scoring, tracker_config("toy"), preset="toy-hard", progress=False
    )
    result = score_run(run, config=scoring, preset="toy-hard", progress=False)
    summary = result.summary
    assert summary["validness"] >= 0.95, summary["counts"]
    assert summary["correctness_at_0.7"] >= 0.95
    scores = read_parquet(run / "scores.parquet").to_pylist()
    diffs = [abs(r["dsr"] - truth[r["sample_id"]]) for r in scores if r["valid"]]
    assert np.mean(diffs) <= 0.05, np.mean(diffs)


def test_hard_world_keeps_its_guarantees_at_a_larger_size():
    big = dataclasses.replace(HARD, height=32, width=32, num_frames=16, pan=4)
    for p in list(_one_per_type().values()):
        c = render_clip(p, 1, big)
        assert c.frames.shape == (16, 32, 32, 3)
        dsr = dsr_geom.dsr_score(
            c.animal_boxes.astype(float),
            c.object_boxes.astype(float),
            p.initial,
            p.final,
            m=2,
            min_frames=8,
        )
        assert dsr >= 0.85
