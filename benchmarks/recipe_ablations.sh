#!/usr/bin/env bash
# The README's "What was tried": architectures/experiments/recipe/ holds the first
# recipe (v1_strong_augmentation.json) and v1 with one setting changed in each other
# file, every one trained like the shipped run.
# Resumable: finished runs are skipped, an interrupted one continues (--resume).
# Runs go to runs/experiments/ (not committed). Usage:
#   bash benchmarks/recipe_ablations.sh ../shared/data/fruits-360-77class > ablations.log 2>&1 &
set -u
data=${1:?usage: recipe_ablations.sh DATA_DIR}
cd "$(dirname "$0")/.."
files=(architectures/experiments/recipe/*.json)
for index in "${!files[@]}"; do
  file=${files[$index]}
  name=$(basename "$file" .json)
  run=runs/experiments/recipe-$name
  if [ -f "$run/model.keras" ]; then echo "$name: finished, skipped"; continue; fi
  resume=()
  [ -f "$run/run.json" ] && resume=(--resume)
  echo "$name ($((index + 1))/${#files[@]}): $(date -Is); a run takes about 12 minutes on 2 cores"
  fruitkeras train "$file" --data "$data" --run-dir "$run" "${resume[@]}" --quiet || exit $?
done
for file in "${files[@]}"; do
  run=runs/experiments/recipe-$(basename "$file" .json)
  tail -n 1 "$run/history.csv" | awk -F, -v n="$(basename "$file" .json)" '{print n": last epoch " $0}'
done
