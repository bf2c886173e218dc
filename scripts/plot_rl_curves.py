"""docs/rl_curves.png (toy) and docs/rl_curves_hard.png (``--world hard``): GRPO's samples (per
iteration, 5-iteration mean) against sampled training videos, with the evaluated points of
DPO+ZO, the loop, best-of-N and the GRPO adapter (docs/RESULTS.md's numbers). Run from the
repository root after the runs it reads:

    .venv/bin/python scripts/plot_rl_curves.py [--world toy|hard]
"""

import argparse
import json

import numpy as np
from matplotlib.figure import Figure

WORLDS = {
    "toy": {
        "out": "docs/rl_curves.png",
        "runs": {  # name -> rl run directory (docs/RESULTS.md, "Online GRPO")
            "rl: groups of 4 for 32 prompts, 93 it. (defaults)": "experiments/rl_g4_93",
            "rl: groups of 8 for 16 prompts, cosine, min std 0.05": "experiments/rl_mgscos",
            "rl: constant lr, min std 0.05": "experiments/rl_mgs",
            "rl: constant lr, min std 1e-6 (first defaults)": "experiments/rl_first/rl",
        },
        # evaluated on toy-test x seeds 0-4, ODE sampler: (videos, C@0.7, validness, marker[,
        # colour: an rl run's, else black)
        "points": {
            "base": (0, 0.487, 0.923, "o"),
            "DPO+ZO, one round": (4000, 0.867, 0.925, "s"),
            "loop r1": (4000, 0.773, 0.922, "D"),
            "loop r2": (8000, 0.920, 0.932, "D"),
            "loop r3": (12000, 0.938, 0.940, "D"),
            "rl 8x16 (eval)": (7680, 0.817, 0.912, "o", "C2"),
            "rl defaults (eval)": (11904, 0.962, 0.967, "o", "C0"),
        },
    },
    "hard": {
        "out": "docs/rl_curves_hard.png",
        "runs": {
            "rl --model toy-hard, groups of 8 for 16 prompts": "experiments/rl_hard",
            "rl --model toy-hard, groups of 4 for 32 prompts": "experiments/rl_hard_g4",
        },
        # toy-hard-test x seeds 0-4 (experiments/rl_hard_compare/comparison.md)
        "points": {
            "base": (0, 0.342, 0.868, "o"),
            "DPO+ZO, one round": (4800, 0.485, 0.828, "s"),
            "loop r1": (4800, 0.422, 0.833, "D"),
            "loop r2": (9600, 0.495, 0.823, "D"),
            "loop r3": (14400, 0.518, 0.855, "D"),
            "best-of-8 (inference)": (4800, 0.635, 1.000, "^"),
            "rl 8x16 (eval)": (7680, 0.475, 0.807, "o", "C0"),
            "rl 4x32 (eval)": (7680, 0.442, 0.835, "o", "C2"),
        },
    },
}


def plot(runs: dict[str, str], points: dict[str, tuple], out: str) -> None:
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for (name, d), colour in zip(runs.items(), ["C0", "C2", "C1", "C3"], strict=False):
        with open(f"{d}/run/train_log.jsonl") as f:
            rows = [json.loads(line) for line in f]
        videos = np.array([r["videos"] for r in rows])
        for ax, key in ((ax1, "correct_0.7"), (ax2, "validness")):
            y = np.convolve([r[key] for r in rows], np.ones(5) / 5, mode="valid")
            ax.plot(videos[4:], y, color=colour, lw=1.2, label=name)
    for name, (x, c7, valid, marker, *run_colour) in points.items():
        colour = run_colour[0] if run_colour else "k"
        ax1.plot(x, c7, marker, color=colour, ms=6)
        ax1.annotate(name, (x, c7), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax2.plot(x, valid, marker, color=colour, ms=6)
    ax1.set_title(
        "Correctness@0.7 (lines: each iteration's SDE samples; marks: evaluations)", fontsize=9
    )
    ax2.set_title("validness", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("sampled training videos")
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="lower right")
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=sorted(WORLDS), default="toy")
    world = WORLDS[ap.parse_args().world]
    plot(world["runs"], world["points"], world["out"])
