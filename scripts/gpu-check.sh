#!/usr/bin/env bash
# Native checks for a GPU machine with CUDA and CMake but no Node: configures the project with
# the Node-free tests (-DFM_BUILD_TESTS=ON; the addon target is skipped without cmake-js) in
# build/gpu-check, builds, runs ctest (CPU preprocessing vs a double-precision reference, CUDA
# preprocessing vs the CPU, the embedded kernel fatbin launched through the driver API as the addon
# does, the TensorRT pipeline's whole data path with a stand-in engine, the upload plan) and the
# kernel and pipeline benchmarks; where compute-sanitizer is installed, the GPU tests again under memcheck,
# racecheck, synccheck and initcheck. About 2.5 minutes on an H200; every step has a timeout.
#
#   bash scripts/gpu-check.sh             # exit 0: everything that could run passed
#   FM_REQUIRE_GPU=1 bash scripts/...     # and fail (exit 2) when there is no GPU to run on
#
# Where a GPU is visible (nvidia-smi lists one), a CUDA test that skips or is not built is a
# failure. Without one the script still builds everything and runs the CPU test, and says
# plainly that the CUDA test and the benchmark were SKIPPED.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FM_GPU_CHECK_BUILD:-$ROOT/build/gpu-check}"
mkdir -p "$BUILD" && BUILD="$(cd "$BUILD" && pwd)"  # absolute: the sanitizer step runs from inside it
JOBS="$(nproc 2>/dev/null || echo 4)"
START=$SECONDS

say() { printf '\n== %s\n' "$*"; }
result() {  # result <exit code> <line>
  printf '\nRESULT: %s (%ss)\n' "$2" "$((SECONDS - START))"
  exit "$1"
}

say "where"
echo "host:   $(hostname 2>/dev/null || echo '?') ($(uname -srm))"
echo "tree:   $ROOT (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l | tr -d ' ') uncommitted paths)"
GPUS=""
if command -v nvidia-smi >/dev/null 2>&1; then
  GPUS="$(nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
          nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true)"
  SMI_CUDA="$(nvidia-smi 2>&1 | grep -o 'CUDA Version: *[0-9.]*' | head -n 1)"
  [ -n "$GPUS" ] || { echo "nvidia-smi says:"; nvidia-smi 2>&1 | head -n 5 | sed 's/^/        /'; }
fi
if [ -n "$GPUS" ]; then
  echo "GPU:    (nvidia-smi: index, name, compute capability, driver, memory)"
  echo "$GPUS" | sed 's/^/        /'
  echo "        driver supports ${SMI_CUDA:-CUDA version unknown} (CUDA 13 needs a driver >= 580)"
else
  echo "GPU:    none (nvidia-smi $(command -v nvidia-smi >/dev/null 2>&1 && echo 'lists no GPU' || echo 'not found'))"
fi
NVCC="${CUDACXX:-$(command -v nvcc 2>/dev/null || true)}"
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -n "$NVCC" ]; then
  echo "nvcc:   $NVCC ($("$NVCC" --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo 'version unknown'))"
else
  echo "nvcc:   not found (the CUDA targets will not be built)"
fi
if ! command -v cmake >/dev/null 2>&1; then result 1 "FAIL: cmake not found"; fi
echo "cmake:  $(cmake --version | head -n 1)"
echo "build:  $BUILD"

say "configure (-DFM_BUILD_TESTS=ON)"
mkdir -p "$BUILD"
CFG=(-S "$ROOT" -B "$BUILD" -DFM_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release)
if [ -n "$NVCC" ]; then CFG+=("-DCMAKE_CUDA_COMPILER=$NVCC"); fi
if ! timeout 120 cmake "${CFG[@]}" >"$BUILD/configure.log" 2>&1; then
  tail -n 40 "$BUILD/configure.log"
  result 1 "FAIL: configure (log: $BUILD/configure.log)"
fi
grep -E 'face-multitask|CUDA compiler identification|CXX compiler identification' "$BUILD/configure.log" | sed 's/^-- /   /'

