"""No module outside ``spatialalign.rundir`` spells a file name of the run directory.

The names are what :class:`RunDir`, :class:`TrainDir` and :class:`CacheDir` define (the
last part of every path property, read on a dummy root), so a path added there is
guarded at once. Read with ``ast`` from the source tree: a string constant that *is* such
a file name (``"train_log.jsonl"``) fails anywhere; a directory name (``"run"``, a plain
word elsewhere too) fails where it builds a path (``x / "run"``, ``Path("run")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from spatialalign.rundir import CacheDir, RunDir, TrainDir

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "python" / "spatialalign"
OWNER = PACKAGE_DIR / "rundir"

FORMAT_NAMES = {
    ("lora/adapter.py", "pytorch_lora_weights.safetensors"),  # diffusers' adapter file name
}
"""(module, name): file-format names a lower layer defines and RunDir places."""


def run_dir_names() -> set[str]:
    """The file and directory names the run directory's layout classes define."""
    names = set()
    for layout in (RunDir("/r"), TrainDir("/r/run"), CacheDir("/r/cache")):
        for attr, value in vars(type(layout)).items():
            if isinstance(value, property):
                path = getattr(layout, attr)
                if isinstance(path, Path):
                    names.add(path.name)
    names.add(RunDir("/r").track_settings_path("k").name)
    return names


def _path_operands(tree: ast.AST) -> set[int]:
    """ids of the string constants that build a path: ``a / "x"``, ``Path("x")``,
    ``p.joinpath("x")``."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            ids |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in ("Path", "PurePath", "joinpath"):
                ids |= {id(a) for a in node.args}
    return ids


def spelled_names(root: Path, names: set[str]) -> list[str]:
    """``module:line: 'name'`` for every run-directory name spelled outside ``rundir/``."""
    files = {n for n in names if "." in n.lstrip(".")}
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("rundir/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        in_path = _path_operands(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and node.value in names):
                continue
            if (rel, node.value) in FORMAT_NAMES:
                continue
            if node.value in files or id(node) in in_path:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_the_names_cover_the_training_output():
    names = run_dir_names()
    for name in ("run", "cache", "train_log.jsonl", "train_config.json", "checkpoints",
                 "inputs.json", "index.json", "pytorch_lora_weights.safetensors",
                 "prompts.parquet", "prompts_official.csv", "metrics.parquet"):  # fmt: skip
        assert name in names


def test_no_module_outside_rundir_spells_a_run_dir_name():
    found = spelled_names(PACKAGE_DIR, run_dir_names())
    assert not found, "run-directory names spelled outside spatialalign.rundir:\n" + "\n".join(
        found
    )


def test_the_check_catches_a_file_name_and_a_path_join(tmp_path):
    root = tmp_path / "spatialalign"
    (root / "report").mkdir(parents=True)
    (root / "report" / "runs.py").write_text(
        'LOG = "train_log.jsonl"\nlabel = "run"\ntrain = root / "run"\n'
    )
    assert spelled_names(root, run_dir_names()) == [
        "report/runs.py:1: 'train_log.jsonl'",
        "report/runs.py:3: 'run'",
    ]
