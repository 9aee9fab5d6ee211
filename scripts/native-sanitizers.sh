#!/usr/bin/env bash
# The Node-free native tests (the ctest suite of `npm run test:native`) built and run twice more:
# under AddressSanitizer + UndefinedBehaviorSanitizer (memory errors, leaks, undefined behaviour)
# and under ThreadSanitizer (data races in the TensorRT pipeline's per-stream threads, the slot
# loop, the timing-cache lock). Any report fails the run. Not part of CI: on 2 cores it takes
# about 30 minutes (TSan runs the pipeline tests ~10x slower); run it after changing native code.
#
#   npm run test:native:sanitizers          # both
#   bash scripts/native-sanitizers.sh tsan  # one: asan or tsan
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="$(nproc 2>/dev/null || echo 2)"

run() {  # run <name> <-fsanitize list>
  local build="$ROOT/build/native-$1"
  local flags="-fsanitize=$2 -fno-omit-frame-pointer -fno-sanitize-recover=all"
  echo "== $1: $2 (in $build)"
  cmake -S "$ROOT" -B "$build" -DFM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$2" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=$2" > /dev/null
  cmake --build "$build" -j "$JOBS"
  # halt_on_error: a report ends its test with a failure, so ctest's summary cannot pass over it.
  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir "$build" --output-on-failure
}

case "${1:-both}" in
  asan) run asan address,undefined ;;
  tsan) run tsan thread ;;
  both) run asan address,undefined && run tsan thread ;;
  *) echo "usage: bash scripts/native-sanitizers.sh [asan|tsan]" >&2; exit 2 ;;
esac
