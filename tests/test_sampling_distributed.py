"""Two-process sharding of ``spatialalign sample`` with a gloo process group (CPU).

The two workers are started the way ``torchrun`` starts them: the same command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set (the
launcher process itself is left out: it would only add another torch import to a test
on a busy 2-core machine). Each rank loads a tiny random toy model from disk, takes every 2nd pending sample, writes
its videos and manifest part; rank 0 merges after a barrier. The result must equal a
single-process run, file for file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.core.video import read_video
from spatialalign.models.backends import ToyBackend
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.prompts import read_prompts, write_prompts
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.manifest import part_files
from spatialalign.sampling.sampler import sample_videos
from tolerance import assert_videos_close


@pytest.mark.slow
def test_two_ranks_with_a_process_group_split_and_merge(tmp_path):
    prompts = read_prompts(OFFICIAL_CSV)[:3]
    write_prompts(prompts, tmp_path / "prompts.parquet")
    pipe = ToyPipeline.random(seed=0)
    model_dir = pipe.save_pretrained(tmp_path / "toy")
    run = tmp_path / "run"
    run.mkdir()
    # one video already there: pending work is the other 5, split 3 / 2 between ranks
    single = tmp_path / "single"
    sample_videos(single, ToyBackend(pipe, steps=2), prompts, seeds=2, progress=False)
    (run / "samples").mkdir()
    first = sorted((single / "samples").glob("*.mp4"))[0]
    (run / "samples" / first.name).write_bytes(first.read_bytes())

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "spatialalign.cli", "sample", str(run)]
    cmd += ["--model-path", str(model_dir), "--prompts", str(tmp_path / "prompts.parquet")]
    cmd += ["--seeds", "2", "--steps", "2", "--batch-size", "2", "--device", "cpu"]
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        env.update(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    stdout = ""
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        stdout += out
    summaries = sorted(line for line in stdout.splitlines() if line.startswith("sample:"))
    assert len(summaries) == 2
    assert "rank 0/2: generated 3 video(s) (3 new), skipped 1" in summaries[0]
    assert "rank 1/2: generated 2 video(s) (2 new), skipped 1" in summaries[1]

    rows = RunDir(run).read_manifest().to_pylist()
    assert len(rows) == 6 and not part_files(RunDir(run))
    want = {p.stem: read_video(p) for p in (single / "samples").glob("*.mp4")}
    # other processes, other batch compositions: each video within a level of the
    # one-process run's (bit-identical on most machines, not promised on all)
    for row in rows:
        assert_videos_close(read_video(row["path"]), want[row["sample_id"]], what=row["sample_id"])
