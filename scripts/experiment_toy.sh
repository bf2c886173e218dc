#!/usr/bin/env bash
# The toy experiment (issue 10): align a shipped toy T2V model with DPO+ZO through the CLI
# and compare it with the base model on its world's TEST prompts.
#
#   [WORLD=toy|hard] scripts/experiment_toy.sh [RUN_DIR] [extra `spatialalign train` options...]
#
# WORLD=toy (default): the toy model (`--model toy`) and the toy split; WORLD=hard (issue 22):
# the hard world's model (`--model toy-hard`), the hard split (`prompts --world hard`: 600
# TRAIN + 120 TEST, all twelve DSR types) and `toy-hard-test`, RUN_DIR default
# experiments/toy-hard. Below, the toy world's numbers; the hard world's are 600 TRAIN prompts,
# 4,800 TRAIN clips.
#
# RUN_DIR (default experiments/toy, git-ignored) receives
#   train/        prompts.parquet (500 TRAIN + 120 TEST, seed 0), samples/ (TRAIN x seeds
#                 1000-1007, guidance 3), tracks, scores, pairs.parquet (tau 0.7, <= 6 per prompt),
#                 cache/ and run/ (the adapter: run/pytorch_lora_weights.safetensors)
#   eval_base/    the shipped model on its TEST prompts x seeds 0-4 (600 clips)
#   eval_aligned/ the same with the adapter
#   eval_bo4/, eval_bo8/  with BEST_OF="4 8" (WORLD=hard's default): the base model's best of 4
#                 / 8 candidates per slot (2,400 / 4,800 sampled videos; eval_bo8 starts from a
#                 copy of eval_bo4, so it samples only the 2,400 new candidates). Best-of-8 on
#                 120 x 5 slots samples as many videos (4,800) as the hard world's TRAIN set
#                 (600 x 8): the rows compare selection and training at equal sampled videos.
#   compare/      comparison.md / .json / correctness_curves.png (Correctness@0.7 with a 95%
#                 prompt-bootstrap interval and the paired delta vs base; then Correctness@0.7
#                 (validness) per DSR type and the invalid videos per rejection reason, per run)
#   timings.tsv   wall seconds per stage
# Every stage is resumable: a rerun on the same RUN_DIR redoes only what changed.
# Environment: WORLD (toy or hard, above), BEST_OF (best-of-N evaluations of the base model,
# ascending, e.g. "4 8"; default none for toy, "4 8" for hard; "" for none),
# SPATIALALIGN (the CLI, default .venv/bin/spatialalign), THREADS (torch/OpenMP
# threads per process, default 1), PROCS (processes that share sampling and tracking,
# `--workers`, default: the number of cores),
# EVAL_SEEDS (default 5: seeds 0-4), TRAIN_FIRST_SEED (default 1000: the TRAIN videos come from
# seeds TRAIN_FIRST_SEED.. , disjoint from the evaluation's 0..EVAL_SEEDS-1; docs/RESULTS.md's
# numbers and the shipped adapter were made with TRAIN seeds 0-7, TRAIN_FIRST_SEED=0; a RUN_DIR
# made then keeps those videos in its manifest beside new ones: use a new RUN_DIR).
# With PROCS > 1 the base model's evaluations (eval_base, then best-of-N, in one process) run
# on a core of their own beside the training (which is one process) instead of after it; their
# log is RUN/base_evals.log. The results do not depend on PROCS: every video is a function of
# its prompt and seed, and training is one process. Sampling uses the model's default steps
# (toy 20, toy-hard 10) and guidance 3.
set -euo pipefail

WORLD=${WORLD:-toy}
case $WORLD in
  toy)  MODEL=toy;      TEST=toy-test;      DEFAULT_RUN=experiments/toy;      DEFAULT_BEST_OF="" ;;
  hard) MODEL=toy-hard; TEST=toy-hard-test; DEFAULT_RUN=experiments/toy-hard; DEFAULT_BEST_OF="4 8" ;;
  *) echo "WORLD must be toy or hard, got '$WORLD'" >&2; exit 2 ;;
