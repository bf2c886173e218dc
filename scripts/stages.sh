# Sourced by the experiment scripts: `stage NAME CMD...` runs CMD, prints and records its wall
# seconds in $TIMES (RUN/timings.tsv, started here), and T_START is the experiment's start.
TIMES=$RUN/timings.tsv
mkdir -p "$RUN"
printf 'stage\tseconds\n' > "$TIMES"
T_START=$(date +%s.%N)

stage() {  # stage NAME CMD...: run, time, record
  local name=$1; shift
  echo "== [$name] $*"
  local t0; t0=$(date +%s.%N)
  "$@"
  local dt; dt=$(echo "$(date +%s.%N) - $t0" | bc)
  printf '%s\t%.1f\n' "$name" "$dt" >> "$TIMES"
  printf '== [%s] %.1f s\n' "$name" "$dt"
}
