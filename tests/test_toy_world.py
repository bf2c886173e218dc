"""The toy world renderer: exact ground-truth boxes, DSR of rendered clips, variation."""

from __future__ import annotations

import dataclasses
import itertools

import dsr_geom
import numpy as np
import pytest
from shared_data import OFFICIAL_CSV as OFFICIAL
from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.presets import scoring_config
from spatialalign.detection.palette import (
    ANIMALS,
    OBJECTS,
    animal_style,
    object_style,
    scene_background,
    sprite_mask,
)
from spatialalign.prompts import read_prompts
from spatialalign.toy import Clip, ToyWorldConfig, render_batch, render_clip

TOY = scoring_config("toy")
VERBS = ["hops", "jumps", "runs", "scampers", "paces", "trots", "walks", "darts", "climbs", "pecks"]
SCENES = [
    "In a narrow hallway with a large window and a coat rack by the door",
    "In a dimly lit loft space with soft cushions and warm light from a nearby lamp",
    "In a warm storage room with a patterned rug and a stack of magazines on a table",
    "In a bright library corner with tall bookshelves and shadows from the window blinds",
    "on a sunny meadow",
    "",
]
TYPES = ["".join(p) for p in itertools.permutations("LRTB", 2)]
OPPOSITE = {"LR", "RL", "TB", "BT"}


def _prompts(types, n_per_type, seed=0):
    rng = np.random.default_rng(seed)
    animals, objects = list(ANIMALS), list(OBJECTS)
    out = []
    for t in types:
        for _ in range(n_per_type):
            out.append(
                DSRPrompt(
                    animal=animals[rng.integers(len(animals))],
                    object=objects[rng.integers(len(objects))],
                    initial=t[0],
                    final=t[1],
                    scene=SCENES[rng.integers(len(SCENES))],
                    verb=VERBS[rng.integers(len(VERBS))],
                )
            )
    return out


def _pixel_bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _dsr(clip: Clip, p: DSRPrompt) -> float | None:
    return dsr_geom.dsr_score(
        clip.animal_boxes, clip.object_boxes, p.initial, p.final, m=TOY.m, min_frames=TOY.min_frames
    )


def test_clip_shapes_and_determinism():
    p = DSRPrompt("fox", "stump", "L", "T", SCENES[0], "runs")
    cfg = ToyWorldConfig()
    a, b = render_clip(p, 7), render_clip(p, 7, cfg)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (9, 16, 16, 3)
    assert a.animal_boxes.dtype == np.float32 and a.animal_boxes.shape == (9, 4)
    assert a.object_boxes.dtype == np.float32 and a.object_boxes.shape == (9, 4)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.animal_boxes, b.animal_boxes)
    c = render_clip(p, 8)
    assert not np.array_equal(a.frames, c.frames)


def test_ground_truth_boxes_are_exact_pixel_extents():
    """Each box is the extent of the pixels painted in its class colour, frame by frame."""
    for p, seed in zip(_prompts(TYPES, 8, seed=1), itertools.count(), strict=False):
        clip = render_clip(p, seed)
        acol, ocol = animal_style(p.animal).color, object_style(p.object).color
        for f in range(clip.frames.shape[0]):
            frame = clip.frames[f]
            amask = np.all(frame == acol, axis=-1)
            omask = np.all(frame == ocol, axis=-1)
            assert _pixel_bbox(amask) == clip.animal_boxes[f].tolist()
            assert _pixel_bbox(omask) == clip.object_boxes[f].tolist()
            # every pixel inside neither box is background (no stray sprite pixels)
            assert amask.sum() + omask.sum() == (amask | omask).sum()


def test_boxes_in_frame_disjoint_and_object_static():
    cfg = ToyWorldConfig()
    for p, seed in zip(_prompts(TYPES, 40, seed=2), itertools.count(), strict=False):
        clip = render_clip(p, seed)
        a, o = clip.animal_boxes, clip.object_boxes
        for boxes in (a, o):
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= cfg.width).all() and (boxes[:, 3] <= cfg.height).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (o == o[0]).all()
        inter_w = np.minimum(a[:, 2], o[:, 2]) - np.maximum(a[:, 0], o[:, 0])
        inter_h = np.minimum(a[:, 3], o[:, 3]) - np.maximum(a[:, 1], o[:, 1])
        assert not ((inter_w > 0) & (inter_h > 0)).any(), (p, seed)


