#!/usr/bin/env bash
# Mutation testing (mutmut) over the modules that carry the study's numbers and the run guarantees: each
# module's code is mutated one change at a time and its tests run; a mutant that survives is a change the tests
# cannot see. Run from the repository root with the project's virtual environment active:
#
#   bash scripts/mutation.sh              # the fast set (seconds to a few minutes each)
#   bash scripts/mutation.sh --slow       # also accounting, checkpoint.py and the accelerator (minutes each)
#
# Works in a scratch clone (mutmut writes mutants/ and rewrites files there), prints each module's tally and
# the surviving mutants; docs/mutation.md lists the survivors we judged equivalent, with the reason.
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
shared=${MILE_SHARED:-$(cd "$repo/.." && pwd)/shared}
pip install --quiet "mutmut==3.8.1"

# module to mutate | the tests that are meant to catch its faults
targets=(
  "mile/engine/metrics.py|tests/engine/test_metrics.py"
  "mile/data/answers.py|tests/data/test_answers.py tests/engine/test_metrics.py tests/instruct/test_leaks.py"
  "mile/instruct/leaks.py|tests/instruct/test_leaks.py"
)
if [[ "${1:-}" == "--slow" ]]; then
  targets+=(
    "mile/tuning/accounting.py|tests/tuning/test_handle.py tests/tuning/test_presets.py"
    "mile/engine/checkpoint.py|tests/engine/test_checkpoint.py"
    "mile/engine/accelerator.py|tests/engine/test_accelerator.py tests/engine/test_precision.py"
  )
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  module=${target%%|*}
  tests=${target#*|}
  clone="$work/$(basename "$module" .py)"
  git clone --quiet "$repo" "$clone"
  {
    echo
    echo "[tool.mutmut]"
    echo "source_paths = [\"$module\"]"
    echo "pytest_add_cli_args_test_selection = [$(printf '"%s", ' $tests)]"
    echo 'also_copy = ["mile", "tests", "configs"]'
  } >> "$clone/pyproject.toml"
  echo "== $module (tests: $tests)"
  (cd "$clone" && MILE_SHARED="$shared" mutmut run --max-children "$(nproc)" > mutmut.log 2>&1 || true)
  (cd "$clone" && MILE_SHARED="$shared" mutmut results --all true 2>/dev/null | awk '{print $NF}' | sort | uniq -c)
  (cd "$clone" && MILE_SHARED="$shared" mutmut results 2>/dev/null | sed 's/^/  /')
done