say "build (-j$JOBS)"
if ! timeout 200 cmake --build "$BUILD" -j "$JOBS" >"$BUILD/build.log" 2>&1; then
  tail -n 60 "$BUILD/build.log"
  result 1 "FAIL: build (log: $BUILD/build.log)"
fi
grep -iE '(warning|error)( #[0-9]+-D)? *:' "$BUILD/build.log" | head -n 20
echo "built:  $(cd "$BUILD" && ls preprocess_*_test preprocess_*_bench kernel_module_test pipeline_gpu_test pipeline_gpu_bench upload_plan_test slot_loop_test 2>/dev/null | tr '\n' ' ')"
HAVE_CUDA_TARGETS=0
if [ -x "$BUILD/preprocess_cuda_test" ]; then HAVE_CUDA_TARGETS=1; fi

say "ctest"
# (cd + ctest rather than ctest --test-dir, which needs CMake >= 3.20)
(cd "$BUILD" && timeout 180 ctest --output-on-failure --timeout 90) 2>&1 | tee "$BUILD/ctest.log"
CTEST_RC=${PIPESTATUS[0]}
say "GPU tests' own output (ctest hides it when they pass)"
for t in preprocess_cuda kernel_module pipeline_gpu; do
  out="$(awk -v t="$t" '$0 ~ ("^[0-9]+/[0-9]+ Testing: " t "$") {hit=1} hit && $0 == "Output:" {on=1; getline; next}
                        on && $0 == "<end of output>" {exit} on' "$BUILD/Testing/Temporary/LastTest.log" 2>/dev/null)"
  echo "-- $t"
  printf '%s\n' "$out" | grep -v 'max |cuda - cpu|' | tail -n 15
  for d in fp32 fp16; do printf '%s\n' "$out" | grep 'max |cuda - cpu|' | grep ", $d" | sort -t= -k2 -g | tail -n 1 | sed "s/^ */   worst $d: /"; done
done
CUDA_SKIPPED=0
if grep -qE '(preprocess_cuda|kernel_module|pipeline_gpu) .*Skipped|SKIPPED: no CUDA device' "$BUILD/ctest.log"; then CUDA_SKIPPED=1; fi

say "compute-sanitizer"
# The GPU tests again under CUDA's own checkers: memcheck (out-of-bounds and misaligned device
# accesses, API errors, device memory left allocated at exit), racecheck (shared-memory hazards
# between a block's threads), synccheck (barriers), initcheck (device memory read before it was
# written). ctest only compares outputs, which a stray read that happens to land in-bounds passes.
# The four tools run side by side, each over the three programs (racecheck over the two that
# launch every kernel variant: pipeline_gpu runs the same kernels and takes minutes under it),
# each program under a timeout.
SAN="$(command -v compute-sanitizer 2>/dev/null || true)"
if [ -z "$SAN" ] && [ -n "$NVCC" ] && [ -x "$(dirname "$NVCC")/compute-sanitizer" ]; then SAN="$(dirname "$NVCC")/compute-sanitizer"; fi
SANITIZE="not run"
if [ "$HAVE_CUDA_TARGETS" = 0 ] || [ "$CUDA_SKIPPED" = 1 ] || [ -z "$GPUS" ]; then
  echo "(not run: no GPU to run on)"
elif [ -z "$SAN" ]; then
  echo "(not run: compute-sanitizer not found beside nvcc or on PATH)"
  SANITIZE="not run (compute-sanitizer not found)"