def _relation_at(clip: Clip, frames: list[int]) -> str:
    """The relation with the highest mean SSR (dsr_geom) over ``frames``."""
    means = {
        r: float(np.mean(dsr_geom.ssr_scores(clip.animal_boxes, clip.object_boxes, r)[frames]))
        for r in "LRTB"
    }
    return max(means, key=means.get)


@pytest.mark.parametrize("dsr_type", TYPES)
def test_rendered_dsr_per_type(dsr_type):
    """Opposite types score >= 0.9; perpendicular ones within 0.03 of 0.875, the most a
    clip with the animal squarely on each side can score (see the next test).

    Both ends are read by the Rust SSR: the first m frames show the initial relation
    and the last m the final one ("top" = smaller y than the object).
    """
    prompts = _prompts([dsr_type], 60, seed=hash(dsr_type) % 1000)
    scores = []
    for seed, p in enumerate(prompts):
        clip = render_clip(p, seed)
        scores.append(_dsr(clip, p))
        n = clip.frames.shape[0]
        assert _relation_at(clip, list(range(TOY.m))) == p.initial
        assert _relation_at(clip, list(range(n - TOY.m, n))) == p.final
    scores = np.array(scores, dtype=float)
    assert not np.isnan(scores).any()
    if dsr_type in OPPOSITE:
        assert scores.min() >= 0.9, scores.min()
    else:
        assert scores.min() >= 0.845, scores.min()
        assert np.median(scores) >= 0.865


