# Steps of the CPU study, sourced by scripts/cpu_study.sh (and by anyone splitting the study into parallel lanes).
#
# Run directories (weights, checkpoints) live under runs/, which git ignores and a fresh machine does not have. A
# finished run's *record* (config, status, params, train stats and log, metrics, predictions, probe) is small and
# is kept in git under docs/study/runs/, mirroring runs/. A step whose record is kept is not run again, so the
# study resumes across machines: only the base is retrained on a fresh one (its record holds the sha256 of its
# export, to check that it came out the same).
records=docs/study/runs
study=configs/sweeps/mile-small/study.yaml

# keep RUN_DIR [AS]: copy the run's record (everything but checkpoints/, weights/, best/ and tb/) to $records/AS
# (default: its path under runs/)
keep() {
  local run=${1%/}
  local dest=$records/${2:-${run#runs/}}
  rm -rf "$dest" && mkdir -p "$dest"
  tar -C "$run" -cf - --exclude=./checkpoints --exclude=./weights --exclude=./best --exclude=./tb . | tar -C "$dest" -xf -
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

# probe_and_keep RUN_DIR: what the run takes from image and question (eval/<split>/probe.json), then keep it
probe_and_keep() {
  local run=${1%/}
  grep -q '"done"' "$run/status.json" || { echo "$run did not finish: not kept"; return 1; }
  ls "$run"/eval/*/probe.json > /dev/null 2>&1 || mile probe "$run" --limit 256 || true
  keep "$run"
}

# run_name PLAN [SWEEP]: the name of PLAN's run in SWEEP (default: the study sweep), as `mile sweep --dry-run` lists it
run_name() {
  mile sweep "${2:-$study}" --only "$1" --dry-run | awk -v plan="$1" '$3 == plan { print $2; exit }'
}

# plan_kept PLAN [SWEEP]: SWEEP's run of PLAN (e.g. F-IA3-IA3; default sweep: the study's), unless its record is kept
plan_kept() {
  local sweep=${2:-$study} name
  name=$(run_name "$1" "$sweep")
  [ -n "$name" ] || { echo "no run of plan $1 in $sweep" >&2; return 1; }
  kept "study/slake/$name" && { echo "kept: $name"; return 0; }
  echo "=== $(date +%T) sweep $name"
  mile sweep "$sweep" --only "$name"   # a failure is recorded in the run's status.json and in the report
  probe_and_keep "runs/study/slake/$name"
}

# train_kept NAME CONFIG [OVERRIDES...]: train runs/instruct/NAME unless its record is kept
train_kept() {
  local name=$1
  shift
  kept "instruct/$name" && { echo "kept: $name"; return 0; }
  echo "=== $(date +%T) train $name"
  mile train "$@" "run.name=$name" && probe_and_keep "runs/instruct/$name"
}

# further SEED PLAIN_RUN: workflow (b), the plain run of that seed tuned further on instruction data. Every seed
# starts from runs/instruct/plain-export (so the runs differ only in train.seed and the report pools them); a lock
# keeps parallel lanes from exporting over each other, and init.sha256 in the run records which model it was.
further() {
  local seed=$1 plain=${2%/} name=b-further-s$1
  [ "$seed" = 1 ] && name=b-further
  kept "instruct/$name" && { echo "kept: $name"; return 0; }
  mkdir -p runs/instruct
  (
    flock 9
    rm -rf runs/instruct/plain-export && mile export "$plain" runs/instruct/plain-export || exit 1
    echo "=== $(date +%T) train $name from $plain"
    mile train configs/instruct/b-further.yaml "train.seed=$seed" "run.name=$name" || exit 1
    { sha256sum runs/instruct/plain-export/model.safetensors; echo "exported from $plain"; } \
      > "runs/instruct/$name/init.sha256"
  ) 9> runs/instruct/.plain-export.lock && probe_and_keep "runs/instruct/$name"
}
