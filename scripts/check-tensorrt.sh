#!/usr/bin/env bash
# Compile check of the TensorRT backend (native/tensorrt) against TensorRT headers, without
# TensorRT installed and without a GPU (`npm run check:tensorrt`):
#
#   TENSORRT_INCLUDE_DIR=/tmp/trt-10/include bash scripts/check-tensorrt.sh
#   TENSORRT_INCLUDE_DIR=/tmp/trt-10/include:/tmp/trt-11/include bash scripts/check-tensorrt.sh
#
# The headers come from NVIDIA/TensorRT's repository (`include/` of release/10.x or main), kept
# outside this project (nothing of TensorRT is committed). For each header folder:
#   1. every native/tensorrt header compiles on its own;
#   2. every native/tensorrt/*.cc compiles to an object (-Wall -Wextra; TensorRT and CUDA headers
#      as -isystem, so their own deprecation warnings stay quiet and ours show);
#   3. the objects link into a shared object with -Wl,--no-undefined and nothing but libdl:
#      no TensorRT or CUDA symbol is needed at link time (they are dlopen'ed);
#   4. the availability status is checked against stand-in libraries (libnvinfer,
#      libnvonnxparser, libnvinfer_plugin, libcuda.so.1 built from native/tensorrt/tests/fake_*.c):
#      search order ($TENSORRT_LIB_DIR, pip tensorrt_libs via $VIRTUAL_ENV / $TENSORRT_PYTHON_SITE /
#      the project's .venv), wrong major, missing parser, no driver, no GPU, GPU too old, available;
#      and build_engine / Engine::load run up to TensorRT's factories (NULL from the stand-ins)
#      and report the refusal as an error; with two GPUs, a build is judged by its own device's
#      compute capability, the status by device 0's;
#   5. the builder, TrtEngine and the pipeline run end to end over stand-in TensorRT libraries
#      that work (native/tensorrt/tests/fake_trt_*.cc: parse, profile, progress, cancel, timing
#      cache; deserialize, contexts, shapes, addresses, enqueueV3, CUDA-graph capture) and the host
#      stand-in libcuda.so.1: build_over_fake_test, and the ctest pipeline_host* suite over
#      TensorRT's API, every call checked against what the headers state, and the execution
#      contexts TrtEngine makes once a refused capture turns graphs off counted; with
#      CHECK_TENSORRT_ADDON=1 also the addon built against the headers (cmake-js, ~10 s more per
#      header set), its tensorrtBuild / tensorrtLoad run from Node (tests/binding_over_fake.js),
#      and FaceMultitask.load({ backend: 'tensorrt' }) with detect() over it, the CLI's doctor and
#      build, and bench --backend tensorrt (the package's JavaScript, a synthetic model:
#      tests/facemultitask_over_fake.js).
# Once, without TensorRT headers: the stub build compiles and says 'headers absent at build time'.
#
# Environment: TENSORRT_INCLUDE_DIR (':'-separated; default: $TENSORRT_ROOT/include,
# /usr/include/x86_64-linux-gnu, /usr/local/tensorrt/include, whichever has NvInfer.h),
# CUDA_INCLUDE_DIR (default /usr/local/cuda/include: headers only), CXX, CC,
# CHECK_TENSORRT_WERROR=1 to fail on any compiler warning in our code, CHECK_TENSORRT_ADDON=1 to
# build the addon and run its binding over the stand-ins too (step 5), KEEP_CHECK_DIR=1 to keep the
# work folder (objects, stand-ins, status tools). Needs python3 (step 5 generates the stand-ins'
# interface stubs from the headers with native/tensorrt/tests/fake_trt_stubs.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CXX="${CXX:-c++}"
CC="${CC:-cc}"
CUDA_INC="${CUDA_INCLUDE_DIR:-/usr/local/cuda/include}"
SRC="$ROOT/native/tensorrt"
FAILS=0
WARNINGS=0

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "  ok: $*"; }

if [ -z "${TENSORRT_INCLUDE_DIR:-}" ]; then
  for d in "${TENSORRT_ROOT:-/nonexistent}/include" /usr/include/x86_64-linux-gnu /usr/local/tensorrt/include; do
    if [ -f "$d/NvInfer.h" ]; then TENSORRT_INCLUDE_DIR="$d"; break; fi
  done
fi
if [ -z "${TENSORRT_INCLUDE_DIR:-}" ]; then
  echo "No TensorRT headers: set TENSORRT_INCLUDE_DIR (e.g. include/ of NVIDIA/TensorRT release/10.14, exported"
  echo "outside the project: git -C <clone> archive release/10.14 include | tar -x -C /tmp/trt-10)."
  exit 2
