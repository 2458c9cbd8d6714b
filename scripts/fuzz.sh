#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang and
# -fsanitize=fuzzer,address,undefined in their own build directory, and
# fuzzes each for SECONDS (default 60), starting from its seed corpus.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   IDL_FUZZ_RUNS=200000 scripts/fuzz.sh 60     (repeatable: what the tests run)
# New inputs go to build-fuzz/corpus/<target>/ (the committed seeds are
# never written); a crash is saved as build-fuzz/crash/<target>/crash-* and
# replayed by `build-fuzz/tests/fuzz/fuzz-<target> FILE`.  Exits non-zero
# when a target crashed; prints one line per target.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

secs=${1:-60}
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]] || ((secs < 1)); then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  echo "fuzz: clang not found (scripts/setup.sh --test installs it)" >&2
  exit 2
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(sed -n "/^fuzz_targets = \[/,/^\]/s/^ *'\([a-z_]*\)',\$/\1/p" tests/fuzz/meson.build)
fi

dir=build-fuzz
if [[ ! -f "$dir/build.ninja" ]]; then
  CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debugoptimized >"$dir.setup.log" 2>&1 ||
    { cat "$dir.setup.log"; exit 1; }
fi
ninja -C "$dir" "${targets[@]/#/tests/fuzz/fuzz-}" >"$dir.ninja.log" 2>&1 ||
  { tail -40 "$dir.ninja.log"; exit 1; }

# UBSan findings abort like ASan's, so libFuzzer saves the input.
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
# IDL_FUZZ_RUNS=N: a repeatable run (the test suite's): N inputs per target
# from a fixed seed and the committed seeds only, so a run here and in CI
# explore the same inputs (SECONDS is then only a cap).  Unset: explore for
# SECONDS, keeping what is found in build-fuzz/corpus/.
repeatable=()
if [[ -n "${IDL_FUZZ_RUNS:-}" ]]; then
  repeatable=(-runs="$IDL_FUZZ_RUNS" -seed="${IDL_FUZZ_SEED:-1}")
fi
crashed=0
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t" "$dir/crash/$t"
  corpus=("$dir/corpus/$t")
  if ((${#repeatable[@]})); then corpus=(); fi
  log="$dir/fuzz-$t.log"
  "$dir/tests/fuzz/fuzz-$t" -max_total_time="$secs" "${repeatable[@]}" -timeout=10 \
    -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 -artifact_prefix="$dir/crash/$t/" \
    "${corpus[@]}" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  if ((rc == 0)); then
    echo "fuzz $t: ok (${runs:-?} runs, at most ${secs}s, ${cov:-cov: ?})"
  else
    crashed=$((crashed + 1))
    echo "fuzz $t: FAILED (exit $rc; $(ls -t "$dir/crash/$t" | head -1); log $log)"
    grep -E 'property broken|ERROR: (Address|Leak)Sanitizer|runtime error|SUMMARY' "$log" | head -5 |
      sed 's/^/    /'
  fi
done
[[ $crashed -eq 0 ]]
