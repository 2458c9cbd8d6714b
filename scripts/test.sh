#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, builds, runs every meson test (unit, e2e against the real daemon,
# the bench smoke run, and the cluster suite: a real 3-server NATS JetStream
# cluster and two nodes, about 40 s; skipped without nats-server), then the
# public conformance run in ../shared, and
# -- unless IDL_SKIP_ASAN=1 -- the unit and e2e suites again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and, when clang is there,
# each fuzz target (tests/fuzz/) on IDL_FUZZ_RUNS inputs from a fixed seed
# (default 100000, at most IDL_FUZZ_SECONDS each, default 60; 0 skips).
# Ends with "N passed, N failed" (", N skipped" when a step was skipped).
# A missing ../shared/conformance is a skip outside CI and a failure under
# CI=true, where the public suite must run.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

scripts/setup.sh --test || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
skipped=0

# count_meson LOG: adds meson's Ok/Fail/Timeout counts to the totals.
count_meson() {
  local ok fail to up
  ok=$(grep -E '^Ok:' "$1" | awk '{print $2}' | tail -1)
  fail=$(grep -E '^Fail:' "$1" | awk '{print $2}' | tail -1)
  to=$(grep -E '^Timeout:' "$1" | awk '{print $2}' | tail -1)
  up=$(grep -E '^Unexpected Pass:' "$1" | awk '{print $3}' | tail -1)
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${fail:-0} + ${to:-0} + ${up:-0}))
  if [[ -z "$ok" ]]; then failed=$((failed + 1)); fi
}

build() { # DIR [meson options...]
  local dir=$1; shift
  if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
  fi
  ninja -C "$dir" >"$dir.ninja.log" 2>&1 || { tail -50 "$dir.ninja.log"; return 1; }
}

echo "== build (debugoptimized)"
if build build; then
  echo "== meson test"
  meson test -C build --print-errorlogs 2>&1 | tee build/test.log | grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Timeout|Skipped):'
  count_meson build/test.log
  echo "== public conformance run (../shared/conformance)"
  if [[ -x ../shared/conformance/run ]]; then
    ../shared/conformance/run --build build 2>build/conformance.err | tee build/conformance.log
    line=$(tail -1 build/conformance.log)
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
      passed=$((passed + BASH_REMATCH[1]))
      failed=$((failed + BASH_REMATCH[2]))
    else
      echo "conformance run did not finish: $(tail -3 build/conformance.err)"
      failed=$((failed + 1))
    fi
  elif [[ "${CI:-}" == "true" ]]; then
    echo "../shared/conformance/run not found"
    failed=$((failed + 1))
  else
    echo "conformance: skipped (../shared/conformance not found)"
    skipped=$((skipped + 1))
  fi
else
  echo "build failed"
  failed=$((failed + 1))
fi

if [[ "${IDL_SKIP_ASAN:-0}" != "1" ]]; then
  echo "== build with -Db_sanitize=address,undefined"
  if build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug; then
    echo "== meson test (sanitizers)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      LSAN_OPTIONS=suppressions="$here/tests/lsan.supp" \
      meson test -C build-asan --print-errorlogs --suite unit --suite e2e 2>&1 | tee build-asan/test.log |
      grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Timeout|Skipped):'
    count_meson build-asan/test.log
  else
    echo "sanitizer build failed"
    failed=$((failed + 1))
  fi
fi

fuzz_secs=${IDL_FUZZ_SECONDS:-60}
if [[ "$fuzz_secs" == "0" ]]; then
  echo "fuzz: skipped (IDL_FUZZ_SECONDS=0)"
  skipped=$((skipped + 1))
elif ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  echo "fuzz: skipped (clang not found)"
  skipped=$((skipped + 1))
else
  # Repeatable: a fixed seed and a fixed number of inputs per target, so
  # that a run here and CI's explore the same inputs (and CI cannot fail on
  # a finding nobody could have seen); the seconds are only a cap.
  runs=${IDL_FUZZ_RUNS:-100000}
  echo "== fuzz (libFuzzer, $runs inputs per target from seed ${IDL_FUZZ_SEED:-1}, at most ${fuzz_secs}s)"
  IDL_FUZZ_RUNS=$runs scripts/fuzz.sh "$fuzz_secs" 2>&1 | tee build-fuzz.log
  ok=$(grep -cE '^fuzz [a-z_]+: ok' build-fuzz.log)
  bad=$(grep -cE '^fuzz [a-z_]+: FAILED' build-fuzz.log)
  passed=$((passed + ok))
  failed=$((failed + bad))
  if ((ok + bad == 0)); then
    echo "fuzz build failed"
    failed=$((failed + 1))
  fi
fi

if ((skipped > 0)); then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
