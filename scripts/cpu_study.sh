#!/usr/bin/env bash
# The CPU-scale study of docs/results.md, start to finish (resumable: run it again after an interruption; done
# runs are skipped, interrupted ones continue from their last checkpoint). Runs from the repository root with
# ../shared beside it. Hours on a 2-core CPU; the cheapest informative runs come first.
set -euo pipefail
cd "$(dirname "$0")/.."
study=configs/sweeps/mile-small/study.yaml
# 1. base: mile-small fully fine-tuned on VQA-RAD train+test (our stand-in for MISS pre-training)
mile train configs/study/base-vqa-rad.yaml
# a base that answers from the answer prior would make every run below measure nothing: stop there
mile probe runs/study/base --limit 256 --check || { echo "the base ignores its inputs (see docs/results.md)"; exit 1; }
[ -f runs/study/base-export/model.safetensors ] || mile export runs/study/base runs/study/base-export
# 2. instruction workflows on SLAKE English, all F-T-T (frozen ViT, cached features) so only the data differs.
#    The grid's F-T-T run is the plain baseline and the converged model of (b): it has exactly the config of
#    configs/instruct/plain.yaml (a test checks this), so it is not trained twice.
mile sweep "$study" --only F-T-T
plain=$(ls -d runs/study/slake/F-T-T-*/)
[ -f runs/instruct/plain-export/model.safetensors ] || mile export "$plain" runs/instruct/plain-export
[ -f runs/instruct/slake-train.json ] || mile instruct build --source slake:train=../shared/data/slake --out runs/instruct/slake-train.json
mile train configs/instruct/b-further.yaml
mile train configs/instruct/a-direct.yaml
# 3. the grid on SLAKE English: full fine-tuning first (the paper's reference row and its frozen-ViT question),
#    then the other frozen-ViT plans, then the rest
mile sweep "$study" --only T-T-T || true   # failed runs are recorded in their status.json and in the report
mile sweep "$study" --only 'F-*' || true
mile train configs/instruct/c-mixed.yaml
mile sweep "$study" || true
# 4. what each run takes from its inputs (the report's Image gap / Question gap columns), then the report
for run in runs/study/slake/*/ runs/instruct/*/; do
  [ -f "$run/status.json" ] && grep -q '"done"' "$run/status.json" || continue
  [ -f "$run/eval/validate/probe.json" ] || mile probe "$run" --limit 256 || true
done
mile report runs/study/slake --out docs/study