fi
if [ ! -f "$CUDA_INC/cuda_runtime_api.h" ] || [ ! -f "$CUDA_INC/cuda.h" ]; then
  echo "No CUDA headers in $CUDA_INC (set CUDA_INCLUDE_DIR): TensorRT's headers need cuda_runtime_api.h."
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/check-tensorrt.XXXXXX")"
if [ -n "${KEEP_CHECK_DIR:-}" ]; then echo "work folder (kept): $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
CXXFLAGS=(-std=c++17 -O2 -fPIC -Wall -Wextra -ffp-contract=off -I"$ROOT/native")

# compile <log> <args...>: compiles, shows and counts the warnings.
compile() {
  local log="$1"; shift
  if ! "$CXX" "${CXXFLAGS[@]}" "$@" >"$log" 2>&1; then cat "$log"; return 1; fi
  if grep -q 'warning:' "$log"; then
    cat "$log"
    WARNINGS=$((WARNINGS + $(grep -c 'warning:' "$log")))
  fi
}

# compile_many <name> <log> <args...> ... : like compile, for several jobs at once (one per core
# busy at a time is the compiler's business); call `compiled` to wait and count. A job's status
# is in <log>.rc.
JOBS=()
compile_many() {
  local name="$1" log="$2"; shift 2
  ( "$CXX" "${CXXFLAGS[@]}" "$@" >"$log" 2>&1; echo $? >"$log.rc" ) &
  JOBS+=("$name|$log")
}
# compiled: waits for the jobs; prints each failure's or warning's log; echoes the failed names.
compiled() {
  wait
  local job name log failed=()
  for job in "${JOBS[@]}"; do
    name="${job%%|*}"; log="${job#*|}"
    if [ "$(cat "$log.rc")" != 0 ]; then cat "$log" >&2; failed+=("$name"); continue; fi
    if grep -q 'warning:' "$log"; then cat "$log" >&2; WARNINGS=$((WARNINGS + $(grep -c 'warning:' "$log"))); fi
  done
  JOBS=()
  FAILED=("${failed[@]}")
}

header_number() {  # header_number <include dir> MAJOR|MINOR|PATCH
  sed -nE "s/^#define (NV_TENSORRT_$2|TRT_$2_ENTERPRISE) +([0-9]+).*/\\2/p" "$1/NvInferVersion.h" | head -n 1
}

# status <expected line regex> <description> <env assignments...> -- runs the status tool with a
# clean environment (only what is given), from $WORK/run, and checks one line of its output.
STATUS_TOOL=""
status_case() {
  local want="$1" what="$2"; shift 2
  local out
  out="$(cd "$WORK/run" && env -i PATH="$PATH" HOME="$WORK/home" "$@" "$STATUS_TOOL" 2>&1)" || {
    fail "$what: the status tool exited $?"; echo "$out"; return; }
  if grep -qE -- "$want" <<<"$out"; then
    pass "$what"
  else
    fail "$what: no line matching /$want/ in:"
    sed 's/^/        /' <<<"$out"
  fi
}

# fake_trt <dir> <major> <getInferLibVersion value> [parser] [plugin]: stand-in TensorRT libraries.
fake_trt() {
  local dir="$1" major="$2" version="$3"; shift 3
  mkdir -p "$dir"
  "$CC" -shared -fPIC -o "$dir/libnvinfer.so.$major" -Wl,-soname,"libnvinfer.so.$major" \
    -DFAKE_NVINFER -DFAKE_VERSION="$version" "$SRC/tests/fake_tensorrt.c"
  for extra in "$@"; do
    local name flag deps=()
    case "$extra" in
      parser) name="libnvonnxparser.so.$major"; flag=-DFAKE_PARSER ;;
      plugin) name="libnvinfer_plugin.so.$major"; flag=-DFAKE_PLUGIN ;;
      plugin-cudart)
        # A plugin library that needs pip's CUDA runtime (site-packages/nvidia/cuda_runtime/lib),
        # which is on no library path: it loads only if the loader preloads it, as the pip
        # package's own tensorrt_libs/__init__.py does.
        local rt="$dir/../nvidia/cuda_runtime/lib"
        mkdir -p "$rt"
        "$CC" -shared -fPIC -o "$rt/libcudart.so.12" -Wl,-soname,libcudart.so.12 -DFAKE_CUDART "$SRC/tests/fake_tensorrt.c"
        name="libnvinfer_plugin.so.$major"; flag=-DFAKE_PLUGIN; deps=(-L"$rt" -Wl,--no-as-needed -l:libcudart.so.12) ;;
    esac
    # Linked against libnvinfer by soname (no rpath), like the real ones: the loader must have
    # loaded libnvinfer first for these to load.
    "$CC" -shared -fPIC -o "$dir/$name" -Wl,-soname,"$name" "$flag" "$SRC/tests/fake_tensorrt.c" \
      -L"$dir" -l:"libnvinfer.so.$major" "${deps[@]}"
  done
}