def test_perpendicular_ceiling_is_0875():
    """Why perpendicular types cannot reach 0.9: an ideal L->T clip (animal squarely
    left, then squarely on top, far enough that d = 1) scores exactly 0.875, because
    the initial relation's SSR at the end (and the final one's at the start) is 0."""
    n = 9
    obj = np.tile([6.0, 6.0, 10.0, 10.0], (n, 1))
    animal = np.tile([0.0, 6.0, 4.0, 10.0], (n, 1))  # left, centred vertically
    animal[n // 2 :] = [6.0, 0.0, 10.0, 4.0]  # top, centred horizontally
    d = dsr_geom.dsr_score(animal, obj, "L", "T", m=TOY.m, min_frames=TOY.min_frames)
    assert d == pytest.approx(0.875)
    animal[n // 2 :] = [12.0, 6.0, 16.0, 10.0]  # right: the opposite type reaches 1
    assert dsr_geom.dsr_score(animal, obj, "L", "R", m=2, min_frames=6) == pytest.approx(1.0)


def test_official_prompts_render_with_high_dsr():
    prompts = read_prompts(OFFICIAL)
    assert len(prompts) == 120
    for seed, p in enumerate(prompts):
        d = _dsr(render_clip(p, seed), p)
        assert d is not None and d >= (0.9 if p.dsr_type in OPPOSITE else 0.845), (p, d)


@pytest.mark.parametrize("final", ["L", "R", "T", "B"])
def test_mismatched_final_relation(final):
    """Rendering a replaced final relation (mislabelled pretraining data) moves the
    animal to that relation, including staying on the initial side."""
    base = DSRPrompt("cat", "bench", "L", "R", SCENES[1], "walks")
    for seed in range(20):
        p = dataclasses.replace(base, final=final)
        clip = render_clip(p, seed)
        n = clip.frames.shape[0]
        assert _relation_at(clip, [0, 1]) == "L"
        assert _relation_at(clip, [n - 2, n - 1]) == final
        if final == "L":  # still moves, but stays left of the object
            assert (clip.animal_boxes[:, 2] <= clip.object_boxes[:, 0]).all()


def test_seed_variation():
    p = DSRPrompt("dog", "crate", "R", "L", SCENES[0], "walks")
    clips = [render_clip(p, s) for s in range(60)]
    obj_pos = {tuple(c.object_boxes[0, :2]) for c in clips}
    sizes = {tuple(np.diff(c.animal_boxes[0].reshape(2, 2), axis=0)[0]) for c in clips}
    start = {int(np.argmax(np.any(c.animal_boxes != c.animal_boxes[0], axis=1))) for c in clips}
    routes = {
        "over" if c.animal_boxes[:, 3].min() <= c.object_boxes[0, 1] else "under" for c in clips
    }
    assert len(obj_pos) >= 10
    assert len(sizes) >= 2
    assert len(start) >= 2
    assert routes == {"over", "under"}


def test_hops_bounce_walks_do_not():
    """Staying on one side, a hopping animal rises above its start and end heights;
    a walking one moves in a straight line between them."""
    rises = {}
    for verb in ("hops", "walks"):
        n_rise = 0
        for seed in range(30):
            clip = render_clip(DSRPrompt("rabbit", "rock", "L", "L", SCENES[2], verb), seed)
            y = clip.animal_boxes[:, 1]
            n_rise += bool(y.min() < min(y[0], y[-1]) - 0.5 and y[0] == y[1])
        rises[verb] = n_rise
    assert rises["hops"] >= 15
    assert rises["walks"] <= 8  # only idle one-pixel twitches


def test_unknown_names_map_to_palette_by_stable_hash():
    p = DSRPrompt("penguin", "barrel", "T", "B", "a strange planet", "glides")
    a, b = render_clip(p, 3), render_clip(p, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert animal_style("penguin") in ANIMALS.values()
    assert object_style("barrel") in OBJECTS.values()
    assert animal_style("Penguin ") == animal_style("penguin")
    assert _dsr(a, p) >= 0.9


def test_backgrounds_are_muted_and_far_from_sprites():
    scenes = [p.scene for p in read_prompts(OFFICIAL)] + SCENES + ["x", "a dark night forest"]
    sprite_colors = np.array([s.color for s in (*ANIMALS.values(), *OBJECTS.values())], dtype=float)
    seen = set()
    for scene in scenes:
        bg = scene_background(scene, 16, 16).astype(float)
        np.testing.assert_array_equal(bg, scene_background(scene, 16, 16))
        # +-4 is the per-seed lighting shift the renderer adds
        for shift in (-4, 4):
            d = np.linalg.norm((bg + shift)[:, :, None, :] - sprite_colors, axis=-1)
            assert d.min() >= 80, (scene, d.min())
        chroma = bg.max(-1) - bg.min(-1)
        assert chroma.max() <= 60
        seen.add(bg.mean(axis=(0, 1)).round().tobytes())
    assert len(seen) >= 8  # scenes look different


def test_animal_and_object_palettes_are_separable():
    for a, o in itertools.product(ANIMALS.values(), OBJECTS.values()):
        assert np.linalg.norm(np.subtract(a.color, o.color)) >= 100


@pytest.mark.parametrize(
    "shape", ["rect", "round", "dome", "bowl", "ears", "legs", "chair", "diamond", "plus"]
)
def test_sprite_masks_fill_their_box(shape):
    for w, h in itertools.product(range(1, 7), range(1, 7)):
        m = sprite_mask(shape, w, h)
        assert m.shape == (h, w)
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()


def test_render_batch_and_config_checks():
    ps = _prompts(["LR", "TB"], 2)
    clips = render_batch(ps, [0, 1, 2, 3])
    assert len(clips) == 4
    np.testing.assert_array_equal(clips[2].frames, render_clip(ps[2], 2).frames)
    with pytest.raises(ValueError):
        render_batch(ps, [0, 1])
    with pytest.raises(ValueError):
        ToyWorldConfig(height=8)


def test_larger_config_keeps_guarantees():
    cfg = ToyWorldConfig(num_frames=17, height=32, width=32)
    for seed, p in enumerate(_prompts(TYPES, 5, seed=3)):
        clip = render_clip(p, seed, cfg)
        assert clip.frames.shape == (17, 32, 32, 3)
        d = _dsr(clip, p)
        assert d >= (0.9 if p.dsr_type in OPPOSITE else 0.845)


def test_clip_grid_png(tmp_path):
    import matplotlib.image
    from spatialalign.toy import clip_grid, save_clip_grid

    clips = render_batch(_prompts(["LR", "TL"], 1), [0, 1])
    videos = [c.frames for c in clips]
    img = clip_grid(videos, scale=3, pad=2)
    assert img.shape == (2 * (48 + 2) + 2, 9 * (48 + 2) + 2, 3)
    # frame 4 of row 1, pixel (5, 7) upscaled 3x
    y, x = 2 + 50 + 5 * 3, 2 + 4 * 50 + 7 * 3
    np.testing.assert_array_equal(img[y, x], videos[1][4, 5, 7])
    boxed = clip_grid(videos, scale=3, boxes=[(c.animal_boxes, c.object_boxes) for c in clips])
    ax0, ay0 = (clips[0].animal_boxes[0, :2] * 3).astype(int)
    np.testing.assert_array_equal(boxed[2 + ay0, 2 + ax0], [255, 255, 255])
    path = save_clip_grid(tmp_path / "grid.png", videos, scale=3)
    back = matplotlib.image.imread(path)
    assert back.shape[:2] == img.shape[:2]
    np.testing.assert_allclose(back[..., :3] * 255, img, atol=0.5)
    with pytest.raises(ValueError):
        clip_grid([])
