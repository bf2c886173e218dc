"""The toy worlds' renderer: a DSR prompt and a seed -> a short clip with exact boxes.

Two worlds: ``toy`` (:class:`ToyWorldConfig`, the shipped toy model's: two sprites on a
flat scene) and ``hard`` (:class:`HardWorldConfig`, ``toy-hard``'s: the same animal and
object motion plus distractors, a textured scene, a slow camera pan and partial
occlusion; see its docstring). :data:`WORLDS` names them; :func:`render_clip` takes either.

The ``toy`` world:

An animal sprite rests at the prompt's initial relation to a static object
sprite, moves along a path that never overlaps the object (an L-shaped path
via the corner for perpendicular relations, over or under / around the object
for opposite ones) and rests at the final relation. Sizes, positions, distances,
start/stop frames, easing, bounce and idle jitter vary with the seed; the verb
modulates the motion (hops/jumps bounce, darts/runs are quick). "top" is above
the object in the image (smaller y), "bottom" below it.

Scored from its ground-truth boxes with the ``toy`` scoring preset, a clip of an
opposite-relation type (LR, RL, TB, BT) scores DSR >= 0.9; a perpendicular type
(LT, TR, ...) scores 0.875 with the animal resting squarely on each side (the
DSR formula gives g = 0.5 there, see DESIGN.md; only extreme diagonal end poses
could pass 0.9, at most 0.905 with m = 2), and rendered ones stay within 0.03 of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.detection.palette import (
    ANIMALS,
    OBJECTS,
    SpriteStyle,
    animal_style,
    object_style,
    scene_background,
    scene_texture,
    sprite_mask,
)


@dataclass(frozen=True)
class ToyWorldConfig:
    """Clip geometry. 16x16 frames and 9 frames keep the whole toy loop fast on a CPU."""

    num_frames: int = 9
    height: int = 16
    width: int = 16
    fps: int = 8

    def __post_init__(self) -> None:
        if self.num_frames < 5:
            raise ValueError(f"num_frames must be at least 5, got {self.num_frames}")
        if self.height < 16 or self.width < 16:
            raise ValueError(f"frames must be at least 16x16, got {self.height}x{self.width}")


@dataclass(frozen=True)
class HardWorldConfig:
    """The hard world (``toy-hard``): what makes it harder than :class:`ToyWorldConfig`.

    * all four relations (the prompts' job: :data:`spatialalign.prompts.splits.HARD_SPLIT`);
    * ``distractors`` other sprites (another animal and/or another object, classes not in the
      prompt, colours at least ``distractor_distance`` from the prompt's two), each moving on
      its own, drawn behind the prompt's sprites;
    * a textured scene (:func:`~spatialalign.detection.palette.scene_texture`) and a slow
      camera pan of up to ``pan`` pixels per axis over the clip: everything shifts together,
      so the relation is unchanged, but the object's box moves;
    * with probability ``occlusion``, the animal takes the straight path between its two
      rest positions, passing behind the object (partly hidden) instead of around it;
    * 12 frames of 16x16 (the ``toy-hard`` validity preset,
      :data:`spatialalign.core.presets.TOY_HARD`): the toy model's frame size, so a model
      patching 8x8-pixel tokens sees the same token geometry as the toy model.

    The prompt's sprites move inside the (size - pan) stage every panned view shows whole.
    """

    num_frames: int = 12
    height: int = 16
    width: int = 16
    fps: int = 8
    pan: int = 1
    """Largest camera shift per axis over the clip, pixels."""
    distractors: tuple[int, int] = (1, 1)
    """Inclusive (min, max) distractor sprites per clip."""
    distractor_distance: float = 120.0
    """Least RGB distance of a distractor's colour from the prompt's animal and object."""
    occlusion: float = 0.3
    """Probability that the animal passes behind the object (opposite and perpendicular types)."""
    texture: int = 12
    """Amplitude of the scene texture, grey levels."""

    def __post_init__(self) -> None:
        if self.num_frames < 5:
            raise ValueError(f"num_frames must be at least 5, got {self.num_frames}")
        if self.height - self.pan < 15 or self.width - self.pan < 15:
            raise ValueError(
                f"frames minus the pan must be at least 15x15, got {self.height}x{self.width} "
                f"with pan {self.pan}"
            )
        lo, hi = self.distractors
        if not 0 <= lo <= hi:
            raise ValueError(f"distractors must be 0 <= min <= max, got {self.distractors}")

    @property
    def stage(self) -> _Stage:
        """The region every panned view shows, where the prompt's sprites move."""
        return _Stage(self.num_frames, self.height - self.pan, self.width - self.pan)


@dataclass(frozen=True)
class _Stage:
    """The geometry the layout and path helpers read (a :class:`ToyWorldConfig`'s fields);
    the hard world's stage may be 15 px, below a toy world's 16-px minimum."""

    num_frames: int
    height: int
    width: int


WORLDS: dict[str, ToyWorldConfig | HardWorldConfig] = {
    "toy": ToyWorldConfig(),
    "hard": HardWorldConfig(),
}
"""The toy worlds by name: ``toy`` (the shipped toy model's) and ``hard`` (``toy-hard``'s)."""


def world_config(name: str) -> ToyWorldConfig | HardWorldConfig:
    """The world called ``name``; one clear error for an unknown name."""
    try:
        return WORLDS[name]
    except KeyError:
        raise ValueError(f"unknown toy world {name!r} (choose from {', '.join(WORLDS)})") from None


@dataclass
class Clip:
    """A rendered clip and its exact per-frame ground-truth boxes."""

    frames: np.ndarray
    """uint8 [F, H, W, 3] RGB."""
    animal_boxes: np.ndarray
    """float32 [F, 4] xyxy pixels (x1/y1 are exclusive pixel edges), y down."""
    object_boxes: np.ndarray
    """float32 [F, 4]."""
    distractor_boxes: np.ndarray | None = None
    """float32 [D, F, 4] boxes of the distractor sprites (hard world), clipped to the frame;
    all zeros in frames where a distractor is out of view."""


# verb -> (easing, bounce amplitude in px, speed: "quick" | "steady" | None)
_VERB_MOTION: dict[str, tuple[str | None, int, str | None]] = {
    "hops": ("smooth", 2, None),
    "jumps": ("smooth", 2, "quick"),
    "leaps": ("smooth", 2, "quick"),
    "bounces": ("smooth", 2, None),
    "pecks": ("smooth", 1, None),
    "runs": ("ease_out", 0, "quick"),
    "darts": ("ease_out", 0, "quick"),
    "dashes": ("ease_out", 0, "quick"),
    "scampers": ("ease_out", 1, "quick"),
    "scurries": ("ease_out", 1, "quick"),
    "flies": ("smooth", 0, "quick"),
    "walks": ("linear", 0, "steady"),
    "paces": ("linear", 0, "steady"),
    "trots": ("smooth", 1, "steady"),
    "crawls": ("linear", 0, "steady"),
    "waddles": ("linear", 1, "steady"),
    "climbs": ("ease_in", 0, "steady"),
    "moves": (None, 0, None),
}
_CLIMBERS = ("hops", "jumps", "leaps", "climbs", "flies", "bounces")
_EASINGS = ("linear", "smooth", "ease_in", "ease_out")
_OPPOSITE = {"L": "R", "R": "L", "T": "B", "B": "T"}


def _ease(u: np.ndarray, kind: str) -> np.ndarray:
    if kind == "linear":
        return u
    if kind == "smooth":
        return u * u * (3 - 2 * u)
    if kind == "ease_in":
        return u * u
    if kind == "ease_out":
        return 1 - (1 - u) * (1 - u)
    raise ValueError(f"unknown easing {kind!r}")


def _clip_rng(prompt: DSRPrompt, seed: int) -> np.random.Generator:
    key = "|".join(
        (prompt.animal, prompt.object, prompt.initial, prompt.final, prompt.scene, prompt.verb)
    )
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])


