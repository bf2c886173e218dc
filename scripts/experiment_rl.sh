#!/usr/bin/env bash
# The toy GRPO experiment (issue 23): align the shipped toy T2V model online with
# `spatialalign rl` and compare it with the base model on the toy TEST prompts.
#
#   scripts/experiment_rl.sh [RUN_DIR] [extra `spatialalign rl` options...]
#
# RUN_DIR (default experiments/rl, git-ignored) receives
#   rl/           prompts.parquet (the toy TRAIN split), rl/iter-NNNNNNN.parquet (every sampled
#                 video's verdict, reward, advantage, kept), run/ (the adapter
#                 run/pytorch_lora_weights.safetensors, checkpoints, train_log.jsonl)
#   eval_base/    the shipped toy model on toy-test x seeds 0-4 (600 clips, ODE sampler)
#   eval_rl/      the same with the adapter
#   compare/      comparison.md / .json / correctness_curves.png
#   timings.tsv   wall seconds per stage
# Every stage is resumable: `rl` continues from its last finished iteration, eval reuses
# what is done. Environment: SPATIALALIGN (the CLI, default .venv/bin/spatialalign), THREADS
# (torch/OpenMP threads per process, default 1), PROCS (eval's --workers, default: cores),
# EVAL_SEEDS (default 5: seeds 0-4; rl samples from seed 100000 on, disjoint).
set -euo pipefail

RUN=${1:-experiments/rl}
shift || true
SA=${SPATIALALIGN:-.venv/bin/spatialalign}
THREADS=${THREADS:-1}
PROCS=${PROCS:-$(nproc)}
EVAL_SEEDS=${EVAL_SEEDS:-5}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

source "$(dirname "$0")/stages.sh"  # stage NAME CMD...; $TIMES, $T_START

stage rl          "$SA" rl "$RUN/rl" --model toy -q "$@"
stage eval-base   "$SA" eval "$RUN/eval_base" --model toy --prompts toy-test \
                     --seeds "$EVAL_SEEDS" --workers "$PROCS"
stage eval-rl     "$SA" eval "$RUN/eval_rl" --model toy --prompts toy-test \
                     --seeds "$EVAL_SEEDS" --workers "$PROCS" \
                     --adapter "$RUN/rl/run/pytorch_lora_weights.safetensors"
stage compare     "$SA" compare "$RUN/eval_base" "$RUN/eval_rl" --names base,rl \
                     --out "$RUN/compare"

TOTAL=$(echo "$(date +%s.%N) - $T_START" | bc)
printf 'total\t%.1f\n' "$TOTAL" >> "$TIMES"
echo
cat "$RUN/compare/comparison.md"
echo
echo "sampled training videos: $(tail -1 "$RUN/rl/run/train_log.jsonl" | sed 's/.*"videos": \([0-9.]*\).*/\1/')"
echo "wall seconds per stage ($OMP_NUM_THREADS thread(s) per process, $PROCS eval process(es)):"
column -t "$TIMES"
echo "adapter: $RUN/rl/run/pytorch_lora_weights.safetensors"
