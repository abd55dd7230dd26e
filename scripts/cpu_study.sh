#!/usr/bin/env bash
# The CPU study of docs/results.md sections 3-4 (issue 20) in the recipe's regime (224 px, 10 epochs, bf16,
# answers ranked and generated), start to finish, as named steps:
#   base               mile-small trained on VQA-RAD train (configs/study/base-vqa-rad.yaml), probed, exported
#   F-T-T-s1 ...       one run of configs/sweeps/mile-small/study.yaml (its run name without the hash)
#   a-direct-s1 ...    the instruction workflows (a) direct, (b) b-further (from F-T-T of that seed), (c) c-mixed
# Every step trains, adds the answers of the other inference mode (`mile eval --inference generate`), probes,
# and keeps the run's record (no weights) under docs/study/runs/ (scripts/study_lib.sh); a kept step is skipped,
# so the study resumes across machines, and only runs whose weights a later step needs are trained again there.
#   scripts/cpu_study.sh                   every step, in order (cheap frozen-ViT runs first)
#   scripts/cpu_study.sh --lane 1/2        every second step from the first; `--lane 2/2` in a second shell
#   scripts/cpu_study.sh STEP...           these steps;  --list: the steps with their estimated minutes
#   scripts/cpu_study.sh --time            CPU time of the kept records, and the estimate for the rest
#   scripts/cpu_study.sh --report          the reports (docs/study) from the kept records
# Two lanes on a 2-core machine: OMP_NUM_THREADS=1 in each. STUDY_COMMIT=1 commits each record as it is kept.
# Estimated total: about 110 h of single-thread training and evaluation (`--list`), ~2.5 days in two lanes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/study_lib.sh
command -v mile > /dev/null || { echo "mile is not on PATH: activate the environment (. .venv/bin/activate)" >&2; exit 1; }

base=runs/study/base

# study_base: the base trained, checked and exported once; lanes take turns through a lock
study_base() {
  mkdir -p runs/study
  (
    flock 9
    [ -f $base-export/model.safetensors ] && exit 0
    mile train configs/study/base-vqa-rad.yaml
    # a base that answers from the answer prior would make every run below measure nothing: stop there
    mile probe $base --limit 256 --check || { echo "the base ignores its inputs (see docs/results.md)" >&2; exit 1; }
    mile export $base $base-export
    sha256sum $base-export/model.safetensors > $base/export.sha256
    if [ -f $records/study/base/export.sha256 ] && ! cmp -s $base/export.sha256 $records/study/base/export.sha256; then
      echo "warning: this base differs from the one the kept records were trained from ($records/study/base)" >&2
    fi
    kept study/base || evaluate_and_keep $base
  ) 9> runs/study/.base.lock
}

# grid_runs: the study sweep's run names, in the sweep's order
grid_runs() {
  mile sweep "$study" --dry-run 2> /dev/null | awk '$1 ~ /^[0-9]+$/ { print $2 }'
}

# steps: every step in order: base, the frozen-ViT runs of seeds 1-2, the instruction workflows of those seeds,
# the same for seed 3, then the runs that train the ViT. Workflow (b) of a seed follows that seed's F-T-T run.
steps() {
  local names seed
  names=$(grid_runs | sed 's/-[0-9a-f]\{8\}$//')
  echo base
  grep '^F-.*-s[12]$' <<< "$names" || true
  for seed in 1 2; do echo "a-direct-s$seed b-further-s$seed c-mixed-s$seed" | tr ' ' '\n'; done
  grep '^F-.*-s3$' <<< "$names" || true
  echo a-direct-s3 b-further-s3 c-mixed-s3 | tr ' ' '\n'
  grep -v '^F-' <<< "$names" || true
}

# minutes STEP: the estimated minutes of a step on one thread beside another lane (train + both evals + probe)
minutes() {
  case $1 in
    base) echo 35 ;;
    F-T-LoRA-* | F-T-T-* | F-Attn-* | F-FFN-*) echo 50 ;;
    F-*) echo 45 ;;
    a-direct-*) echo 55 ;;
    b-further-*) echo 15 ;;
    c-mixed-*) echo 100 ;;
    LoRA-LoRA-LoRA-*) echo 200 ;;
    *) echo 230 ;;   # the ViT fully trained at 224 px
  esac
}