esac
RUN=${1:-$DEFAULT_RUN}
shift || true
BEST_OF=${BEST_OF-$DEFAULT_BEST_OF}
SA=${SPATIALALIGN:-.venv/bin/spatialalign}
THREADS=${THREADS:-1}
PROCS=${PROCS:-$(nproc)}
EVAL_SEEDS=${EVAL_SEEDS:-5}
TRAIN_FIRST_SEED=${TRAIN_FIRST_SEED:-1000}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

TR=$RUN/train
source "$(dirname "$0")/stages.sh"  # stage NAME CMD...; $TIMES, $T_START

eval_base() {  # WORKERS: processes
  "$SA" eval "$RUN/eval_base" --model "$MODEL" --prompts "$TEST" --seeds "$EVAL_SEEDS" \
    --workers "$1"
}
# N WORKERS: the base model's best of N, starting from a copy of the previous (smaller) N's
# candidates ($PREV), so it samples only the new ones
eval_best_of() {
  local n=$1
  if [[ -n $PREV && ! -e $RUN/eval_bo$n ]]; then
    cp -a "$RUN/eval_bo$PREV" "$RUN/eval_bo$n"
  fi
  "$SA" eval "$RUN/eval_bo$n" --model "$MODEL" --prompts "$TEST" --seeds "$EVAL_SEEDS" \
    --workers "$2" --best-of "$n"
  PREV=$n
}
base_evals() {  # every evaluation of the base model, one after the other in one process
  eval_base 1
  PREV=
  for N in $BEST_OF; do eval_best_of "$N" 1; done
}
train_and_base_evals() {  # the base model's evaluations on a second core while training runs on one
  base_evals > "$RUN/base_evals.log" 2>&1 &
  local pid=$!
  "$SA" train "$TR" --model "$MODEL" --loss dpo+zo -q "$@"
  local t0; t0=$(date +%s.%N)
  wait "$pid" || { tail -20 "$RUN/base_evals.log"; return 1; }
  printf 'training done; waited %.0f s more for the base evaluations\n' \
    "$(echo "$(date +%s.%N) - $t0" | bc)"
  grep '^eval: ' "$RUN/base_evals.log"
}

# the world's split (its defaults): toy 500 TRAIN + 120 TEST, hard 600 + 120; seed 0
stage prompts     "$SA" prompts "$TR" --world "$WORLD"
stage sample      "$SA" sample "$TR" --model "$MODEL" --split train --seeds 8 \
                     --first-seed "$TRAIN_FIRST_SEED" --guidance 3 --workers "$PROCS"
stage track       "$SA" track "$TR" --detector toy --workers "$PROCS"
stage score-batch "$SA" score-batch "$TR" -q
stage pairs       "$SA" pairs "$TR" --tau 0.7 --max-per-prompt 6
if (( PROCS > 1 )); then
  stage train+base-evals train_and_base_evals "$@"
else
  stage train     "$SA" train "$TR" --model "$MODEL" --loss dpo+zo -q "$@"
  stage eval-base eval_base "$PROCS"
  PREV=
  for N in $BEST_OF; do stage "eval-best-of-$N" eval_best_of "$N" "$PROCS"; done
fi
stage eval-aligned "$SA" eval "$RUN/eval_aligned" --model "$MODEL" --prompts "$TEST" \
                     --seeds "$EVAL_SEEDS" --workers "$PROCS" \
                     --adapter "$TR/run/pytorch_lora_weights.safetensors"
RUNS=("$RUN/eval_base" "$RUN/eval_aligned")
NAMES=base,aligned
for N in $BEST_OF; do
  RUNS+=("$RUN/eval_bo$N")
  NAMES+=",best-of-$N"
done
stage compare     "$SA" compare "${RUNS[@]}" --names "$NAMES" --out "$RUN/compare"

TOTAL=$(echo "$(date +%s.%N) - $T_START" | bc)
printf 'total\t%.1f\n' "$TOTAL" >> "$TIMES"
echo
cat "$RUN/compare/comparison.md"
echo
echo "world $WORLD (--model $MODEL, $TEST); wall seconds per stage ($OMP_NUM_THREADS thread(s) per process, $PROCS process(es)):"
column -t "$TIMES"
echo "adapter: $TR/run/pytorch_lora_weights.safetensors"
