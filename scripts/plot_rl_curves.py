"""docs/rl_curves.png: GRPO's samples (per iteration, 5-iteration mean) against sampled
training videos, with the evaluated points of DPO+ZO, the loop and the GRPO adapter
(docs/RESULTS.md's numbers). Run from the repository root after the runs it reads:

    .venv/bin/python scripts/plot_rl_curves.py
"""

import json

import numpy as np
from matplotlib.figure import Figure

RUNS = {  # name -> rl run directory (docs/RESULTS.md, "Online GRPO")
    "rl: cosine, min std 0.05 (defaults)": "experiments/rl_mgscos",
    "rl: constant lr, min std 0.05": "experiments/rl_mgs",
    "rl: constant lr, min std 1e-6 (first defaults)": "experiments/rl/rl",
}
POINTS = {  # evaluated on toy-test x seeds 0-4, ODE sampler: (videos, C@0.7, validness, marker)
    "base": (0, 0.487, 0.923, "o"),
    "DPO+ZO, one round": (4000, 0.867, 0.925, "s"),
    "loop r1": (4000, 0.773, 0.922, "D"),
    "loop r2": (8000, 0.920, 0.932, "D"),
    "loop r3": (12000, 0.938, 0.940, "D"),
    "rl defaults (eval)": (7680, 0.817, 0.912, "o"),
}

fig = Figure(figsize=(10, 3.8), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for (name, d), colour in zip(RUNS.items(), ["C0", "C1", "C3"], strict=True):
    with open(f"{d}/run/train_log.jsonl") as f:
        rows = [json.loads(line) for line in f]
    videos = np.array([r["videos"] for r in rows])
    for ax, key in ((ax1, "correct_0.7"), (ax2, "validness")):
        y = np.convolve([r[key] for r in rows], np.ones(5) / 5, mode="valid")
        ax.plot(videos[4:], y, color=colour, lw=1.2, label=name)
for name, (x, c7, valid, marker) in POINTS.items():
    colour = "C0" if name.startswith("rl") else "k"
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
fig.savefig("docs/rl_curves.png", dpi=110)