# grid_step STEM: that sweep run unless kept; an F-T-T run is also kept as the plain row of the workflows
grid_step() {
  sweep_kept "$1" || return 1
  [[ $1 != F-T-T-* ]] || kept "instruct/plain-${1##*-}" || keep "runs/study/slake/$(sweep_run "$1")" "instruct/plain-${1##*-}"
}

# instruct_step NAME: a workflow of one seed, unless kept
instruct_step() {
  local name=$1 seed=${1##*-s} plain
  kept "instruct/$name" && { echo "kept: $name"; return 0; }
  [ -f runs/instruct/slake-train.json ] ||
    mile instruct build --source slake:train=../shared/data/slake --out runs/instruct/slake-train.json
  case $name in
    a-direct-*) train_kept "$name" configs/instruct/a-direct.yaml "train.seed=$seed" ;;
    c-mixed-*) train_kept "$name" configs/instruct/c-mixed.yaml "train.seed=$seed" ;;
    b-further-*)
      # the converged model is F-T-T of that seed; on a fresh machine its kept record holds no weights, so it
      # is trained again (bit-identical on the same CPU kind: bf16 kernels differ between AMX and AVX512_BF16
      # machines; env.json names the CPU; a lane training it already holds the run's lock)
      plain=runs/study/slake/$(sweep_run "F-T-T-s$seed")
      [ -d "$plain/weights" ] || mile sweep "$study" --only "${plain##*/}" || return 1
      further "$seed" "$plain"
      ;;
  esac
}

# run_steps STEP...: the base first (every step needs it; a failure there stops the study), then each step; a
# failed step is reported at the end and the others go on
run_steps() {
  local name failed=()
  study_base
  for name in "$@"; do
    case $name in
      base) ;;
      a-direct-s* | b-further-s* | c-mixed-s*) instruct_step "$name" || failed+=("$name") ;;
      *) grid_step "$name" || failed+=("$name") ;;
    esac
  done
  [ ${#failed[@]} = 0 ] || { echo "failed steps: ${failed[*]}" >&2; return 1; }
}

# cpu_time: the training time the kept records took (train_stats.json: wall s x threads) and the estimate for
# the steps not kept yet
cpu_time() {
  local done=0 todo=0 name
  for name in $(steps); do
    case $name in
      base) kept study/base ;;
      a-direct-* | b-further-* | c-mixed-*) kept "instruct/$name" ;;
      *) kept "study/slake/$name-*" ;;
    esac && done=$((done + 1)) || todo=$((todo + $(minutes "$name")))
  done
  python - "$records" "$done" "$todo" << 'EOF'
import json, sys
from pathlib import Path
records, done, todo = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seconds = 0.0
for stats in records.glob("**/train_stats.json"):
    if stats.parent.name.startswith("plain-"):  # a copy of the F-T-T run of that seed, counted there
        continue
    env = stats.with_name("env.json")
    threads = json.loads(env.read_text()).get("cpu_threads", 1) if env.exists() else 1
    seconds += json.loads(stats.read_text())["wall_s"] * threads
print(f"kept: {done} steps, {seconds / 3600:.1f} CPU hours of training; not kept yet: ~{todo / 60:.1f} h estimated")
EOF
}

report() {
  mile report $records/study/slake --out docs/study --html docs/study/report.html --images none   # no SLAKE images
  mile report $records/instruct --out docs/study/instruct --label dir   # rows named plain-s1, a-direct-s1, ...
}

case ${1:-} in
  --list) for name in $(steps); do printf '%-28s %4s min\n' "$name" "$(minutes "$name")"; done ;;
  --time) cpu_time ;;
  --report) report ;;
  --lane)
    [[ ${2:-} =~ ^([0-9]+)/([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= BASH_REMATCH[2])) ||
      { echo "--lane wants i/n with 1 <= i <= n, e.g. --lane 1/2" >&2; exit 2; }
    run_steps $(steps | grep -vx base | awk -v i="${BASH_REMATCH[1]}" -v n="${BASH_REMATCH[2]}" 'NR % n == i % n')
    ;;
  "")
    run_steps $(steps)
    report
    cpu_time
    ;;
  -*) echo "unknown option $1; see the header of $0" >&2; exit 2 ;;
  *) run_steps "$@" ;;
esac
