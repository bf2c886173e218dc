"""Split a base-vs-aligned comparison by the prompt's animal (the transfer probe of issue 10).

    python scripts/toy_transfer_split.py BASE_EVAL RUN_EVAL --animals fox,turtle,... [--out F.md]

BASE_EVAL / RUN_EVAL are `spatialalign eval` run directories (scores.parquet and
prompts.parquet). Prompts whose animal is in --animals form the "paired animals" group,
the others "held-out animals"; each group gets `compare`'s statistics (Correctness@0.7 with
a 95% prompt-bootstrap interval, the paired difference vs base, validness).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from spatialalign.evaluation.compare import CompareConfig, compare_runs


def _scores_with_animal(run: Path) -> pa.Table:
    scores = pq.read_table(run / "scores.parquet")
    prompts = pq.read_table(run / "prompts.parquet", columns=["prompt_id", "animal"])
    ids, animals = prompts.column("prompt_id").to_pylist(), prompts.column("animal").to_pylist()
    animal = dict(zip(ids, animals, strict=True))
    return scores.append_column(
        "animal_", pa.array([animal[p] for p in scores.column("prompt_id").to_pylist()])
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--animals", required=True, help="comma-separated paired animals")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    paired = [a.strip() for a in args.animals.split(",") if a.strip()]
    base, run = _scores_with_animal(args.base), _scores_with_animal(args.run)
    lines = [
        "| animals | prompts | base Correct@0.7 [95% CI] | aligned Correct@0.7 [95% CI] "
        "| Δ [95% CI] | validness base → aligned |",
        "|---|---:|---|---|---|---|",
    ]
    for label, keep in (("paired", True), ("held-out", False)):
        mask_b = pc.is_in(base.column("animal_"), pa.array(paired))
        mask_r = pc.is_in(run.column("animal_"), pa.array(paired))
        if not keep:
            mask_b, mask_r = pc.invert(mask_b), pc.invert(mask_r)
        b, r = base.filter(mask_b).drop(["animal_"]), run.filter(mask_r).drop(["animal_"])
        cmp = compare_runs([("base", b), ("aligned", r)], metrics=[], config=CompareConfig())
        sb, sr = cmp.runs
        d = cmp.differences[0].correctness
        animals = ",".join(sorted(set(base.filter(mask_b).column("animal_").to_pylist())))
        lines.append(
            f"| {label} ({animals}) | {sb.n_prompts} "
            f"| {sb.correctness.value:.3f} [{sb.correctness.low:.3f}, {sb.correctness.high:.3f}] "
            f"| {sr.correctness.value:.3f} [{sr.correctness.low:.3f}, {sr.correctness.high:.3f}] "
            f"| {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}] "
            f"| {sb.validness.value:.3f} → {sr.validness.value:.3f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
