#!/usr/bin/env bash
# One-shot check of the CUDA plugins on a machine with an NVIDIA GPU.
#
#   OUT=/some/dir bash scripts/gpu_check.sh
#
# 1. records the machine (nvidia-smi, nvcc, cmake, compiler, which dev packages exist);
# 2. builds: the full tree's CUDA targets when the framework's dependencies are
#    present (Boost, oneDNN, tinyxml2, GoogleTest, ...), else only the CUDA plugins
#    and their sdk-only tests (tests/cuda/standalone, no dependency but the CUDA
#    toolkit); CUDA code for this GPU's architecture only, to keep it fast;
# 3. runs the CUDA tests (ctest; fixture tests too with the full build);
# 4. benchmarks one stage with corvid-cuda-bench (synthetic weights) for the
#    169M, 1.5B and 3B shapes: cuda fp16, cuda fp16i8, cuda fp16i8 *12+;
# 5. with the full build and corvid-bench present: corvid-bench --perf for the same
#    shapes and strategies plus "cuda fp16 *12 -> cpu fp32".
# Everything goes under $OUT (summary.txt first). Each step has a timeout and the
# script stops starting new steps after ~8.5 minutes, so it finishes within 10.
# Set CORVID_GPU_BUILD_DIR to reuse an existing build directory.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/out/gpu_check}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
START=$(date +%s)
JOBS=$(nproc 2>/dev/null || echo 4)
BUDGET_S=${CORVID_GPU_CHECK_BUDGET_S:-510}

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }
time_left() { [ "$(elapsed)" -lt "$BUDGET_S" ]; }
# run_step NAME TIMEOUT_S LOGFILE CMD...: runs with a timeout, records PASS/FAIL/TIMEOUT.
run_step() {
  local name=$1 to=$2 log=$3
  shift 3
  if ! time_left; then
    say "SKIP  $name (time budget used: $(elapsed)s)"
    return 2
  fi
  local t0=$(date +%s)
  timeout --kill-after=10 "$to" "$@" >"$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then say "PASS  $name (${dt}s) -> $(basename "$log")"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then say "TIMEOUT $name after ${to}s -> $(basename "$log")"
  else say "FAIL  $name (rc $rc, ${dt}s) -> $(basename "$log")"; tail -5 "$log" | sed 's/^/      /' | tee -a "$SUMMARY"
  fi
  return $rc
}

say "== corvid gpu_check $(date -u +%FT%TZ) in $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo no-git))"

# ---- 1. machine
{
  echo "--- nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi not available"
  echo "--- nvcc"; (/usr/local/cuda/bin/nvcc --version || nvcc --version) 2>&1
  echo "--- cmake"; cmake --version 2>&1 | head -1
  echo "--- c++"; (c++ --version || g++ --version) 2>&1 | head -1
  echo "--- ninja"; ninja --version 2>&1 || echo "no ninja"
  echo "--- cpu"; nproc; grep -m1 "model name" /proc/cpuinfo
  echo "--- memory"; free -g 2>&1 | head -2
  echo "--- dev packages (headers found)"
  for h in boost/program_options.hpp oneapi/dnnl/dnnl.hpp tinyxml2.h gtest/gtest.h nlohmann/json.hpp pcre2.h utf8proc.h editline/readline.h benchmark/benchmark.h; do
    if [ -e "/usr/include/$h" ] || [ -e "/usr/local/include/$h" ]; then echo "  yes $h"; else echo "  NO  $h"; fi
  done
} >"$OUT/machine.txt" 2>&1
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "GPU: ${GPU:-none found by nvidia-smi}"
grep -E "^\s+(yes|NO)" "$OUT/machine.txt" | tr -s ' ' | paste -sd' ' | sed 's/^/deps:/' | tee -a "$SUMMARY"

GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
ARCH=90-real
if nvidia-smi >/dev/null 2>&1; then ARCH=native; fi

# ---- 2. build
MODE=""
BUILD=""
if [ -n "${CORVID_GPU_BUILD_DIR:-}" ] && [ -x "$CORVID_GPU_BUILD_DIR/tests/test_cuda_device" ]; then
  BUILD=$CORVID_GPU_BUILD_DIR
  MODE=prebuilt
  [ -f "$BUILD/CMakeCache.txt" ] && grep -q "corvid_cuda_standalone" "$BUILD/CMakeCache.txt" && MODE=prebuilt-standalone
  say "using prebuilt $BUILD ($MODE)"
