"""Colours, sprite shapes and scene backgrounds of the toy world.

Animals are bright saturated colours, objects deep dark ones and backgrounds
muted mid-tones, so that in any clip the animal, the object and the scene are
far apart in RGB (>= ~95 Euclidean; checked in the tests) and the colour
detector can find each of them even in a blurred, colour-drifted generated
video. Names outside the official vocabularies map to a palette entry by a
stable hash (crc32), never by Python's salted ``hash``.

It lives beside the colour detector (:mod:`spatialalign.detection.color`), which reads
these colours back; the toy world (:mod:`spatialalign.toy.world`) paints with them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class SpriteStyle:
    """How one class is drawn: flat colour, shape family and size ranges (pixels)."""

    color: RGB
    shape: str
    widths: tuple[int, int]
    """Inclusive (min, max) sprite width."""
    heights: tuple[int, int]
    """Inclusive (min, max) sprite height."""


ANIMALS: dict[str, SpriteStyle] = {
    "bird": SpriteStyle((40, 140, 255), "diamond", (3, 4), (3, 3)),
    "cat": SpriteStyle((255, 150, 20), "ears", (4, 4), (3, 4)),
    "dog": SpriteStyle((235, 40, 40), "legs", (4, 5), (3, 4)),
    "duck": SpriteStyle((255, 235, 30), "dome", (4, 4), (3, 3)),
    "fox": SpriteStyle((255, 95, 0), "ears", (4, 5), (3, 3)),
    "hamster": SpriteStyle((255, 170, 215), "round", (3, 4), (3, 3)),
    "monkey": SpriteStyle((190, 110, 255), "plus", (3, 4), (4, 4)),
    "rabbit": SpriteStyle((250, 250, 250), "ears", (3, 3), (4, 4)),
    "squirrel": SpriteStyle((0, 235, 215), "round", (3, 3), (4, 4)),
    "turtle": SpriteStyle((70, 230, 40), "dome", (5, 5), (3, 3)),
}

OBJECTS: dict[str, SpriteStyle] = {
    "basket": SpriteStyle((130, 70, 0), "bowl", (5, 6), (3, 4)),
    "bench": SpriteStyle((75, 35, 0), "legs", (6, 6), (3, 3)),
    "box": SpriteStyle((150, 0, 90), "rect", (4, 5), (4, 4)),
    "chair": SpriteStyle((0, 60, 150), "chair", (4, 4), (5, 5)),
    "crate": SpriteStyle((100, 100, 0), "rect", (5, 5), (4, 4)),
    "cushion": SpriteStyle((100, 0, 170), "round", (5, 5), (3, 3)),
    "pot": SpriteStyle((120, 0, 0), "bowl", (4, 4), (4, 4)),
    "rock": SpriteStyle((20, 20, 20), "round", (5, 5), (4, 4)),
    "sofa": SpriteStyle((0, 0, 220), "ears", (6, 6), (3, 3)),
    "stone": SpriteStyle((50, 30, 90), "round", (4, 4), (3, 3)),
    "stool": SpriteStyle((0, 100, 30), "legs", (4, 4), (4, 4)),
    "stump": SpriteStyle((0, 100, 110), "rect", (4, 4), (5, 5)),
}

# muted mid-tone scene colours (chroma <= ~35); kept away from every sprite colour
BACKGROUNDS: dict[str, RGB] = {
    "beige": (150, 140, 120),
    "sage": (120, 135, 125),
    "slate": (125, 130, 150),
    "rose": (150, 125, 125),
    "grey": (135, 135, 135),
    "olive": (140, 145, 115),
    "steel": (115, 125, 135),
    "taupe": (155, 140, 135),
}

# scene keywords -> background colour; first match in the scene text wins
_PLACE_COLORS: list[tuple[str, str]] = [
    ("hallway", "taupe"),
    ("studio", "slate"),
    ("library", "olive"),
    ("loft", "beige"),
    ("reading nook", "rose"),
    ("storage", "grey"),
    ("workshop", "steel"),
    ("study", "sage"),
    ("living room", "rose"),
    ("office", "steel"),
    ("attic", "taupe"),
    ("kitchen", "beige"),
    ("bedroom", "slate"),
    ("garage", "grey"),
    ("meadow", "sage"),
    ("park", "sage"),
    ("garden", "olive"),
    ("forest", "olive"),
    ("field", "olive"),
    ("beach", "beige"),
    ("desert", "beige"),
    ("snow", "slate"),
    ("lake", "steel"),
    ("river", "steel"),
    ("street", "grey"),
    ("yard", "sage"),
]
_DARK_WORDS = ("dim", "dark", "night", "shadowy", "evening")
_LIGHT_WORDS = ("bright", "sunlit", "sunny", "sun-", "airy")
_WARM_WORDS = ("warm", "cozy", "wood", "lamp")

_FLOOR_ROWS = 4


def _stable_index(name: str, n: int) -> int:
    return zlib.crc32(name.strip().lower().encode("utf-8")) % n


def animal_style(name: str) -> SpriteStyle:
    """Sprite style of an animal; unknown names map to a palette entry by stable hash."""
    key = name.strip().lower()
    if key in ANIMALS:
        return ANIMALS[key]
    return list(ANIMALS.values())[_stable_index(key, len(ANIMALS))]


def object_style(name: str) -> SpriteStyle:
    """Sprite style of a static object; unknown names map to a palette entry by stable hash."""
    key = name.strip().lower()
    if key in OBJECTS:
        return OBJECTS[key]
    return list(OBJECTS.values())[_stable_index(key, len(OBJECTS))]


def class_colors(class_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """RGB colours (float32 [k, 3]) of ``[animal, object, ...]`` class names.

    The first name is looked up as an animal, the others as objects; a name found
    only in the other vocabulary is looked up there.
    """
    out = []
    for i, name in enumerate(class_names):
        key = name.strip().lower()
        if key in ANIMALS:
            style = ANIMALS[key]
        elif key in OBJECTS:
            style = OBJECTS[key]
        else:
            style = animal_style(key) if i == 0 else object_style(key)
        out.append(style.color)
    return np.asarray(out, dtype=np.float32).reshape(-1, 3)


def sprite_mask(shape: str, w: int, h: int) -> np.ndarray:
    """Boolean [h, w] mask of a shape family; every border row and column is touched,
    so the sprite's bounding box is exactly ``w`` x ``h``."""
    if w < 1 or h < 1:
        raise ValueError(f"sprite size must be positive, got {w}x{h}")
    m = np.ones((h, w), dtype=bool)
    if w < 3 or h < 3 or shape == "rect":
        return m
    if shape == "round":  # corners cut
        m[0, 0] = m[0, -1] = m[-1, 0] = m[-1, -1] = False
    elif shape == "dome":  # flat bottom, rounded top
        m[0, 0] = m[0, -1] = False
    elif shape == "bowl":  # flat top, rounded bottom
        m[-1, 0] = m[-1, -1] = False
    elif shape == "ears":  # two bumps on top (cat, fox, rabbit; sofa arms)
        m[0, 1:-1] = False
    elif shape == "legs":  # two legs below (dog; bench, stool)
        m[-1, 1:-1] = False
    elif shape == "chair":  # back on the left, legs below
        m[: h // 2, 1:] = False
        m[-1, 1:-1] = False
    elif shape == "diamond":  # bird: pointed left/right ends
        m[0, 0] = m[0, -1] = m[-1, 0] = m[-1, -1] = False
        if w >= 4:
            m[0, 1] = False
    elif shape == "plus":  # monkey: head, arms, legs
        m[0, 0] = m[0, -1] = False
        m[-1, 1:-1] = False
    else:
        raise ValueError(f"unknown sprite shape {shape!r}")
    return m


def scene_background(scene: str, height: int, width: int) -> np.ndarray:
    """Deterministic muted background (int16 [H, W, 3]) for a scene description.

    The place word picks the colour, lighting words shift brightness by up to
    +-14, and furnishing words add a faint texture (floor band, rug checks,
    blind stripes, a window patch; each <= 8 levels).
    """
    text = scene.strip().lower()
    name = next((c for word, c in _PLACE_COLORS if word in text), None)
    if name is None:
        name = list(BACKGROUNDS)[_stable_index(text, len(BACKGROUNDS))]
    base = np.asarray(BACKGROUNDS[name], dtype=np.int16)
    if any(w in text for w in _DARK_WORDS):
        base = base - 14
    elif any(w in text for w in _LIGHT_WORDS):
        base = base + 10
    if any(w in text for w in _WARM_WORDS):
        base = base + np.asarray([6, 2, -6], dtype=np.int16)
    img = np.broadcast_to(base, (height, width, 3)).astype(np.int16)
    yy, xx = np.mgrid[0:height, 0:width]
    floor = yy >= height - _FLOOR_ROWS
    if "rug" in text or "pattern" in text:
        img[floor & ((xx + yy) % 2 == 0)] -= 8
    elif "wood" in text or "floor" in text:
        img[floor] += np.asarray([4, -2, -8], dtype=np.int16)
    else:
        img[floor] -= 6
    if "blind" in text or "stripe" in text or "shelves" in text or "bookshel" in text:
        img[(~floor) & (yy % 3 == 0)] -= 6
    if "window" in text or "sunlight" in text:
        img[1 : max(2, height // 3), width - max(3, width // 3) : width - 1] += 8
    if "lamp" in text:
        img[: height // 4, : max(2, width // 5)] += 5
    return img


def scene_texture(scene: str, height: int, width: int, amplitude: int = 12) -> np.ndarray:
    """A scene's texture (int16 [H, W, 3], values within +-``amplitude``), added to its
    background in the hard world: two gratings of scene-drawn orientation and period plus
    fixed fine grain, nearly grey (a faint tint), so every pixel stays a muted mid-tone far
    from the sprite colours. Deterministic in the scene text."""
    rng = np.random.default_rng(zlib.crc32(scene.strip().lower().encode("utf-8")))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    field = np.zeros((height, width))
    for weight in (0.55, 0.3):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3.0, 9.0)
        phase = rng.uniform(0, 2 * np.pi)
        field += weight * np.sin(
            2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase
        )
    field += 0.15 * rng.uniform(-1, 1, size=(height, width))
    tint = 1.0 + rng.uniform(-0.25, 0.25, size=3)
    out = np.rint(amplitude * field[..., None] * tint[None, None] / 1.25)
    return np.clip(out, -amplitude, amplitude).astype(np.int16)