# queue_fake_tensorrt (the compile jobs) and over_fake_tensorrt (the runs): the builder and TensorRT's
# TrtEngine run end to end over stand-in TensorRT libraries that work (native/tensorrt/tests/fake_trt_*.cc: the
# interfaces' stubs generated from these headers by fake_trt_stubs.py) and the host stand-in
# libcuda.so.1:
#   - build_over_fake_test.cc: build_engine() (parse, profile, progress, cancel, timing cache) and
#     the plan it makes loaded by TrtEngine;
#   - native/tests/pipeline_gpu_test.cc built with FM_TEST_TENSORRT_ENGINE: the pipeline over
#     TrtEngine, in each of the ctest pipeline_host* configurations.
# The stand-ins report any call that breaks what TensorRT's headers state ("FAKE-TRT VIOLATION:"),
# which fails the check.
FAKE_JOBS=()
queue_fake_tensorrt() {  # queue_fake_tensorrt <include dir> <major> <objects dir>: its compile jobs (compile_many)
  local inc="$1" major="$2" obj="$3" ft="$WORK/fake-trt-$2" c apiv=()
  mkdir -p "$ft/lib" "$ft/cuda" "$ft/build"
  for c in VRuntime VCudaEngine VExecutionContext VBuilder VBuilderConfig VNetworkDefinition VOptimizationProfile VTimingCache VHostMemory VTensor; do
    apiv+=("NvInferImpl.h:nvinfer1::apiv::$c")
  done
  FAKE_JOBS=("stand-in libnvinfer" "host stand-in driver" "build_over_fake_test.cc" "pipeline_gpu_test.cc over TrtEngine")
  if ! python3 "$SRC/tests/fake_trt_stubs.py" "$inc" "${apiv[@]}" >"$ft/fake_trt_stubs.h" ||
     ! python3 "$SRC/tests/fake_trt_stubs.py" "$inc" NvOnnxParser.h:nvonnxparser::IParser NvOnnxParser.h:nvonnxparser::IParserError \
       >"$ft/fake_trt_parser_stubs.h"; then
    FAKE_JOBS=("stubs of TensorRT's interfaces from $inc")
    return
  fi
  # -O1: quicker to compile; these are tests.
  local tests=(-O1 -DFM_HAVE_TENSORRT -DFM_HAVE_CUDA_HEADERS -isystem "$inc" -isystem "$CUDA_INC")
  compile_many "stand-in libnvinfer" "$ft/nvinfer.log" -O1 -shared -isystem "$inc" -isystem "$CUDA_INC" -I"$ft" \
    -o "$ft/lib/libnvinfer.so.$major" -Wl,-soname,"libnvinfer.so.$major" "$SRC/tests/fake_trt_runtime.cc" "$SRC/tests/fake_trt_builder.cc" -ldl
  compile_many "host stand-in driver" "$ft/cuda.log" -O1 -shared -o "$ft/cuda/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$SRC/tests/host_cuda.cc"
  compile_many "build_over_fake_test.cc" "$ft/build.log" "${tests[@]}" -o "$ft/build_test" "$SRC/tests/build_over_fake_test.cc" "$obj"/*.o -ldl -lpthread
  compile_many "pipeline_gpu_test.cc over TrtEngine" "$ft/pipeline.log" "${tests[@]}" -DFM_TEST_TENSORRT_ENGINE -o "$ft/pipeline_trt" \
    "$ROOT/native/tests/pipeline_gpu_test.cc" "$obj"/*.o -ldl -lpthread
}

over_fake_tensorrt() {  # after queue_fake_tensorrt's jobs have been compiled
  local inc="$1" major="$2" ft="$WORK/fake-trt-$2" case env out job made
  echo "-- the builder, TrtEngine and the pipeline over working stand-in TensorRT libraries and the host stand-in driver"
  for job in "${FAKE_JOBS[@]}"; do
    if [[ "$TOOLS_FAILED" == *" $job "* ]] || [[ "$job" == stubs* ]]; then fail "$job"; return; fi
  done
  compile "$ft/parser.log" -O1 -shared -isystem "$inc" -isystem "$CUDA_INC" -I"$ft" -o "$ft/lib/libnvonnxparser.so.$major" \
    -Wl,-soname,"libnvonnxparser.so.$major" "$SRC/tests/fake_trt_parser.cc" -L"$ft/lib" -l:"libnvinfer.so.$major" ||
    { fail "the stand-in libnvonnxparser"; return; }
  "$CC" -shared -fPIC -o "$ft/lib/libnvinfer_plugin.so.$major" -Wl,-soname,"libnvinfer_plugin.so.$major" -DFAKE_PLUGIN \
    "$SRC/tests/fake_tensorrt.c" -L"$ft/lib" -l:"libnvinfer.so.$major"
  run_over_fake() {  # run_over_fake <what> <expected summary regex> <command and env...>
    local what="$1" want="$2"; shift 2
    out="$(cd "$WORK/run" && env -i PATH="$PATH" HOME="$WORK/home" TENSORRT_LIB_DIR="$ft/lib" LD_LIBRARY_PATH="$ft/cuda" "$@" 2>&1)" || true
    if grep -qE "$want" <<<"$out" && ! grep -q 'FAKE-TRT VIOLATION' <<<"$out"; then
      pass "$what: $(grep -E "$want" <<<"$out" | tail -n 1), no call breaking TensorRT's stated rules"
    else
      fail "$what:"
      grep -E 'FAIL|VIOLATION|passed' <<<"$out" | head -20 | sed 's/^/        /'
    fi
  }
  run_over_fake "build_engine, then TrtEngine on its plan" '^build: [1-9][0-9]* passed, 0 failed$' "$ft/build_test" "$ft/build"
  for case in "plain:" "lost:FM_HOST_CUDA_CONTAIN_AT=37" \
              "graph replay fails:FM_HOST_CUDA_GRAPH_LAUNCH_FAIL_AT=3" "event fails:FM_HOST_CUDA_EVENT_FAIL_AT=13"; do
    env=(); [ -n "${case#*:}" ] && env=("${case#*:}")
    run_over_fake "pipeline over TrtEngine (${case%%:*})" '^pipeline: [1-9][0-9]* passed, 0 failed$' "${env[@]}" "$ft/pipeline_trt"
  done
  run_over_fake "pipeline over TrtEngine (graph refused)" '^pipeline: [1-9][0-9]* passed, 0 failed$' \
    FM_HOST_CUDA_NO_GRAPHS=1 FAKE_TRT_REPORT_AT_EXIT=1 "$ft/pipeline_trt"
  # Once a capture fails, graphs are off for the engine, and a batch size without a context of its
  # own runs on its slot's plain one, not on a new context per (stream, size) that no graph will
  # ever use. The run above is run_pipeline in pipeline_gpu_test.cc: TrtEngine with graphs on, 2
  # streams, 40 batches of 1..16 faces. Each slot makes its plain context at load, and at most one
  # for the first size it runs: that batch's capture, refused, turns graphs off within its enqueue,
  # before the slot takes another batch, and the other slot's first batch either began before that
  # (a context of its own) or not (the plain one). So 3 or 4; a context per (stream, size), as
  # TrtEngine made them before, gives 2 plus one for each size each slot ran (28 there).
  made="$(sed -nE 's/^fake-trt at exit: ([0-9]+) execution contexts created$/\1/p' <<<"$out")"
  if [ -n "$made" ] && [ "$made" -ge 3 ] && [ "$made" -le 4 ]; then
    pass "graphs refused: $made execution contexts for 2 streams (the plain ones and at most one per stream before the refusal)"
  else
    fail "graphs refused: ${made:-an unknown number of} execution contexts for 2 streams, expected 3 or 4 (a context per batch size after graphs went off?)"
  fi
  grep -q 'engine: TrtEngine over the stand-in libnvinfer' <<<"$out" || fail "the pipeline tests did not run over TrtEngine"
  [ "${CHECK_TENSORRT_ADDON:-0}" = 1 ] || return 0
  # The addon itself, built against these headers (cmake-js; no CUDA kernels: CPU preprocessing),
  # and its tensorrtBuild / tensorrtLoad run from Node over the same stand-ins.
  local addon="$WORK/addon-$major"
  if ! (cd "$ROOT" && npx cmake-js compile --out "$addon" --CDTENSORRT_INCLUDE_DIR="$inc" --CDCUDA_INCLUDE_DIR="$CUDA_INC" \
        --CDFM_CUDA=OFF --log-level warn) >"$ft/addon.log" 2>&1; then
    tail -n 20 "$ft/addon.log"; fail "the addon built against $inc"; return
  fi
  mkdir -p "$ft/node"
  run_over_fake "the N-API binding's tensorrtBuild / tensorrtLoad from Node" '^binding: [1-9][0-9]* passed, 0 failed$' \
    FAKE_TRT_STEP_MS=100 node "$SRC/tests/binding_over_fake.js" "$addon/Release/face_multitask.node" "$ft/node"
  # The package's JavaScript over that addon: a copy of the package (dist/, built by tsc) whose
  # build/Release holds it, so the clone's own build stays as it is.
  if [ ! -f "$ROOT/dist/lib/index.js" ]; then
    echo "  skip: FaceMultitask over the stand-ins (no dist/: run npx tsc -p tsconfig.json)"
    return
  fi
  local pkg="$ft/package"
  mkdir -p "$pkg/build/Release" "$ft/fm"
  cp -r "$ROOT/dist" "$ROOT/package.json" "$pkg/"
  ln -s "$ROOT/node_modules" "$pkg/node_modules"
  cp "$addon/Release/face_multitask.node" "$pkg/build/Release/"
  node "$ROOT/dist/scripts/make-fixture.js" "$ft/fixture.onnx" --generation v2.5 >/dev/null || { fail "the v2.5 fixture model"; return; }
  run_over_fake "FaceMultitask.load({ backend: 'tensorrt' }) and detect() from Node" '^facemultitask: [1-9][0-9]* passed, 0 failed$' \
    node "$SRC/tests/facemultitask_over_fake.js" "$pkg" "$ft/fm" "$ft/fixture.onnx"
}

HAVE_REAL_DRIVER=0
# Read whole first: under pipefail, `ldconfig -p | grep -q` fails when grep stops reading early.
LDCONFIG="$(ldconfig -p 2>/dev/null || true)"
if grep -q 'libcuda\.so\.1 ' <<<"$LDCONFIG"; then HAVE_REAL_DRIVER=1; fi
mkdir -p "$WORK/run" "$WORK/home" "$WORK/cuda"
"$CC" -shared -fPIC -o "$WORK/cuda/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$SRC/tests/fake_cuda.c"

IFS=':' read -r -a DIRS <<<"$TENSORRT_INCLUDE_DIR"
for INC in "${DIRS[@]}"; do
  if [ ! -f "$INC/NvInfer.h" ] || [ ! -f "$INC/NvOnnxParser.h" ]; then
    fail "$INC has no NvInfer.h / NvOnnxParser.h"
    continue
  fi
  MAJOR="$(header_number "$INC" MAJOR)"; MINOR="$(header_number "$INC" MINOR)"; PATCH="$(header_number "$INC" PATCH)"
  echo
  echo "== TensorRT $MAJOR.$MINOR.$PATCH headers: $INC (CUDA headers: $CUDA_INC)"
  OBJ="$WORK/obj-$MAJOR.$MINOR"
  mkdir -p "$OBJ"
  DEFS=(-DFM_HAVE_TENSORRT -DFM_HAVE_CUDA_HEADERS -isystem "$INC" -isystem "$CUDA_INC")

  # Every header on its own, and every object, compiled side by side.
  for h in "$SRC"/*.h; do
    b="$(basename "$h")"
    printf '#include "tensorrt/%s"\n' "$b" >"$OBJ/h-$b.cc"
    compile_many "header $b" "$OBJ/h-$b.log" "${DEFS[@]}" -fsyntax-only "$OBJ/h-$b.cc"
  done
  # The pipeline's CPU-preprocessing fallback links the CPU path (as fm_tensorrt links fm_preprocess).
  for cc in "$SRC"/*.cc "$ROOT/native/preprocess/preprocess_cpu.cc"; do
    compile_many "$(basename "$cc")" "$OBJ/$(basename "$cc").log" "${DEFS[@]}" -c "$cc" -o "$OBJ/$(basename "$cc" .cc).o"
  done
  # The N-API binding (native/tensorrt_binding.cc), where node-addon-api is installed.
  NAPI_INC="$ROOT/node_modules/node-addon-api"
  NODE_INC="$ROOT/node_modules/node-api-headers/include"
  BINDING=0
  if [ -f "$NAPI_INC/napi.h" ] && [ -f "$NODE_INC/node_api.h" ]; then
    BINDING=1
    compile_many binding "$OBJ/binding.log" "${DEFS[@]}" -I"$NAPI_INC" -I"$NODE_INC" -DNAPI_VERSION=9 -DNAPI_CPP_EXCEPTIONS \
      -DNODE_ADDON_API_DISABLE_DEPRECATED -fsyntax-only "$ROOT/native/tensorrt_binding.cc"
  fi
  compiled
  ok=1
  for f in "${FAILED[@]}"; do
    if [ "$f" = binding ]; then fail "tensorrt_binding.cc does not compile"; BINDING=2; else fail "$f does not compile"; ok=0; fi
  done
  [ "$ok" = 1 ] && pass "each header compiles on its own; compiled: $(cd "$SRC" && echo *.cc) preprocess_cpu.cc"
  case "$BINDING" in
    1) pass "tensorrt_binding.cc compiles (node-addon-api)" ;;
    0) echo "  skip: tensorrt_binding.cc (node-addon-api not installed: run npm ci)" ;;
  esac
  [ "$ok" = 1 ] || continue

  if "$CXX" -shared -o "$OBJ/libfm_tensorrt_check.so" "$OBJ"/*.o -Wl,--no-undefined -ldl >"$OBJ/link.log" 2>&1; then
    NEEDED="$(readelf -d "$OBJ/libfm_tensorrt_check.so" | sed -nE 's/.*Shared library: \[(.*)\]/\1/p' | tr '\n' ' ')"
    if grep -qE 'nvinfer|nvonnx|cuda' <<<"$NEEDED"; then
      fail "the objects need TensorRT or CUDA at link time: $NEEDED"
    else
      pass "links with --no-undefined against libdl only (needs: $NEEDED)"
    fi
    UNDEF="$(nm -D --undefined-only "$OBJ/libfm_tensorrt_check.so" | grep -E ' (cu[A-Z]|cuda|create[A-Za-z]*_INTERNAL|getInferLibVersion|initLibNvInferPlugins|getNvOnnxParserVersion)' || true)"
    [ -z "$UNDEF" ] && pass "no undefined TensorRT / CUDA symbol" || fail "undefined TensorRT / CUDA symbols: $UNDEF"
  else
    cat "$OBJ/link.log"; fail "link with --no-undefined"
  fi

  # The status tool sits two folders below $WORK, as the addon sits in <project>/build/Release:
  # its "project .venv" is $WORK/.venv.
  STATUS_TOOL="$WORK/tool-$MAJOR/bin/tensorrt_status"
  SMOKE="$WORK/tool-$MAJOR/bin/tensorrt_smoke"
  mkdir -p "$(dirname "$STATUS_TOOL")"
  # The tools and the tests over stand-in TensorRT libraries, compiled side by side.
  compile_many "status tool" "$OBJ/tool.log" "${DEFS[@]}" -o "$STATUS_TOOL" "$SRC/tests/status_main.cc" "$OBJ/loader.o" "$OBJ/cuda_driver.o" -ldl
  compile_many "builder/runtime smoke tool" "$OBJ/smoke.log" "${DEFS[@]}" -o "$SMOKE" "$SRC/tests/smoke_main.cc" "$OBJ"/*.o -ldl
  queue_fake_tensorrt "$INC" "$MAJOR" "$OBJ"
  compiled
  TOOLS_FAILED=" ${FAILED[*]} "
  [[ "$TOOLS_FAILED" == *" status tool "* ]] && { fail "status tool"; continue; }

  OTHER=$((MAJOR == 10 ? 11 : 10))
  GOOD=$((MAJOR * 10000 + MINOR * 100 + PATCH))
  F="$WORK/fakes-$MAJOR"
  rm -rf "$F" "$WORK/.venv"
  fake_trt "$F/full" "$MAJOR" "$GOOD" parser plugin
  fake_trt "$F/old" "$MAJOR" $((MAJOR * 10000)) parser plugin
  fake_trt "$F/noparser" "$MAJOR" "$GOOD" plugin
  fake_trt "$F/other" "$OTHER" $((OTHER * 10000 + 100)) parser
  fake_trt "$F/venv/lib/python3.12/site-packages/tensorrt_libs" "$MAJOR" "$GOOD" parser plugin
  fake_trt "$F/site/tensorrt_libs" "$MAJOR" "$GOOD" parser
  fake_trt "$F/deps/lib/python3.12/site-packages/tensorrt_libs" "$MAJOR" "$GOOD" parser plugin-cudart
  fake_trt "$F/split" "$MAJOR" "$GOOD"
  fake_trt "$WORK/.venv/lib/python3.11/site-packages/tensorrt_libs" "$MAJOR" "$GOOD" parser plugin
  mv "$WORK/.venv" "$WORK/.venv-off"
  CUDA=(LD_LIBRARY_PATH="$WORK/cuda")
  V="$MAJOR.$MINOR.$PATCH"

  echo "-- status against stand-in libraries"
  if grep -q "libnvinfer\\.so\\.$MAJOR " <<<"$LDCONFIG" ||
     compgen -G "/usr/local/lib/python3*/*-packages/tensorrt_libs" >/dev/null || compgen -G "/usr/lib/python3*/*-packages/tensorrt_libs" >/dev/null; then
    echo "  (skipped 'no library': this machine has TensorRT installed)"
  else
    status_case "^reason: no TensorRT library \\(searched: libnvinfer\\.so\\.$MAJOR in \\\$TENSORRT_LIB_DIR \\(unset\\), the default library path" \
      "nothing installed -> no TensorRT library (searched: ...)"
  fi
  status_case "^reason: wrong TensorRT major \\(library $OTHER\\.1, built for $MAJOR\\)\$" \
    "only libnvinfer.so.$OTHER -> wrong TensorRT major" TENSORRT_LIB_DIR="$F/other"
  status_case "^reason: no TensorRT library \\(searched: libnvonnxparser\\.so\\.$MAJOR in $F/noparser" \
    "libnvinfer without the parser -> no TensorRT library (parser)" TENSORRT_LIB_DIR="$F/noparser" "${CUDA[@]}"
  status_case "^reason: TensorRT library older than the headers \\(library $MAJOR\\.0\\.0, built for $V\\)\$" \
    "an older minor than the headers -> refused (it lacks methods they declare)" TENSORRT_LIB_DIR="$F/old" "${CUDA[@]}"
  status_case "^detail: .*rebuild the addon against this TensorRT's own headers" \
    "... saying how to fix it" TENSORRT_LIB_DIR="$F/old" "${CUDA[@]}"
  if [ "$HAVE_REAL_DRIVER" = 0 ]; then
    status_case "^reason: no CUDA driver\$" "TensorRT but no libcuda.so.1 -> no CUDA driver" TENSORRT_LIB_DIR="$F/full"
  fi
  status_case "^reason: no CUDA driver\$" "cuInit fails (driver mismatch) -> no CUDA driver" \
    TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=mismatch
  status_case "^detail: .*CUDA_ERROR_SYSTEM_DRIVER_MISMATCH" "... with cuInit's error in detail" \
    TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=mismatch
  status_case "^reason: no GPU\$" "cuInit says no device -> no GPU" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=nodevice
  status_case "^reason: GPU too old \\(sm_61; TensorRT $MAJOR needs ≥ sm_75\\)\$" "sm_61 -> GPU too old" \
    TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=6.1
  status_case "^computeCapability: 6\\.1\$" "... and its compute capability reported" \
    TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=6.1
  status_case "^available: true\$" "\$TENSORRT_LIB_DIR + sm_89 -> available" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=8.9
  status_case "^tensorrtVersion: $V\$" "... library version $V" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}"
  status_case "^libraryPath: $F/full/libnvinfer\\.so\\.$MAJOR\$" "... library path" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}"
  status_case "^plugins: true\$" "... plugins loaded" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}"
  status_case "^gpuName: Fake GPU sm_89\$" "... GPU name" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}"
  status_case "^smCount: 42\$" "... SM count" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}"
  status_case "^libraryPath: $F/venv/lib/python3\\.12/site-packages/tensorrt_libs/libnvinfer\\.so\\.$MAJOR\$" \
    "pip tensorrt_libs in \$VIRTUAL_ENV" VIRTUAL_ENV="$F/venv" "${CUDA[@]}"
  status_case "^available: true\$" "... available" VIRTUAL_ENV="$F/venv" "${CUDA[@]}"
  status_case "^libraryPath: $F/site/tensorrt_libs/libnvinfer\\.so\\.$MAJOR\$" \
    "\$TENSORRT_PYTHON_SITE naming the tensorrt_libs folder itself" TENSORRT_PYTHON_SITE="$F/site/tensorrt_libs" "${CUDA[@]}"
  status_case "^plugins: false\$" "... no plugin library there -> plugins false" TENSORRT_PYTHON_SITE="$F/site/tensorrt_libs" "${CUDA[@]}"
  status_case "^available: true\$" "... still available (plugins are optional)" TENSORRT_PYTHON_SITE="$F/site/tensorrt_libs" "${CUDA[@]}"
  status_case "^available: true\$" "libnvinfer in \$TENSORRT_LIB_DIR, the parser only in pip's folder -> available" \
    TENSORRT_LIB_DIR="$F/split" TENSORRT_PYTHON_SITE="$F/site" "${CUDA[@]}"
  status_case "^libraryPath: $F/full/" "\$TENSORRT_LIB_DIR wins over pip" TENSORRT_LIB_DIR="$F/full" VIRTUAL_ENV="$F/venv" "${CUDA[@]}"
  status_case "^plugins: true\$" "pip's plugin library needing pip's CUDA runtime beside it -> loaded (preloaded)" \
    VIRTUAL_ENV="$F/deps" "${CUDA[@]}"
  status_case "^tensorrtBuild: 48\$" "... the library's build number" VIRTUAL_ENV="$F/deps" "${CUDA[@]}"

  if [[ "$TOOLS_FAILED" != *" builder/runtime smoke tool "* ]]; then
    echo "fake onnx" >"$WORK/model.onnx"
    SM="$(cd "$WORK/run" && env -i PATH="$PATH" HOME="$WORK/home" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" "$SMOKE" "$WORK/model.onnx" 2>&1)" ||
      fail "builder/runtime smoke run crashed: $SM"
    grep -q '^build: createInferBuilder failed' <<<"$SM" && pass "build_engine reaches createInferBuilder and reports its refusal" ||
      fail "build_engine against the stand-in: $SM"
    grep -q '^build with min > opt: batch sizes must satisfy' <<<"$SM" && pass "build_engine checks the profile's batch sizes" ||
      fail "build_engine batch check: $SM"
    grep -q '^load: createInferRuntime failed' <<<"$SM" && pass "Engine::load reaches createInferRuntime and reports its refusal" ||
      fail "Engine::load against the stand-in: $SM"
    grep -q '^routing: ok$' <<<"$SM" && pass "process_logger() routes each thread's messages to its own sink" || fail "logger routing: $SM"
    if grep -q '^face-multitask: TensorRT error: unscoped error$' <<<"$SM" && grep -q '^face-multitask: TensorRT warning: unscoped warning$' <<<"$SM" &&
      ! grep -q 'unscoped info' <<<"$SM"; then
      pass "messages from threads without a sink: errors and warnings on stderr, info dropped"
    else
      fail "messages from threads without a sink: $SM"
    fi
    # Two GPUs: the status describes device 0, while a build is judged by the device it runs on
    # (BuildOptions::device), as trtexec reads the properties of the device it selects.
    smoke_on() {  # smoke_on <FAKE_CUDA> <device>: the smoke tool's output
      (cd "$WORK/run" && env -i PATH="$PATH" HOME="$WORK/home" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA="$1" \
        "$SMOKE" "$WORK/model.onnx" "$2" 2>&1) || echo "the smoke tool exited $?"
    }
    status_case "^reason: GPU too old \\(sm_61; TensorRT $MAJOR needs ≥ sm_75\\)\$" "sm_61 then sm_89 -> the status is device 0's: GPU too old" \
      TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=6.1,8.9
    status_case "^gpuCount: 2\$" "... of 2 GPUs" TENSORRT_LIB_DIR="$F/full" "${CUDA[@]}" FAKE_CUDA=6.1,8.9
    SM1="$(smoke_on 6.1,8.9 1)"
    grep -q '^build: createInferBuilder failed' <<<"$SM1" && pass "... a build on device 1 (sm_89) is not refused for device 0's sm_61" ||
      fail "a build on device 1 (sm_89), device 0 sm_61: $SM1"
    SM1="$(smoke_on 8.9,6.1 1)"
    grep -q "^build: TensorRT is not available: CUDA device 1: GPU too old (sm_61; TensorRT $MAJOR needs ≥ sm_75)\$" <<<"$SM1" &&
      pass "sm_89 then sm_61 -> a build on device 1 is refused: GPU too old, naming the device" ||
      fail "a build on device 1 (sm_61), device 0 sm_89: $SM1"
    SM1="$(smoke_on 8.9 1)"
    grep -q '^build: CUDA device 1: CUDA_ERROR_INVALID_DEVICE' <<<"$SM1" && pass "one GPU -> a build on device 1 says there is no such device" ||
      fail "a build on device 1 of one GPU: $SM1"
    PL="$(sed -n 's/^process logger //p' <<<"$SM")"
    if [ -n "$PL" ] && [ "$(grep -c "^createInfer\(Builder\|Runtime\) logger $PL\$" <<<"$SM")" = 2 ]; then
      pass "the builder and the runtime are both given the one process-wide logger"
    else
      fail "the loggers given to TensorRT's factories: $SM"
    fi
  else
    fail "builder/runtime smoke tool"
  fi
  over_fake_tensorrt "$INC" "$MAJOR"
  mv "$WORK/.venv-off" "$WORK/.venv"
  status_case "^libraryPath: $WORK/\\.venv/lib/python3\\.11/site-packages/tensorrt_libs/libnvinfer\\.so\\.$MAJOR\$" \
    "the project's .venv (beside the addon) -> found" "${CUDA[@]}"
  rm -rf "$WORK/.venv"
done

echo
echo "== stub build (no TensorRT headers)"
STUB="$WORK/stub"
mkdir -p "$STUB"
if compile "$STUB/a.log" -c "$SRC/loader.cc" -o "$STUB/loader.o" && compile "$STUB/b.log" -c "$SRC/cuda_driver.cc" -o "$STUB/cuda_driver.o" &&
   compile "$STUB/c.log" -o "$STUB/tensorrt_status" "$SRC/tests/status_main.cc" "$STUB/loader.o" "$STUB/cuda_driver.o" -ldl; then
  pass "loader.cc and cuda_driver.cc compile without any TensorRT or CUDA header"
  STATUS_TOOL="$STUB/tensorrt_status"
  status_case "^reason: headers absent at build time\$" "status: headers absent at build time" LD_LIBRARY_PATH="$WORK/cuda" FAKE_CUDA=8.9
  status_case "^gpuName: Fake GPU sm_89\$" "... the GPU still reported" LD_LIBRARY_PATH="$WORK/cuda" FAKE_CUDA=8.9
else
  fail "stub build"
fi

echo
if [ "$WARNINGS" != 0 ]; then
  echo "$WARNINGS compiler warning(s) in native/tensorrt (shown above)"
  if [ "${CHECK_TENSORRT_WERROR:-0}" = 1 ]; then FAILS=$((FAILS + 1)); fi
fi
if [ "$FAILS" != 0 ]; then
  echo "RESULT: FAIL ($FAILS)"
  exit 1
fi
echo "RESULT: PASS (headers: $TENSORRT_INCLUDE_DIR)"
