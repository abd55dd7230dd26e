#!/usr/bin/env bash
# The CPU-scale study of docs/results.md, start to finish (resumable: run it again after an interruption; done
# runs are skipped, interrupted ones continue from their last checkpoint). Runs from the repository root with
# ../shared beside it. Hours on a 2-core CPU; the cheapest informative runs come first.
set -euo pipefail
cd "$(dirname "$0")/.."
study=configs/sweeps/mile-small/study.yaml
# 1. base: mile-small fully fine-tuned on VQA-RAD train+test (our stand-in for MISS pre-training)
mile train configs/study/base-vqa-rad.yaml
[ -f runs/study/base-export/model.safetensors ] || mile export runs/study/base runs/study/base-export
# 2. the grid on SLAKE English: frozen-ViT plans (cheap: cached image features), then full fine-tuning
mile sweep "$study" --only 'F-*' || true   # failed runs are recorded in their status.json and in the report
mile sweep "$study" --only T-T-T
# 3. instruction workflows. The grid's T-T-T run is the converged plain-SLAKE model of workflow (b): it has
#    exactly the config of configs/instruct/plain.yaml (a test checks this), so it is not trained twice.
plain=$(ls -d runs/study/slake/T-T-T-*/)
[ -f runs/instruct/plain-export/model.safetensors ] || mile export "$plain" runs/instruct/plain-export
[ -f runs/instruct/slake-train.json ] || mile instruct build --source slake:train=../shared/data/slake --out runs/instruct/slake-train.json
mile train configs/instruct/b-further.yaml
mile train configs/instruct/a-direct.yaml
# 4. the rest of the grid, then the report
mile sweep "$study" || true
mile report runs/study/slake --out docs/study
