"""Start-up latency of the toy verbs: seconds from process start to the toy transformer's first forward.

    .venv/bin/python scripts/bench_start.py [--repeats 5] [--work DIR]

Each verb runs in a fresh ``python -m spatialalign.cli ...`` process whose first call of
``ToyWanTransformer3DModel.forward`` prints the elapsed time and ends the process (the rest of
the sampling is not timed). The hook is installed by an import hook, so the timed process
imports exactly what the verb imports. Verbs are alternated round-robin (the machine is shared:
compare only figures of one run); the table gives medians of the wall time and of the
process's CPU time (user + sys, steadier than wall on a busy machine). ``score-batch --help`` and
``pairs --help`` are timed to exit, as are bare ``import torch`` and ``import diffusers``
(the floors: the toy model subclasses diffusers' WanTransformer3DModel).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run inside the timed process: wrap ToyWanTransformer3DModel.forward once its module loads
HOOK = r"""
import importlib.abc, importlib.machinery, os, sys, time
T0 = float(os.environ["BENCH_T0"])
TARGET = "spatialalign.models.toy.model"

class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner
    def create_module(self, spec):
        return self.inner.create_module(spec)
    def exec_module(self, module):
        self.inner.exec_module(module)
        cls = module.ToyWanTransformer3DModel
        def forward(*a, **k):
            sys.stderr.write(f"BENCH_FIRST_FORWARD {time.time() - T0:.3f}\n")
            sys.stderr.flush()
            os._exit(0)
        cls.forward = forward

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = _Loader(spec.loader)
        return spec

sys.meta_path.insert(0, _Finder())
from spatialalign.cli import main
sys.argv[0] = "spatialalign"
main()
"""


def _cases(work: Path) -> dict[str, list[str]]:
    py = sys.executable
    hook = [py, "-c", HOOK]
    return {
        "sample --model toy": [
            *hook,
            "sample",
            str(work / "s"),
            "--prompts",
            str(work / "p" / "prompts.parquet"),
            "--seeds",
            "1",
            "--workers",
            "1",
        ],
        "eval --model toy": [
            *hook,
            "eval",
            str(work / "e"),
            "--prompts",
            "toy-test:2",
            "--seeds",
            "1",
            "--model",
            "toy",
        ],
        "toy evaluate": [*hook, "toy", "evaluate", "--test-prompts", "2", "--seeds", "1"],
        "score-batch --help": [py, "-m", "spatialalign.cli", "score-batch", "--help"],
        "pairs --help": [py, "-m", "spatialalign.cli", "pairs", "--help"],
        "import torch": [py, "-c", "import torch"],
        "import diffusers": [py, "-c", "import diffusers"],
    }


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _time(cmd: list[str], path: str | None) -> tuple[float, float]:
    """(wall seconds to the first forward or to exit, CPU seconds of the process)."""
    env = dict(os.environ, BENCH_T0=repr(time.time()), OMP_NUM_THREADS="1")
    if path:
        env["PYTHONPATH"] = path
    t0, c0 = time.perf_counter(), _cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    found = re.search(r"BENCH_FIRST_FORWARD ([0-9.]+)", proc.stderr)
    if found:
        return float(found.group(1)), cpu
    if proc.returncode != 0 or cmd[1] == "-c" and cmd[2] == HOOK:
        raise SystemExit(
            f"{cmd[3:] if cmd[1] == '-c' else cmd}: no forward seen (rc {proc.returncode})\n"
            f"{proc.stderr[-2000:]}"
        )
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="case names to run (default: all)")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument(
        "--with-path",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also run every case with DIR on PYTHONPATH (e.g. before=DIR holding "
        "bitsandbytes, which uv.lock excludes), alternated with the plain runs",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "spatialalign.cli",
                "prompts",
                str(work / "p"),
                "--train",
                "0",
                "--test",
                "2",
            ],
            check=True,
            capture_output=True,
        )
        cases = _cases(work)
        if args.only:
            cases = {k: v for k, v in cases.items() if k in args.only}
        variants: list[tuple[str, str | None]] = [("", None)]
        variants += [(f" [{lab}]", d) for lab, _, d in (w.partition("=") for w in args.with_path)]
        times: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            for name, cmd in cases.items():
                for label, path in variants:
                    for d in ("s", "e"):  # start every sample/eval from an empty run
                        subprocess.run(["rm", "-rf", str(work / d)], check=True)
                    times.setdefault(name + label, []).append(_time(cmd, path))
    print(f"{'command':32s} {'wall s':>7s} {'CPU s':>7s}   (medians of {args.repeats}; wall runs)")
    for name, ts in times.items():
        walls, cpus = [w for w, _ in ts], [c for _, c in ts]
        print(
            f"{name:32s} {statistics.median(walls):7.2f} {statistics.median(cpus):7.2f}   "
            f"{' '.join(f'{w:.2f}' for w in walls)}"
        )


if __name__ == "__main__":
    main()
