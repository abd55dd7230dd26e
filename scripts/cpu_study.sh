#!/usr/bin/env bash
# The CPU-scale study of docs/results.md, start to finish (resumable: run it again after an interruption).
# Runs from the repository root with ../shared beside it. Hours on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
# 1. base: mile-small fully fine-tuned on VQA-RAD train+test (our stand-in for MISS pre-training)
mile train configs/study/base-vqa-rad.yaml
[ -f runs/study/base-export/model.safetensors ] || mile export runs/study/base runs/study/base-export
# 2. instruction workflows on SLAKE English (the converged model of (b) is the plain run's export)
[ -f runs/instruct/slake-train.json ] || mile instruct build --source slake:train=../shared/data/slake --out runs/instruct/slake-train.json
mile train configs/instruct/plain.yaml
[ -f runs/instruct/plain-export/model.safetensors ] || mile export runs/instruct/plain runs/instruct/plain-export
mile train configs/instruct/b-further.yaml
mile train configs/instruct/a-direct.yaml
# 3. the grid of plans on SLAKE English, then the report
mile sweep configs/sweeps/mile-small/study.yaml || true   # failed runs are recorded; the report lists them
mile report runs/study/slake --out docs/study
