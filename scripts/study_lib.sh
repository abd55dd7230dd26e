# Steps of the CPU study, sourced by scripts/cpu_study.sh (and by anyone splitting the study into parallel lanes).
#
# Run directories (weights, checkpoints) live under runs/, which git ignores and a fresh machine does not have. A
# finished run's *record* (config, status, params, train stats and log, metrics, predictions, probe) is small and
# is kept in git under docs/study/runs/, mirroring runs/. A step whose record is kept is not run again, so the
# study resumes across machines: only the base is retrained on a fresh one (its record holds the sha256 of its
# export, to check that it came out the same).
records=docs/study/runs
study=configs/sweeps/mile-small/study.yaml

# keep RUN_DIR [AS]: copy the run's record (everything but checkpoints/, weights/, best/, tb/ and the disk reserve)
# to $records/AS
# (default: its path under runs/)
keep() {
  local run=${1%/}
  local dest=$records/${2:-${run#runs/}}
  rm -rf "$dest" && mkdir -p "$dest"
  tar -C "$run" -cf - --exclude=./checkpoints --exclude=./weights --exclude=./best --exclude=./tb --exclude=./.reserve . |
    tar -C "$dest" -xf -
  [ -z "${STUDY_COMMIT:-}" ] || commit_record "$dest"
}

# commit_record DIR: commit that record alone (other staged changes stay staged), for lanes that may be cut off
# before anyone commits by hand. Lanes take turns through a lock; a busy index is retried.
commit_record() {
  local try
  for try in 1 2 3 4 5; do
    (
      flock 8
      git add -- "$1" && git commit -q -m "study record: ${1#$records/}" --only -- "$1"
    ) 8> "$(git rev-parse --git-dir)/study-commit.lock" && return 0
    sleep 5
  done
  echo "warning: could not commit $1" >&2
}

# kept GLOB: is a finished run's record kept? (GLOB relative to $records, e.g. 'study/slake/F-T-T-*')
kept() {
  local dir
  for dir in $records/$1; do
    [ -f "$dir/status.json" ] && grep -q '"done"' "$dir/status.json" && return 0
  done
  return 1
}

# both_modes RUN_DIR: the answers of the inference mode the run's config did not use too (eval/<mode>/<split>), so
# that every row reports ranked and generated accuracy side by side
both_modes() {
  local run=${1%/} other=generate
  grep -q '"done"' "$run/status.json" || return 0
  ! grep -q 'inference: generate' "$run/config.yaml" || other=rank
  ls "$run"/eval/$other/*/metrics.json > /dev/null 2>&1 || mile eval "$run" --inference $other
}

# evaluate_and_keep RUN_DIR: both inference modes, what the run takes from image and question
# (eval/<split>/probe.json), then keep it
evaluate_and_keep() {
  local run=${1%/}
  grep -q '"done"' "$run/status.json" || { echo "$run did not finish: not kept"; return 1; }
  both_modes "$run"
  ls "$run"/eval/*/probe.json > /dev/null 2>&1 || mile probe "$run" --limit 256 || true
  keep "$run"
}

# sweep_run STEM [SWEEP]: the name of the run STEM-<hash> (e.g. F-T-T-s1) of SWEEP (default: the study's), as
# `mile sweep --dry-run` lists it; exact, so that T-T-LoRA-s1 does not find T-T-LoRA_r4-s1
sweep_run() {
  mile sweep "${2:-$study}" --dry-run 2> /dev/null |
    awk -v stem="$1" '$1 ~ /^[0-9]+$/ && $2 == stem "-" substr($2, length(stem) + 2) && length($2) == length(stem) + 9 { print $2; exit }'
}

# sweep_kept STEM [SWEEP]: SWEEP's run STEM (default sweep: the study's), evaluated and kept, unless its record is kept
sweep_kept() {
  local sweep=${2:-$study} name
  name=$(sweep_run "$1" "$sweep")
  [ -n "$name" ] || { echo "no run $1 in $sweep" >&2; return 1; }
  kept "study/slake/$name" && { echo "kept: $name"; return 0; }
  echo "=== $(date +%T) sweep $name"
  mile sweep "$sweep" --only "$name"   # a failure is recorded in the run's status.json and in the report
  evaluate_and_keep "runs/study/slake/$name"
}

# train_kept NAME CONFIG [OVERRIDES...]: train runs/instruct/NAME unless its record is kept
train_kept() {
  local name=$1
  shift
  kept "instruct/$name" && { echo "kept: $name"; return 0; }
  echo "=== $(date +%T) train $name"
  mile train "$@" "run.name=$name" && evaluate_and_keep "runs/instruct/$name"
}

# further SEED PLAIN_RUN: workflow (b), the plain run of that seed tuned further on instruction data. Every seed
# starts from runs/instruct/plain-export (so the runs differ only in train.seed and the report pools them); a lock
# keeps parallel lanes from exporting over each other, and init.sha256 in the run records which model it was.
further() {
  local seed=$1 plain=${2%/} name=b-further-s$1
  kept "instruct/$name" && { echo "kept: $name"; return 0; }
  mkdir -p runs/instruct
  (
    flock 9
    rm -rf runs/instruct/plain-export && mile export "$plain" runs/instruct/plain-export || exit 1
    echo "=== $(date +%T) train $name from $plain"
    mile train configs/instruct/b-further.yaml "train.seed=$seed" "run.name=$name" || exit 1
    { sha256sum runs/instruct/plain-export/model.safetensors; echo "exported from $plain"; } \
      > "runs/instruct/$name/init.sha256"
  ) 9> runs/instruct/.plain-export.lock && evaluate_and_keep "runs/instruct/$name"
}
