"""Writes the small synthetic run shipped for ``spatialalign demo`` (python/spatialalign/data/demo/).

Nothing here comes from the official data: 30 prompts are composed by hand-written
lists below (6 DSR types x 5), each sampled with 3 seeds, and the tracked boxes of
each "video" (81 frames, 832x480) are drawn to mimic what a detector gives on

* good videos    - the animal moves from the initial to the final relation,
* bad videos     - it stays put, turns back, stops half way or goes the wrong way,
* gappy videos   - the animal is often missed (some drop below min_frames),
* rejected ones  - detections.parquet rejects them (redundant, no_stable_run,
                   unreadable_video) as the track stage would,
* lost ones      - in the manifest but never tracked (no tracks, no detections row).

Deterministic: ``python scripts/make_demo_data.py`` rewrites byte-identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
from spatialalign.core.fileio import write_parquet
from spatialalign.core.presets import OFFICIAL
from spatialalign.core.schemas import DETECTIONS, MANIFEST, PROMPTS, TRACKS, validate_table
from spatialalign.detection.validity import MISS, REDUNDANT, VALID, judge_frames, rejected

OUT = Path(__file__).resolve().parents[1] / "python" / "spatialalign" / "data" / "demo"
N_FRAMES, WIDTH, HEIGHT, FPS = 81, 832, 480, 16
SEEDS = (0, 1, 2)
TYPES = ("LR", "RL", "LT", "TL", "RT", "TR")
ANIMALS = ("fox", "rabbit", "cat", "squirrel", "dog", "duck", "hedgehog", "raccoon", "owl", "goat")
OBJECTS = ("stump", "bench", "box", "chair", "barrel", "rock", "crate", "bucket", "stool", "log")
SCENES = (
    "In a quiet forest clearing at dawn",
    "On a sunny farmyard with a red barn behind",
    "In a cosy living room with a striped rug",
    "On a windy beach with grey clouds overhead",
    "In a city park with tall trees and a fountain",
)
VERBS = {
    "L": ("walks", "hops", "runs"),
    "R": ("walks", "trots", "scurries"),
    "T": ("jumps", "climbs", "leaps"),
}
INITIAL_WORD = {"L": "on the left of", "R": "on the right of", "T": "on the top of"}
FINAL_WORD = {"L": "to the left of", "R": "to the right of", "T": "to the top of"}

# behaviour of each (prompt, seed), cycled deterministically with a seeded shuffle
BEHAVIOURS = (
    ["good"] * 55
    + ["stay", "reverse", "halfway", "wrong_axis"] * 6
    + ["gappy", "gappy", "gappy", "sparse", "sparse"]
    + ["redundant", "redundant", "no_stable_run", "unreadable_video"]
    + ["lost", "lost"]
)


def make_prompts() -> list[dict[str, str]]:
    rows = []
    for i in range(30):
        dsr_type = TYPES[i % len(TYPES)]
        ini, fin = dsr_type
        animal = ANIMALS[(i * 3) % len(ANIMALS)]
        obj = OBJECTS[(i * 7 + 1) % len(OBJECTS)]
        scene = SCENES[i % len(SCENES)]
        verb = VERBS[fin][i % 3]
        text = (
            f"{scene}, a {animal} is {INITIAL_WORD[ini]} a {obj}, "
            f"then the {animal} {verb} {FINAL_WORD[fin]} the {obj}."
        )
        rows.append(
            {
                "prompt_id": f"demo{i:03d}_{dsr_type}",
                "prompt": text,
                "scene": scene,
                "animal": animal,
                "object": obj,
                "verb": verb,
                "initial": ini,
                "final": fin,
                "split": "demo",
            }
        )
    return rows


def place(
    rel: str, obj_c: np.ndarray, obj_wh: np.ndarray, a_wh: np.ndarray, gap: float
) -> np.ndarray:
    """Animal centre at relation ``rel`` of the object (y grows downwards)."""
    dx = (obj_wh[0] + a_wh[0]) / 2 + gap
    dy = (obj_wh[1] + a_wh[1]) / 2 + gap * 0.3
    offset = {"L": (-dx, 0.0), "R": (dx, 0.0), "T": (0.0, -dy), "B": (0.0, dy)}[rel]
    return obj_c + np.asarray(offset)


def animal_path(kind: str, ini: str, fin: str, rng: np.random.Generator, geo: dict) -> np.ndarray:
    """[N_FRAMES, 2] animal centres for one behaviour."""
    start = place(ini, geo["obj_c"], geo["obj_wh"], geo["a_wh"], geo["gap"])
    end = place(fin, geo["obj_c"], geo["obj_wh"], geo["a_wh"], geo["gap"])
    opposite = {"L": "R", "R": "L", "T": "L"}[fin]
    if kind == "stay":
        end = start
    elif kind == "halfway":
        end = start + 0.45 * (end - start)
    elif kind == "wrong_axis":
        end = place(opposite, geo["obj_c"], geo["obj_wh"], geo["a_wh"], geo["gap"])
    t0, t1 = rng.uniform(10, 30), rng.uniform(50, 72)
    s = np.clip((np.arange(N_FRAMES) - t0) / (t1 - t0), 0, 1)
    s = s * s * (3 - 2 * s)  # smoothstep
    if kind == "reverse":  # gets there, then turns back
        s = np.where(s < 1, np.sin(np.pi * s), 0.0) * (np.arange(N_FRAMES) < t1)
    path = start[None] + s[:, None] * (end - start)[None]
    # animals going over or off the object rise in an arc
    path[:, 1] -= np.sin(np.pi * s) * geo["a_wh"][1] * 0.4
    return path + rng.normal(0, 2.0, size=path.shape)


def make_video(kind: str, ini: str, fin: str, rng: np.random.Generator):
    """(frames, animal boxes, object boxes), with missed detections dropped."""
    obj_wh = np.array([rng.uniform(90, 180), rng.uniform(70, 150)])
    a_wh = np.array([rng.uniform(60, 120), rng.uniform(50, 100)])
    obj_c = np.array([WIDTH / 2 + rng.uniform(-60, 60), HEIGHT * 0.6 + rng.uniform(-30, 30)])
    geo = {"obj_c": obj_c, "obj_wh": obj_wh, "a_wh": a_wh, "gap": rng.uniform(10, 60)}
    centres = animal_path("good" if kind in ("gappy", "sparse") else kind, ini, fin, rng, geo)
    wh = a_wh[None] * (1 + rng.normal(0, 0.03, size=(N_FRAMES, 2)))
    animal = np.concatenate([centres - wh / 2, centres + wh / 2], axis=1)
    ojit = rng.normal(0, 1.0, size=(N_FRAMES, 2))
    obj = np.concatenate([obj_c - obj_wh / 2 + ojit, obj_c + obj_wh / 2 + ojit], axis=1)
    seen_a = rng.random(N_FRAMES) > 0.03
    seen_o = rng.random(N_FRAMES) > 0.02
    if kind == "gappy":
        seen_a &= rng.random(N_FRAMES) > 0.45
    if kind == "sparse":
        seen_a &= rng.random(N_FRAMES) > 0.85
    if kind == "no_stable_run":
        seen_a = (np.arange(N_FRAMES) % 4) != 1
        seen_a &= (np.arange(N_FRAMES) % 4) != 3
    clip = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=float)
    animal = np.clip(animal, 0, clip).round(1)
    obj = np.clip(obj, 0, clip).round(1)
    return seen_a, seen_o, animal, obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(20240601)
    prompts = make_prompts()
    n_samples = len(prompts) * len(SEEDS)
    assert len(BEHAVIOURS) == n_samples, (len(BEHAVIOURS), n_samples)
    kinds = list(BEHAVIOURS)
    rng.shuffle(kinds)

    manifest, tracks, detections = [], [], []
    for k, (p, seed) in enumerate((p, s) for p in prompts for s in SEEDS):
        kind = kinds[k]
        sample_id = f"{p['prompt_id']}_F{N_FRAMES}_seed{seed:02d}"
        manifest.append(
            {
                "sample_id": sample_id,
                "prompt_id": p["prompt_id"],
                "seed": seed,
                "model": "synthetic-demo",
                "adapter": "",
                "path": f"samples/{sample_id}.mp4",
                "num_frames": N_FRAMES,
                "fps": float(FPS),
                "height": HEIGHT,
                "width": WIDTH,
            }
        )
        if kind == "lost":
            continue
        if kind == "unreadable_video":
            detections.append(rejected("unreadable_video").to_row(sample_id))
            continue
        seen_a, seen_o, animal, obj = make_video(kind, p["initial"], p["final"], rng)
        redundant = np.zeros(N_FRAMES, dtype=bool)
        if kind == "redundant":  # a second animal box on many frames: the tracker drops them
            redundant = rng.random(N_FRAMES) > 0.6
            seen_a &= ~redundant
        for f in range(N_FRAMES):
            for label, seen, box in (("animal", seen_a, animal), ("object", seen_o, obj)):
                if seen[f]:
                    x0, y0, x1, y1 = box[f]
                    score = float(np.round(rng.uniform(0.45, 0.9), 3))
                    tracks.append(
                        {
                            "sample_id": sample_id,
                            "frame": f,
                            "label": label,
                            "x0": x0,
                            "y0": y0,
                            "x1": x1,
                            "y1": y1,
                            "score": score,
                        }
                    )
        statuses = np.where(redundant, REDUNDANT, np.where(seen_a & seen_o, VALID, MISS))
        detections.append(judge_frames(statuses.tolist(), OFFICIAL).to_row(sample_id))

    f32 = pa.float32()
    track_table = pa.Table.from_pylist(tracks, schema=TRACKS)
    # boxes are stored as float32 (what a detector emits); readers cast to float64
    track_table = track_table.cast(
        pa.schema([pa.field(f.name, f32 if f.type == pa.float64() else f.type) for f in TRACKS])
    )
    tables = {
        "prompts.parquet": pa.Table.from_pylist(prompts, schema=PROMPTS),
        "samples/manifest.parquet": pa.Table.from_pylist(manifest, schema=MANIFEST),
        "tracks.parquet": track_table,
        "detections.parquet": pa.Table.from_pylist(detections, schema=DETECTIONS),
    }
    for name, schema in (
        ("prompts.parquet", "prompts"),
        ("samples/manifest.parquet", "manifest"),
        ("tracks.parquet", "tracks"),
        ("detections.parquet", "detections"),
    ):
        validate_table(tables[name], schema, name)
        write_parquet(tables[name], args.out / name)
    total = sum((args.out / n).stat().st_size for n in tables)
    print(
        f"wrote {', '.join(tables)} under {args.out} ({total / 1024:.0f} KiB; "
        f"{len(prompts)} prompts, {n_samples} samples, {len(tracks)} track rows)"
    )


if __name__ == "__main__":
    main()
