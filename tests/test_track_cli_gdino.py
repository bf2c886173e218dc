"""``spatialalign track --detector gdino-torch`` on a tiny random GroundingDINO saved locally.

Random weights cannot find animals, so the box threshold is pushed to its ends, where
the outcome is certain: 0.0 keeps every query's box (every frame redundant), 1.0 keeps
none (every frame a miss). Kept small: a 5-frame clip, one frame through SAM.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.presets import scoring_config
from spatialalign.core.schemas import MANIFEST
from spatialalign.core.video import write_video
from spatialalign.detection.pipeline import track_run
from spatialalign.detection.registry import make_detector
from spatialalign.prompts import read_prompts, write_prompts
from spatialalign.toy.world import render_clip

pytest.importorskip("transformers")


@pytest.mark.slow
def test_track_gdino_torch_end_to_end(tmp_path, capsys):
    from tiny_models import save_grounding_dino

    model_dir = save_grounding_dino(tmp_path / "model")
    run = tmp_path / "run"
    prompt = read_prompts(OFFICIAL_CSV)[0]
    write_prompts([prompt], run / "prompts.parquet")
    path = run / "samples" / "v0.mp4"
    write_video(path, render_clip(prompt, 0).frames[:5], fps=8)  # 5 frames suffice
    row = {"sample_id": "v0", "prompt_id": prompt.prompt_id, "seed": 0, "path": str(path)}
    write_parquet(pa.Table.from_pylist([row], MANIFEST), run / "samples" / "manifest.parquet")

    main(["track", str(run), "--detector", "gdino-torch", "--model-dir", str(model_dir),
          "--device", "cpu", "--preset", "toy", "--box-threshold", "0.0"])  # fmt: skip
    out = capsys.readouterr().out.strip()
    assert out.startswith("track: 1 video(s) tracked") and "redundant 1" in out
    det = read_parquet(run / "detections.parquet").to_pylist()
    assert [(d["status"], d["reason"], d["n_redundant"]) for d in det] == [
        ("rejected", "redundant", 5)
    ]
    assert read_parquet(run / "tracks.parquet").num_rows == 0

    # the same run at box threshold 1.0 is another setting: redone, every frame a miss
    toy = scoring_config("toy", box_threshold=1.0)
    detector = make_detector("gdino-torch", model_dir=model_dir, box_threshold=1.0, device="cpu")
    summary = track_run(run, detector, toy, progress=False)
    assert summary.n_tracked == 1 and summary.counts == {"too_few_frames": 1}
    det = read_parquet(run / "detections.parquet").to_pylist()
    assert [(d["reason"], d["n_miss"]) for d in det] == [("too_few_frames", 5)]

    # --sam: the registry turns a local SAM directory into a refiner for gdino-torch, which
    # then tightens the same detections (same scores and labels, other boxes)
    from spatialalign.detection.sam import SamRefiner
    from tiny_models import save_sam

    sam_dir = save_sam(tmp_path / "sam")
    plain = make_detector("gdino-torch", model_dir=model_dir, box_threshold=0.0, device="cpu")
    refined = make_detector(
        "gdino-torch", model_dir=model_dir, box_threshold=0.0, device="cpu", sam=sam_dir
    )
    assert isinstance(refined.sam, SamRefiner)
    frames = render_clip(prompt, 0).frames[:1]
    names = [prompt.animal, prompt.object]
    a, b = plain.detect(frames, names), refined.detect(frames, names)
    # the same per-frame GroundingDINO forward in one process: its scores bit-equal
    assert [d.labels for d in a] == [d.labels for d in b]
    np.testing.assert_array_equal(a[0].scores, b[0].scores)
    assert a[0].boxes.shape == b[0].boxes.shape and not np.array_equal(a[0].boxes, b[0].boxes)