@dataclass(frozen=True)
class _Layout:
    wa: int
    ha: int
    wo: int
    ho: int
    ox: int
    oy: int
    gap: int
    scale: int
    """Sprite pixels per base pixel (frames larger than 16 px draw bigger sprites)."""


def _route(initial: str, final: str, verb: str, rng: np.random.Generator) -> str | None:
    """The side passed on the way between two opposite relations (None otherwise)."""
    if _OPPOSITE[initial] != final:
        return None
    if initial in "LR":
        if verb in _CLIMBERS:
            return "T"
        return "T" if rng.random() < 0.6 else "B"
    return "L" if rng.random() < 0.5 else "R"


def _scale(cfg: ToyWorldConfig) -> int:
    return max(1, min(cfg.height, cfg.width) // 16)


def _layout(needed: set[str], ast, ost, cfg: ToyWorldConfig, rng: np.random.Generator) -> _Layout:
    """Samples sprite sizes, the gap and an object position with room for every needed side."""
    H, W = cfg.height, cfg.width
    k = _scale(cfg)
    for attempt in range(40):
        shrink = attempt >= 20  # fall back to the smallest sizes of each class
        wa = ast.widths[0] if shrink else int(rng.integers(ast.widths[0], ast.widths[1] + 1))
        ha = ast.heights[0] if shrink else int(rng.integers(ast.heights[0], ast.heights[1] + 1))
        wo = ost.widths[0] if shrink else int(rng.integers(ost.widths[0], ost.widths[1] + 1))
        ho = ost.heights[0] if shrink else int(rng.integers(ost.heights[0], ost.heights[1] + 1))
        gap = 1 if shrink else int(rng.integers(1, 3))
        if attempt >= 30:  # last resort: sizes that fit three across a 16-px frame
            wa, ha, wo, ho = min(wa, 4), min(ha, 4), min(wo, 5), min(ho, 5)
        wa, ha, wo, ho, gap = wa * k, ha * k, wo * k, ho * k, gap * k
        x_lo = wa + gap if "L" in needed else 0
        x_hi = W - wo - (wa + gap if "R" in needed else 0)
        y_lo = ha + gap if "T" in needed else 0
        y_hi = H - ho - (ha + gap if "B" in needed else 0)
        if x_lo > x_hi or y_lo > y_hi:
            continue
        # keep the object off the frame border a little when there is room
        x_lo2, x_hi2 = (x_lo + 1, x_hi - 1) if x_hi - x_lo >= 4 else (x_lo, x_hi)
        y_lo2, y_hi2 = (y_lo + 1, y_hi - 1) if y_hi - y_lo >= 4 else (y_lo, y_hi)
        ox = int(rng.integers(x_lo2, x_hi2 + 1))
        oy = int(rng.integers(y_lo2, y_hi2 + 1))
        return _Layout(wa, ha, wo, ho, ox, oy, gap, k)
    raise ValueError(f"frame {W}x{H} too small for sides {sorted(needed)} with these sprites")


def _rest_position(
    rel: str, lay: _Layout, cfg: ToyWorldConfig, rng: np.random.Generator, away: str | None
) -> np.ndarray:
    """Top-left corner (x, y) of the animal resting at relation ``rel`` to the object.

    The cross-axis offset is small; when ``away`` names a side, the offset leans
    away from it (the animal continues around the object rather than stopping short).
    """
    H, W = cfg.height, cfg.width
    ocx = lay.ox + lay.wo / 2
    ocy = lay.oy + lay.ho / 2
    if rel in "LR":
        room = lay.ox - lay.gap - lay.wa if rel == "L" else W - (lay.ox + lay.wo + lay.gap + lay.wa)
        extra = int(rng.integers(0, min(room, 3 * lay.scale) + 1))
        x = lay.ox - lay.gap - lay.wa - extra if rel == "L" else lay.ox + lay.wo + lay.gap + extra
        cross = int(rng.integers(-lay.scale, lay.scale + 1))
        if away == "T":
            cross = abs(cross)
        elif away == "B":
            cross = -abs(cross)
        y = int(np.clip(round(ocy - lay.ha / 2 + cross), 0, H - lay.ha))
        return np.array([x, y], dtype=np.float64)
    room = lay.oy - lay.gap - lay.ha if rel == "T" else H - (lay.oy + lay.ho + lay.gap + lay.ha)
    extra = int(rng.integers(0, min(room, 2 * lay.scale) + 1))
    y = lay.oy - lay.gap - lay.ha - extra if rel == "T" else lay.oy + lay.ho + lay.gap + extra
    cross = int(rng.integers(-lay.scale, lay.scale + 1))
    if away == "L":
        cross = abs(cross)
    elif away == "R":
        cross = -abs(cross)
    x = int(np.clip(round(ocx - lay.wa / 2 + cross), 0, W - lay.wa))
    return np.array([x, y], dtype=np.float64)


def _waypoints(
    p0: np.ndarray,
    p1: np.ndarray,
    initial: str,
    final: str,
    route: str | None,
    lay: _Layout,
    cfg: ToyWorldConfig,
) -> list[np.ndarray]:
    """Polyline from p0 to p1 whose every point keeps the animal clear of the object."""
    if initial == final:
        return [p0, p1]  # both on the same side: the straight line stays on that side
    if route is None:  # perpendicular: via the corner that is on both sides
        if initial in "LR":
            return [p0, np.array([p0[0], p1[1]]), p1]
        return [p0, np.array([p1[0], p0[1]]), p1]
    if route in "TB":
        y = lay.oy - lay.gap - lay.ha if route == "T" else lay.oy + lay.ho + lay.gap
        return [p0, np.array([p0[0], y]), np.array([p1[0], y]), p1]
    x = lay.ox - lay.gap - lay.wa if route == "L" else lay.ox + lay.wo + lay.gap
    return [p0, np.array([x, p0[1]]), np.array([x, p1[1]]), p1]


def _along(points: list[np.ndarray], s: np.ndarray) -> np.ndarray:
    """Points at arc-length fractions ``s`` (in [0, 1]) of a polyline."""
    pts = np.stack(points)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    total = seg.sum()
    if total == 0:
        return np.repeat(pts[:1], len(s), axis=0)
    cum = np.concatenate([[0.0], np.cumsum(seg)]) / total
    x = np.interp(s, cum, pts[:, 0])
    y = np.interp(s, cum, pts[:, 1])
    return np.stack([x, y], axis=1)


def _overlaps(ax: int, ay: int, lay: _Layout) -> bool:
    return (
        ax < lay.ox + lay.wo
        and lay.ox < ax + lay.wa
        and ay < lay.oy + lay.ho
        and lay.oy < ay + lay.ha
    )


def _in_frame(ax: int, ay: int, lay: _Layout, cfg: ToyWorldConfig) -> bool:
    return 0 <= ax and ax + lay.wa <= cfg.width and 0 <= ay and ay + lay.ha <= cfg.height


def _trajectory(
    prompt: DSRPrompt,
    lay: _Layout,
    route: str | None,
    cfg: ToyWorldConfig,
    rng: np.random.Generator,
    straight: bool = False,
) -> np.ndarray:
    """Integer top-left animal positions, int [F, 2]; ``straight``: the direct line between
    the rest positions, which may pass behind the object (the hard world's occlusion)."""
    F = cfg.num_frames
    verb = prompt.verb.strip().lower()
    easing, bounce, speed = _VERB_MOTION.get(verb, (None, int(rng.integers(0, 2)), None))
    if easing is None:
        easing = _EASINGS[int(rng.integers(len(_EASINGS)))]
    p0 = _rest_position(prompt.initial, lay, cfg, rng, away=prompt.final)
    p1 = _rest_position(prompt.final, lay, cfg, rng, away=prompt.initial)
    if prompt.initial == prompt.final and np.array_equal(p0, p1):
        p1 = _rest_position(prompt.final, lay, cfg, rng, away=None)
    pts = (
        [p0, p1] if straight else _waypoints(p0, p1, prompt.initial, prompt.final, route, lay, cfg)
    )

    # rest for the first / last few frames (>= 2 each, so the m=2 ends are at rest)
    margin = max(1, F // 4)
    t0 = int(rng.integers(1, margin + 1))
    t1 = int(rng.integers(F - 1 - margin, F - 1))
    if speed == "quick" and t1 - t0 > 3:
        t0, t1 = (t0 + 1, t1) if rng.random() < 0.5 else (t0, t1 - 1)
    elif speed == "steady":
        t0, t1 = 1, F - 2
    f = np.arange(F, dtype=np.float64)
    u = np.clip((f - t0) / max(t1 - t0, 1), 0.0, 1.0)
    pos = _along(pts, _ease(u, easing))
    bounce *= lay.scale
    if bounce:
        moving = (u > 0) & (u < 1)
        hops = max(1, round((t1 - t0) / 3))
        pos[moving, 1] -= bounce * np.abs(np.sin(np.pi * hops * u[moving]))

    out = np.rint(pos).astype(np.int64)
    # idle jitter: an occasional one-pixel twitch while resting
    resting = (u == 0) | (u == 1)
    for i in np.flatnonzero(resting):
        if rng.random() < 0.25:
            axis = int(rng.integers(0, 2))
            out[i, axis] += int(rng.choice([-1, 1]))
    # anything that would touch the object or leave the frame falls back to the path point
    path = np.rint(_along(pts, _ease(u, easing))).astype(np.int64)
    for i in range(F):
        if (_overlaps(*out[i], lay) and not straight) or not _in_frame(*out[i], lay, cfg):
            out[i] = path[i]
        if (_overlaps(*out[i], lay) and not straight) or not _in_frame(*out[i], lay, cfg):
            raise RuntimeError(f"toy path hits the object at frame {i}")  # pragma: no cover
    return out


def render_clip(
    prompt: DSRPrompt, seed: int, config: ToyWorldConfig | HardWorldConfig = ToyWorldConfig()
) -> Clip:
    """Renders ``prompt`` as a clip in the world ``config`` describes; the same (prompt, seed,
    config) gives the same clip.

    To render a clip whose motion disagrees with its caption (imperfect
    pretraining data), render ``dataclasses.replace(prompt, final=X)``.
    """
    if isinstance(config, HardWorldConfig):
        return _render_hard(prompt, seed, config)
    rng = _clip_rng(prompt, seed)
    ast = animal_style(prompt.animal)
    ost = object_style(prompt.object)
    route = _route(prompt.initial, prompt.final, prompt.verb.strip().lower(), rng)
    needed = {prompt.initial, prompt.final} | ({route} if route else set())
    lay = _layout(needed, ast, ost, config, rng)
    traj = _trajectory(prompt, lay, route, config, rng)

    F, H, W = config.num_frames, config.height, config.width
    bg = scene_background(prompt.scene, H, W)
    bg = bg + int(rng.integers(-4, 5))  # per-seed lighting
    block = np.ones((lay.scale, lay.scale), dtype=bool)
    amask = np.kron(sprite_mask(ast.shape, lay.wa // lay.scale, lay.ha // lay.scale), block)
    omask = np.kron(sprite_mask(ost.shape, lay.wo // lay.scale, lay.ho // lay.scale), block)
    frames = np.empty((F, H, W, 3), dtype=np.uint8)
    base = np.clip(bg, 0, 255).astype(np.uint8)
    base[lay.oy : lay.oy + lay.ho, lay.ox : lay.ox + lay.wo][omask] = ost.color
    for i, (ax, ay) in enumerate(traj):
        frame = base.copy()
        frame[ay : ay + lay.ha, ax : ax + lay.wa][amask] = ast.color
        frames[i] = frame
    animal_boxes = np.stack(
        [traj[:, 0], traj[:, 1], traj[:, 0] + lay.wa, traj[:, 1] + lay.ha], axis=1
    ).astype(np.float32)
    object_boxes = np.tile(
        np.array([lay.ox, lay.oy, lay.ox + lay.wo, lay.oy + lay.ho], dtype=np.float32), (F, 1)
    )
    return Clip(frames=frames, animal_boxes=animal_boxes, object_boxes=object_boxes)


def _distractor_styles(
    prompt: DSRPrompt, n: int, min_distance: float, rng: np.random.Generator
) -> list[SpriteStyle]:
    """``n`` sprite styles of classes not in the prompt (animals and objects alternate, order
    drawn by seed) whose colours are at least ``min_distance`` from the prompt's two."""
    mine = np.asarray([animal_style(prompt.animal).color, object_style(prompt.object).color], float)

    def far(style: SpriteStyle) -> bool:
        return bool(
            np.linalg.norm(mine - np.asarray(style.color, float), axis=1).min() >= min_distance
        )

    animals = [s for k, s in ANIMALS.items() if k != prompt.animal.strip().lower() and far(s)]
    objects = [s for k, s in OBJECTS.items() if k != prompt.object.strip().lower() and far(s)]
    pools = [animals, objects] if rng.random() < 0.5 else [objects, animals]
    out: list[SpriteStyle] = []
    for i in range(n):
        pool = [s for s in pools[i % 2] if s not in out] or [
            s for s in pools[(i + 1) % 2] if s not in out
        ]
        if not pool:
            break
        out.append(pool[int(rng.integers(len(pool)))])
    return out


def _paste(frame: np.ndarray, mask: np.ndarray, x: int, y: int, color) -> np.ndarray:
    """Paints ``mask`` at top-left (x, y) (may be partly outside); returns the drawn box."""
    H, W = frame.shape[:2]
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return np.zeros(4, np.float32)
    sub = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    frame[y0:y1, x0:x1][sub] = color
    ys, xs = np.nonzero(sub)
    if ys.size == 0:
        return np.zeros(4, np.float32)
    return np.array(
        [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], np.float32
    )


def _render_hard(prompt: DSRPrompt, seed: int, config: HardWorldConfig) -> Clip:
    """The hard world (:class:`HardWorldConfig`)."""
    rng = _clip_rng(prompt, seed)
    stage = config.stage
    ast = animal_style(prompt.animal)
    ost = object_style(prompt.object)
    route = _route(prompt.initial, prompt.final, prompt.verb.strip().lower(), rng)
    straight = prompt.initial != prompt.final and rng.random() < config.occlusion
    needed = {prompt.initial, prompt.final} | ({route} if route and not straight else set())
    lay = _layout(needed, ast, ost, stage, rng)
    traj = _trajectory(prompt, lay, route, stage, rng, straight=straight)

    F, H, W, P = config.num_frames, config.height, config.width, config.pan
    # the camera: the view's top-left corner on a (H+P, W+P) canvas, moving in a line by
    # at least 2 px; the stage sits at canvas [P, P+17), inside every view
    start = rng.integers(0, P + 1, size=2)
    while True:
        end = rng.integers(0, P + 1, size=2)
        if np.abs(end - start).sum() >= min(2, 2 * P):
            break
    u = np.arange(F) / max(F - 1, 1)
    view = np.rint(start[None] + (end - start)[None] * u[:, None]).astype(np.int64)  # [F, (y,x)]
    shift = P - view  # stage -> frame offset per frame, [F, (y, x)]

    canvas = scene_background(prompt.scene, H + P, W + P)
    canvas = canvas + scene_texture(prompt.scene, H + P, W + P, config.texture)
    canvas = canvas + int(rng.integers(-4, 5))  # per-seed lighting
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)

    # distractors: own straight walks over the canvas, possibly partly out of view
    n_d = int(rng.integers(config.distractors[0], config.distractors[1] + 1))
    styles = _distractor_styles(prompt, n_d, config.distractor_distance, rng)
    walks = []
    for st in styles:
        w = int(rng.integers(st.widths[0], st.widths[1] + 1))
        h = int(rng.integers(st.heights[0], st.heights[1] + 1))
        a = np.array([rng.integers(0, W + P - w + 1), rng.integers(0, H + P - h + 1)], float)
        b = np.array([rng.integers(0, W + P - w + 1), rng.integers(0, H + P - h + 1)], float)
        t0, t1 = sorted(int(t) for t in rng.integers(0, F, size=2))
        s = np.clip((np.arange(F) - t0) / max(t1 - t0, 1), 0.0, 1.0)
        pos = np.rint(a[None] + (b - a)[None] * s[:, None]).astype(np.int64)  # canvas (x, y)
        walks.append((st, sprite_mask(st.shape, w, h), pos))

    block = np.ones((lay.scale, lay.scale), dtype=bool)
    amask = np.kron(sprite_mask(ast.shape, lay.wa // lay.scale, lay.ha // lay.scale), block)
    omask = np.kron(sprite_mask(ost.shape, lay.wo // lay.scale, lay.ho // lay.scale), block)
    frames = np.empty((F, H, W, 3), dtype=np.uint8)
    animal_boxes = np.empty((F, 4), np.float32)
    object_boxes = np.empty((F, 4), np.float32)
    d_boxes = np.zeros((len(walks), F, 4), np.float32)
    for i in range(F):
        vy, vx = view[i]
        frame = canvas[vy : vy + H, vx : vx + W].copy()
        for j, (st, mask, pos) in enumerate(walks):
            d_boxes[j, i] = _paste(frame, mask, int(pos[i, 0]) - vx, int(pos[i, 1]) - vy, st.color)
        dy, dx = shift[i]
        ax, ay = int(traj[i, 0]) + dx, int(traj[i, 1]) + dy
        ox, oy = lay.ox + dx, lay.oy + dy
        _paste(frame, amask, ax, ay, ast.color)
        _paste(frame, omask, ox, oy, ost.color)  # in front: hides a passing animal
        animal_boxes[i] = (ax, ay, ax + lay.wa, ay + lay.ha)
        object_boxes[i] = (ox, oy, ox + lay.wo, oy + lay.ho)
        frames[i] = frame
    return Clip(frames, animal_boxes, object_boxes, distractor_boxes=d_boxes)


def render_batch(
    prompts: Sequence[DSRPrompt],
    seeds: Sequence[int],
    config: ToyWorldConfig | HardWorldConfig = ToyWorldConfig(),
) -> list[Clip]:
    """Renders ``prompts[i]`` with ``seeds[i]`` for every i."""
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
    return [render_clip(p, s, config) for p, s in zip(prompts, seeds, strict=True)]
