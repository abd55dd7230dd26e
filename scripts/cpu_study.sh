#!/usr/bin/env bash
# The CPU-scale study of docs/results.md, start to finish. Runs from the repository root with ../shared beside it;
# hours on a 2-core CPU, the cheapest informative runs first. Resumable twice over: an interrupted run continues
# from its last checkpoint, and a finished run's record is kept in git under docs/study/runs/ (scripts/study_lib.sh)
# so that a fresh machine skips it; only the base is trained again there.
#   OMP_NUM_THREADS=1 lets two copies of a step list share a 2-core machine (docs/results.md section 4).
#   STUDY_COMMIT=1 commits each record as it is kept, for a machine that may go away before anyone commits.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/study_lib.sh

# 1. base: mile-small fully fine-tuned on VQA-RAD train+test (our stand-in for MISS pre-training)
mile train configs/study/base-vqa-rad.yaml
# a base that answers from the answer prior would make every run below measure nothing: stop there
mile probe runs/study/base --limit 256 --check || { echo "the base ignores its inputs (see docs/results.md)"; exit 1; }
[ -f runs/study/base-export/model.safetensors ] || mile export runs/study/base runs/study/base-export
sha256sum runs/study/base-export/model.safetensors > runs/study/base/export.sha256
if [ -f $records/study/base/export.sha256 ] && ! cmp -s runs/study/base/export.sha256 $records/study/base/export.sha256; then
  echo "warning: this base differs from the one the kept records were trained from ($records/study/base)" >&2
fi
kept study/base || keep runs/study/base

# 2. instruction workflows on SLAKE English, all F-T-T (frozen ViT, cached features) so only the data differs;
#    seeds 1-3 of each. The grid's F-T-T run is the plain baseline of seed 1 (same config as
#    configs/instruct/plain.yaml, a test checks it), so it is not trained twice.
plan_kept F-T-T
f_t_t=runs/study/slake/$(run_name F-T-T)
kept instruct/plain || keep "$f_t_t" instruct/plain
[ -f runs/instruct/slake-train.json ] || mile instruct build --source slake:train=../shared/data/slake --out runs/instruct/slake-train.json
train_kept a-direct configs/instruct/a-direct.yaml
for seed in 2 3; do
  train_kept "plain-s$seed" configs/instruct/plain.yaml "train.seed=$seed"
  train_kept "a-direct-s$seed" configs/instruct/a-direct.yaml "train.seed=$seed"
done
# (b) needs the plain run's weights: on a fresh machine a kept plain run is trained again for it (deterministic)
if ! kept instruct/b-further; then
  [ -d "$f_t_t" ] || mile sweep "$study" --only F-T-T
  further 1 "$f_t_t"
fi
for seed in 2 3; do
  kept "instruct/b-further-s$seed" && continue
  [ -f "runs/instruct/plain-s$seed/status.json" ] || mile train configs/instruct/plain.yaml "train.seed=$seed" "run.name=plain-s$seed"
  further "$seed" "runs/instruct/plain-s$seed"
done
train_kept c-mixed configs/instruct/c-mixed.yaml

# 3. the grid on SLAKE English: the frozen-ViT plans, full fine-tuning (the paper's reference row), the rest
for plan in F-LoRA-LoRA F-IA3-IA3 F-PTV2-PTV2 F-Prefix-Prefix F-T-LoRA T-T-T T-T-LoRA T-T-Prefix \
  LoRA-LoRA-LoRA T-LoRA-LoRA T-T-IA3 T-T-PTV2 T-T-LoRA_r4; do
  plan_kept "$plan" || true
done

# 3b. seed 2 of the two baselines behind the frozen-ViT comparison (T-T-T against F-T-T); the report pools seeds
for plan in T-T-T F-T-T; do
  plan_kept "$plan" configs/sweeps/mile-small/study-seeds.yaml || true
done

# 4. the reports, from the kept records
mile report $records/study/slake --out docs/study --html docs/study/report.html --images none   # no SLAKE images in git
mile report $records/instruct --out docs/study/instruct --label dir   # rows named plain, a-direct, ...