else
  echo "$SAN ($("$SAN" --version 2>/dev/null | grep -o 'Version [0-9.]*' | head -n 1))"
  sanitize() {  # sanitize <tool> [extra options]: every GPU program under one tool; exit 0 when all are clean
    local tool="$1" rc=0 prog progs=(preprocess_cuda_test kernel_module_test pipeline_gpu_test); shift
    [ "$tool" = racecheck ] && progs=(preprocess_cuda_test kernel_module_test)
    for prog in "${progs[@]}"; do
      timeout 100 "$SAN" --tool "$tool" --error-exitcode 9 "$@" "$BUILD/$prog" >"$BUILD/sanitize-$tool-$prog.log" 2>&1
      local r=$?
      printf '%-10s %-22s exit %-3s %s\n' "$tool" "$prog" "$r" "$(grep -E 'ERROR SUMMARY|LEAK SUMMARY|RACECHECK SUMMARY' "$BUILD/sanitize-$tool-$prog.log" | tr '\n' ' ')"
      if [ "$r" != 0 ]; then rc=1; grep -E '^========= ' "$BUILD/sanitize-$tool-$prog.log" | head -n 20; fi
    done
    return $rc
  }
  for tool in memcheck racecheck synccheck initcheck; do
    opts=(); [ "$tool" = memcheck ] && opts=(--leak-check full)
    (cd "$BUILD" && sanitize "$tool" ${opts[@]+"${opts[@]}"} >"$BUILD/sanitize-$tool.out" 2>&1; echo $? >"$BUILD/sanitize-$tool.rc") &
  done
  wait
  SANITIZE="clean"
  for tool in memcheck racecheck synccheck initcheck; do
    cat "$BUILD/sanitize-$tool.out"
    if [ "$(cat "$BUILD/sanitize-$tool.rc" 2>/dev/null)" != 0 ]; then SANITIZE="FAILED"; fi
  done
  [ "$SANITIZE" = clean ] && SANITIZE="clean (memcheck with leak check, racecheck, synccheck, initcheck)"
fi

say "benchmark"
BENCH="not built"
if [ "$HAVE_CUDA_TARGETS" = 1 ]; then
  timeout 90 "$BUILD/preprocess_cuda_bench"
  case $? in
    0) BENCH="ran" ;;
    77) BENCH="SKIPPED (no CUDA device)" ;;
    124) BENCH="FAILED (timed out)" ;;
    *) BENCH="FAILED" ;;
  esac
  if [ "$BENCH" = ran ]; then
    echo
    timeout 120 "$BUILD/pipeline_gpu_bench"
    case $? in
      0) ;;
      124) BENCH="FAILED (pipeline_gpu_bench timed out)" ;;
      *) BENCH="FAILED (pipeline_gpu_bench)" ;;
    esac
  fi
else
  echo "(preprocess_cuda_bench not built: no CUDA compiler)"
fi

say "summary"
echo "GPU:        ${GPUS:-none}"
echo "ctest:      exit $CTEST_RC$( [ "$CUDA_SKIPPED" = 1 ] && echo ', GPU tests (preprocess_cuda, kernel_module, pipeline_gpu) SKIPPED (no CUDA device)')$( [ "$HAVE_CUDA_TARGETS" = 0 ] && echo ', CUDA tests not built')"
echo "sanitizer:  $SANITIZE"
echo "benchmark:  $BENCH"
if [ -n "$GPUS" ] && [ "$CUDA_SKIPPED" = 1 ]; then
  result 1 "FAIL: a GPU is present but the CUDA runtime sees none (driver older than the toolkit? ${SMI_CUDA:-})"
fi
if [ "$CTEST_RC" != 0 ]; then result 1 "FAIL: ctest (exit $CTEST_RC$( [ "$CTEST_RC" = 124 ] && echo ': timed out'))"; fi
case "$BENCH" in FAILED*) result 1 "FAIL: benchmark $BENCH" ;; esac
if [ "$SANITIZE" = FAILED ]; then result 1 "FAIL: compute-sanitizer found errors (logs: $BUILD/sanitize-*.log)"; fi
if [ -n "$GPUS" ]; then
  if [ "$HAVE_CUDA_TARGETS" = 0 ]; then result 1 "FAIL: a GPU is present but no CUDA compiler was found (set CUDACXX)"; fi
  if [ "$BENCH" != "ran" ]; then result 1 "FAIL: a GPU is present but the benchmark did not run ($BENCH)"; fi
  result 0 "PASS on $(echo "$GPUS" | head -n 1 | cut -d, -f2 | sed 's/^ *//'): CPU and CUDA tests, benchmark, compute-sanitizer $SANITIZE"
fi
if [ "${FM_REQUIRE_GPU:-0}" = 1 ]; then result 2 "FAIL: no GPU here (FM_REQUIRE_GPU=1); only the CPU test ran"; fi
result 0 "CPU-ONLY PASS: no GPU here; the CUDA test and the benchmark were SKIPPED, not passed"