else
  BUILD=$ROOT/build-gpu-check
  if run_step "configure (full tree)" 120 "$OUT/configure_full.log" \
      cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=$ARCH \
      -DCORVID_BUILD_BENCHMARKS=OFF; then
    TARGETS=(cuda_fp16 cuda_int8 test_cuda_host test_cuda_device corvid-cuda-bench)
    for t in test_cuda_fixtures cpu_onednn corvid-bench corvid-run; do
      if cmake --build "$BUILD" --target help 2>/dev/null | grep -qE "(^|[ :])$t([ :]|$)"; then TARGETS+=("$t"); fi
    done
    if run_step "build (full tree: ${TARGETS[*]})" 300 "$OUT/build_full.log" \
        cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}"; then
      MODE=full
    fi
  fi
  if [ -z "$MODE" ]; then
    say "full build unavailable: building the CUDA plugins alone (tests/cuda/standalone)"
    BUILD=$ROOT/build-gpu-check-min
    if run_step "configure (standalone)" 120 "$OUT/configure_min.log" \
        cmake -S "$ROOT/tests/cuda/standalone" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES=$ARCH &&
       run_step "build (standalone)" 300 "$OUT/build_min.log" cmake --build "$BUILD" -j"$JOBS"; then
      MODE=standalone
    else
      say "RESULT build failed; see the logs above"
      exit 1
    fi
  fi
fi
say "build mode: $MODE, dir $BUILD, $(elapsed)s so far"

# ---- 3. tests
run_step "ctest (CUDA tests)" 240 "$OUT/ctest.log" \
  ctest --test-dir "$BUILD" -R "Cuda|cuda" --output-on-failure --timeout 200
grep -E "tests passed|tests failed|Skipped|\(Failed\)" "$OUT/ctest.log" | head -20 | sed 's/^/      /' | tee -a "$SUMMARY"
# The measured errors against the references ("[ measured ]" lines).
for t in test_cuda_device test_cuda_fixtures; do
  [ -x "$BUILD/tests/$t" ] || continue
  run_step "$t (verbose)" 120 "$OUT/$t.log" "$BUILD/tests/$t"
  grep "\[ measured \]" "$OUT/$t.log" | sed 's/^/      /' | tee -a "$SUMMARY"
done

if grep -q "no CUDA device" "$OUT/test_cuda_device.log" 2>/dev/null; then
  say "WARNING: the GPU tests were SKIPPED: $(grep -m1 -o 'no CUDA device[^]]*' "$OUT/test_cuda_device.log")"
fi

# ---- 4. stage benchmark (synthetic weights)
BENCH=$BUILD/bin/corvid-cuda-bench
: >"$OUT/bench_cuda.log"
[ -x "$BENCH" ] || say "FAIL  corvid-cuda-bench was not built ($BENCH)"
for shape in 169M 1.5B 3B; do
  [ -x "$BENCH" ] || break
  for cfg in "fp16" "fp16i8" "fp16i8 --resident 12"; do
    set -- $cfg
    prec=$1; shift
    extra=("$@")
    tokens=64
    [ ${#extra[@]} -gt 0 ] && tokens=16  # streaming is PCIe-bound: fewer tokens
    name="bench $shape cuda $prec${extra[*]:+ *12+}"
    if run_step "$name" 120 "$OUT/bench_tmp.log" "$BENCH" --shape "$shape" --precision "$prec" "${extra[@]}" \
        --tokens $tokens --prefill 256; then :; fi
    { echo "### $name"; cat "$OUT/bench_tmp.log"; } >>"$OUT/bench_cuda.log"
    grep "^RESULT" "$OUT/bench_tmp.log" | sed 's/^/      /' | tee -a "$SUMMARY"
  done
done
rm -f "$OUT/bench_tmp.log"

# ---- 5. corvid-bench --perf (full build only)
if [ "$MODE" = full ] && [ -x "$BUILD/bin/corvid-bench" ]; then
  "$BUILD/bin/corvid-bench" --help >"$OUT/corvid_bench_help.txt" 2>&1
  : >"$OUT/corvid_bench.log"
  for shape in 169M 1.5B 3B; do
    for strat in "cuda fp16" "cuda fp16i8" "cuda fp16i8 *12+" "cuda fp16 *12 -> cpu fp32"; do
      run_step "corvid-bench --perf $shape \"$strat\"" 150 "$OUT/cb_tmp.log" \
        "$BUILD/bin/corvid-bench" --perf --shape "$shape" --strategy "$strat"
      { echo "### $shape $strat"; cat "$OUT/cb_tmp.log"; } >>"$OUT/corvid_bench.log"
      tail -3 "$OUT/cb_tmp.log" | sed 's/^/      /' | tee -a "$SUMMARY"
    done
  done
  rm -f "$OUT/cb_tmp.log"
else
  say "SKIP  corvid-bench --perf (needs the full build and apps/bench; mode $MODE)"
fi

say "== done in $(elapsed)s"
