#!/usr/bin/env bash
# The SLAKE recipe ablation of docs/results.md sections 5-6 (issue 19): one change per row against the old
# default (F-T-T, 224 px, 10 epochs, beam search), each row trained on SLAKE-EN train, scored on validate by beam
# search (the run's own eval) and by answer ranking (`mile eval --inference rank`), probed, and its record (no
# weights) kept under docs/recipe/runs/NAME. A row whose record is kept is skipped, so the script resumes across
# machines; split the rows between two single-thread lanes on a 2-core machine:
#   OMP_NUM_THREADS=1 scripts/recipe_ablation.sh vit2-s2 vit4-s1 &
#   OMP_NUM_THREADS=1 scripts/recipe_ablation.sh rad-vit2-s42 base-ftt-s1 base-ftt-s2 &
# With no arguments it runs every row in order. `scripts/recipe_ablation.sh --list` prints the rows.
# Times (one thread beside another lane, bf16): a frozen-ViT row ~27 min, a top-2-blocks row ~60-75 min, plus ~8 min
# of ranking each.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/study_lib.sh
command -v mile > /dev/null || { echo "mile is not on PATH: activate the environment (. .venv/bin/activate)" >&2; exit 1; }
records=docs/recipe/runs
slake=configs/slake/mile-small.yaml
rad=configs/vqa_rad/mile-small.yaml
old=("plan.vision=frozen" "eval.inference=generate")   # the recipe before issue 19 (configs now differ)
vit2=("plan.vision={method: blocks, layers: [-2, -1]}" "eval.inference=generate")
vit4=("plan.vision={method: blocks, layers: [-4, -3, -2, -1]}" "eval.inference=generate")
# F-T-T from a VQA-RAD run's export: base-ftt-* from rad-vit2-s42, base0-ftt-* from rad-default-s42 (frozen ViT)
from() { echo "model.init.kind=mile" "model.init.path=runs/recipe/$1-export" "model.init.vision=null" \
  "model.init.text=null"; }

# row NAME: the config and overrides of that row (prints them; an unknown name is an error)
row() {
  case $1 in
    default-s1 | default-s2) args=("$slake" "${old[@]}") ;;
    px336-s1) args=("$slake" "${old[@]}" model.image_size=336) ;;
    vit2-s1 | vit2-s2) args=("$slake" "${vit2[@]}") ;;
    vit4-s1) args=("$slake" "${vit4[@]}") ;;
    vit-full-ld75-s1) args=("$slake" plan.vision=full train.layer_decay=0.75 eval.inference=generate) ;;
    rad-default-s42 | rad-default-s1) args=("$rad" "${old[@]}") ;;
    rad-vit2-s42 | rad-vit2-s1) args=("$rad" "${vit2[@]}") ;;
    base-ftt-s1 | base-ftt-s2) args=("$slake" "${old[@]}" $(from rad-vit2-s42)) ;;
    base0-ftt-s1 | base0-ftt-s2) args=("$slake" "${old[@]}" $(from rad-default-s42)) ;;
    *) echo "unknown row $1; rows: $(rows)" >&2; return 1 ;;
  esac
  args+=("train.seed=${1##*-s}")
}

rows() {
  echo default-s1 default-s2 px336-s1 vit2-s1 vit2-s2 vit4-s1 vit-full-ld75-s1 rad-default-s42 rad-default-s1 \
    rad-vit2-s42 rad-vit2-s1 base-ftt-s1 base-ftt-s2 base0-ftt-s1 base0-ftt-s2
}

# ensure_base BASE: the export a base row starts from (the VQA-RAD row BASE). On a fresh machine its kept
# record holds no weights, so it is trained again (its record stays as kept).
ensure_base() {
  [ ! -f "runs/recipe/$1-export/model.safetensors" ] || return 0
  if [ ! -d "runs/recipe/$1/weights" ]; then
    if kept "$1"; then
      local -a args
      row "$1"
      mile train "${args[@]}" run.output_dir=runs/recipe "run.name=$1"
    else
      run_row "$1"
    fi
  fi
  mile export "runs/recipe/$1" "runs/recipe/$1-export"
}

# run_row NAME: train, rank, probe and keep the row unless its record is kept
run_row() {
  local name=$1 run=runs/recipe/$1
  local -a args   # set by row (bash scoping); local, so that the base's row below does not overwrite ours
  kept "$name" && { echo "kept: $name"; return 0; }
  row "$name"
  [[ $name != base-ftt-* ]] || ensure_base rad-vit2-s42
  [[ $name != base0-ftt-* ]] || ensure_base rad-default-s42
  echo "=== $(date +%T) train $name: ${args[*]}"
  mile train "${args[@]}" run.output_dir=runs/recipe "run.name=$name"
  mile eval "$run" --inference rank
  mile probe "$run" --limit 256 || true   # exit 1 means the model ignores an input: recorded, not fatal
  keep "$run" "$name"
}

if [ "${1:-}" = --list ]; then
  rows
  exit 0
fi
for name in ${@:-$(rows)}; do
  run_row "$name"
done
