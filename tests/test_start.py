"""Start-up: which heavy libraries a verb imports, each checked in a fresh interpreter.

The sets, never the times (docs/BENCHMARKS.md, Start-up, has those): torch alone costs
~1.3 s, diffusers (which brings torch._dynamo) twice that, so verbs that only read tables
must not import them. The toy sampling path needs diffusers (the toy transformer subclasses
its WanTransformer3DModel), and diffusers' own module-level code imports transformers, peft,
accelerate and scipy whenever they are installed; what it would also import, bitsandbytes,
is kept out of the environment (pyproject.toml's exclude-dependencies), and checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# never needed by a verb that reads or writes tables
ML = ("torch", "diffusers", "transformers", "peft", "accelerate", "bitsandbytes", "scipy")
# never needed to sample the toy model (detection, training logs, other metrics' back ends)
NOT_FOR_TOY_SAMPLING = (
    "bitsandbytes",
    "onnx",
    "onnxruntime",
    "pyiqa",
    "torchmetrics",
    "tensorboard",
    "cv2",
)


def imported_after(*argvs: list[str], cwd: Path | None = None) -> set[str]:
    """Modules loaded by a fresh interpreter that runs ``spatialalign`` with each argv in turn."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from spatialalign.cli import main
        for argv in {argvs!r}:
            try:
                main(argv)
            except SystemExit as e:
                if e.code:
                    raise
        print(json.dumps(sorted(sys.modules)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules]


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory) -> Path:
    """The synthetic demo run: prompts, tracks and scores, no model."""
    run = tmp_path_factory.mktemp("start") / "run"
    imported_after(["demo", str(run), "--synthetic"])
    assert (run / "tracks.parquet").is_file() and (run / "scores.parquet").is_file()
    return run


@pytest.mark.parametrize("verb", ["score-batch", "pairs"])
def test_table_verbs_import_no_ml_library(verb: str, scored_run: Path) -> None:
    helped = imported_after([verb, "--help"])
    assert not loaded(helped, ML), f"{verb} --help"
    ran = imported_after([verb, str(scored_run)])
    assert not loaded(ran, ML), f"{verb} on a run"


def test_no_verb_help_imports_torch() -> None:
    from spatialalign.cli import COMMANDS

    modules = imported_after(*([verb, "--help"] for verb in sorted(COMMANDS)))
    assert not loaded(modules, ML)


def test_model_plumbing_imports_no_torch() -> None:
    """The back ends, the registry and the LoRA helpers load torch / peft only when used."""
    code = (
        "import json, sys\n"
        "import spatialalign.models.backends, spatialalign.models.registry\n"
        "import spatialalign.lora.adapter, spatialalign.models.toy.shipped\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not loaded(set(json.loads(proc.stdout.splitlines()[-1])), ML)


@pytest.mark.slow
def test_toy_sampling_imports_no_bitsandbytes_nor_other_stages(tmp_path: Path) -> None:
    run = tmp_path / "run"
    modules = imported_after(
        ["prompts", str(run), "--train", "0", "--test", "1"],
        ["sample", str(run), "--seeds", "1", "--steps", "1", "--workers", "1"],
    )
    assert (run / "samples" / "manifest.parquet").is_file()
    assert "diffusers" in modules  # the toy transformer is a diffusers model
    assert not loaded(modules, NOT_FOR_TOY_SAMPLING)
