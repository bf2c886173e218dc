#!/usr/bin/env bash
# The toy sweep of issue 10: one `spatialalign train` option changed from the defaults per
# row, trained on the pairs of a finished `scripts/experiment_toy.sh` run and evaluated like
# its aligned model (toy-test x seeds 0-4), then one `compare` of all rows against its base.
#
#   scripts/sweep_toy.sh [EXPERIMENT_DIR=experiments/toy] [JOBS=2]
#
# Each row NAME gets EXPERIMENT_DIR/sweep/NAME/ (a hard-linked copy of train/ without run/,
# so videos, tracks, scores and the latent cache are shared, not recomputed; a row with
# sampling options gets only the prompts and samples, tracks, scores and pairs its own
# TRAIN videos, one process) and
# EXPERIMENT_DIR/sweep/eval_NAME/. Rows already trained and evaluated are skipped (every
# stage resumes). Environment: SPATIALALIGN (default .venv/bin/spatialalign), THREADS (per
# process, default 1), ROWS (space-separated subset of the names below, run in that order),
# TRAIN_FIRST_SEED (a sampling row's TRAIN seeds, as experiment_toy.sh's; default 1000).
set -euo pipefail

EXP=${1:-experiments/toy}
JOBS=${2:-2}
SA=${SPATIALALIGN:-.venv/bin/spatialalign}
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}

# name | pairs options (empty: the experiment's) | train options | sample options (empty:
# the experiment's TRAIN videos)
ROWS_ALL=(
  "beta2||--beta 2"
  "beta5||--beta 5"
  "zo0.1||--lambda-zo 0.1"
  "zo0.5||--lambda-zo 0.5"
  "zo1||--lambda-zo 1"
  "rank32||--lora-rank 32 --lora-alpha 32"
  "rank4||--lora-rank 4 --lora-alpha 4"
  "warmup0||--lr-warmup-steps 0"
  "logitnormal||--timestep-sampling logit-normal"
  "uniform||--timestep-sampling uniform"
  "sharednoise||--shared-noise"
  "cap12|--tau 0.7 --max-per-prompt 12|"
  "cap3|--tau 0.7 --max-per-prompt 3|"
  "invalidlosers|--tau 0.7 --max-per-prompt 6 --invalid-losers|"
  "seed1||--seed 1"
  "seed2||--seed 2"
  "rank32seed1||--lora-rank 32 --lora-alpha 32 --seed 1"
  "rank32seed2||--lora-rank 32 --lora-alpha 32 --seed 2"
  "guidance2|--tau 0.7 --max-per-prompt 6||--guidance 2"
  "guidance4.5|--tau 0.7 --max-per-prompt 6||--guidance 4.5"
  "combined|--tau 0.7 --max-per-prompt 6 --invalid-losers|--lora-rank 32 --lora-alpha 32 --max-steps 1500"
  "combinedseed1|--tau 0.7 --max-per-prompt 6 --invalid-losers|--lora-rank 32 --lora-alpha 32 --max-steps 1500 --seed 1"
  "combinedseed2|--tau 0.7 --max-per-prompt 6 --invalid-losers|--lora-rank 32 --lora-alpha 32 --max-steps 1500 --seed 2"
)

one() {  # one "name|pairs|train|sample"
  local name pairs train sample dir ev
  IFS='|' read -r name pairs train sample <<< "$1"
  dir=$EXP/sweep/$name
  ev=$EXP/sweep/eval_$name
  [[ -f $ev/summary.json ]] && { echo "== $name (done before)"; return; }
  if [[ ! -d $dir ]]; then
    mkdir -p "$EXP/sweep" "$dir.tmp"
    if [[ -n $sample ]]; then
      cp "$EXP/train/prompts.parquet" "$dir.tmp/"
    else
      cp -al "$EXP/train/." "$dir.tmp"
      rm -rf "$dir.tmp/run"
    fi
    mv "$dir.tmp" "$dir"
  fi
  if [[ -n $sample ]]; then  # its own TRAIN videos (every stage resumes)
    # shellcheck disable=SC2086
    { "$SA" sample "$dir" --model toy --split train --seeds 8 \
        --first-seed "${TRAIN_FIRST_SEED:-1000}" --workers 1 $sample &&
      "$SA" track "$dir" --detector toy --workers 1 &&
      "$SA" score-batch "$dir" -q; } > "$dir.sample.log" 2>&1
  fi
  # shellcheck disable=SC2086
  [[ -n $pairs ]] && "$SA" pairs "$dir" $pairs > "$dir.pairs.log" 2>&1
  # shellcheck disable=SC2086
  [[ -f $dir/run/pytorch_lora_weights.safetensors ]] ||
    "$SA" train "$dir" --model toy -q $train > "$dir.train.log" 2>&1
  # one process per row: JOBS rows already share the cores
  "$SA" eval "$ev" --model toy --prompts toy-test --seeds 5 --workers 1 \
    --adapter "$dir/run/pytorch_lora_weights.safetensors" > "$ev.log" 2>&1
  echo "== $name done"
}
export -f one
export EXP SA

if [[ -n ${ROWS:-} ]]; then  # in the order given
  sel=()
  for n in $ROWS; do
    found=
    for r in "${ROWS_ALL[@]}"; do [[ ${r%%|*} == "$n" ]] && { sel+=("$r"); found=1; }; done
    [[ -n $found ]] || { echo "sweep_toy.sh: no row named $n" >&2; exit 2; }
  done
else
  sel=("${ROWS_ALL[@]}")
fi
printf '%s\n' "${sel[@]}" | xargs -P "$JOBS" -I{} bash -c 'one "$@"' _ {}

names=base,default
dirs=("$EXP/eval_base" "$EXP/eval_aligned")
for r in "${sel[@]}"; do
  n=${r%%|*}
  [[ -f $EXP/sweep/eval_$n/summary.json ]] && { names+=",$n"; dirs+=("$EXP/sweep/eval_$n"); }
done
"$SA" compare "${dirs[@]}" --names "$names" --out "$EXP/sweep/compare"
cat "$EXP/sweep/compare/comparison.md"
