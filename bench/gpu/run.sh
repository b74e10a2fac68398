#!/usr/bin/env bash
# The GPU run of issue 7 in one command: build (if needed), record the machine, compute-sanitizer
# (memcheck, racecheck) over a reduced set of CUDA tests, the whole ctest, alibi-gpu-bench, the
# PyTorch peers (when torch imports), and a markdown summary. Everything lands in OUTDIR; every
# stage's exit status and duration go to OUTDIR/stages.tsv, and a failed stage never stops the
# later ones. Exit status: 0 when no stage failed, else 1.
#
#   bench/gpu/run.sh [OUTDIR] [STAGE...]
#     OUTDIR  default: $OUT, else ./gpu-results
#     STAGE   build info sanitize tests bench torch summary (default: all of them, in this order)
#
# Environment (all optional):
#   ALIBI_GPU_BUILD_DIR   the build tree (default: build-gpu in the repository), or the folder
#                         bench/gpu/carry.sh filled on a machine without a GPU (the device image
#                         has no Eigen or GoogleTest to build with: leave out the build stage).
#                         The build stage configures it when it has no CMakeCache.txt:
#                           cmake -S . -B build-gpu -DALIBI_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
#                           cmake --build build-gpu -j16
#   ALIBI_GPU_BENCH_ARGS  case selection for both benchmarks, e.g. "--quick" or
#                         "--case prefill_h16kv16_d128" (default: every case)
#   ALIBI_MEMCHECK_FILTER, ALIBI_RACECHECK_FILTER   gtest filters of the sanitizer runs
#   JOBS                  build and ctest parallelism (default 16)
#   STAGE_TIMEOUT         seconds after which a stage is stopped (default 3600)
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-${OUT:-./gpu-results}}
if [ "$#" -gt 0 ]; then shift; fi
stages=${*:-build info sanitize tests bench torch summary}
build=${ALIBI_GPU_BUILD_DIR:-$repo/build-gpu}
bench_args=${ALIBI_GPU_BENCH_ARGS:-}
jobs=${JOBS:-16}
stage_timeout=${STAGE_TIMEOUT:-3600}
# Fused and cuBLAS paths, GQA, head dims, masks, tile edges, builders; not the test that makes
# cudaMalloc fail on purpose (the sanitizer would report it as an API error).
memcheck_filter=${ALIBI_MEMCHECK_FILTER:-'CudaTest.*:All/CudaPathsTest.*:All/AttentionGqaTest.*CUDA*:All/AttentionHeadDimTest.*CUDA*:All/AttentionMaskTypeTest.*CUDA_bf16*:All/AttentionBlockEdgeTest.*CUDA_6?x*:Device/AttentionVarlen.*CUDA:Device/AttentionEmptyTensors.*CUDA:Device/Builder*.*CUDA-CudaTest.CudaFailuresCarryTheCudaMessage'}
# The fused kernel's shared-memory tiles (bf16: every head dim, every mask type) and the
# cuBLAS path's kernels (f32 tile edges around 64 rows and keys).
racecheck_filter=${ALIBI_RACECHECK_FILTER:-'All/CudaPathsTest.*bf16*:All/AttentionMaskTypeTest.*CUDA_bf16*:All/AttentionBlockEdgeTest.*CUDA_6?x6?_causal'}

mkdir -p "$out"
out=$(cd "$out" && pwd)
bench="$build/bench/gpu/alibi-gpu-bench"
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)

# Runs a command under the stage timeout and appends it to commands.txt.
logged() {
  printf '$ %s\n' "$*" >> "$out/commands.txt"
  timeout "$stage_timeout" "$@"
}

stage_build() {
  if [ ! -f "$build/CMakeCache.txt" ]; then
    logged cmake -S "$repo" -B "$build" -DALIBI_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      >> "$out/build.log" 2>&1
  fi
  logged cmake --build "$build" -j "$jobs" >> "$out/build.log" 2>&1
}

stage_info() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "working tree changes:"
    git -C "$repo" status --short 2>/dev/null || true
    echo "host: $(uname -srm), $(nproc) cores"
    grep -E '^CMAKE_CUDA_ARCHITECTURES|^CMAKE_BUILD_TYPE|^CMAKE_CUDA_COMPILER:' \
      "$build/CMakeCache.txt" 2>/dev/null || true
    python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' \
      2>&1 || true
  } > "$out/info.txt"
  logged nvidia-smi > "$out/nvidia-smi.txt" 2>&1
  logged nvidia-smi -q > "$out/nvidia-smi-q.txt" 2>&1
}

stage_sanitize_memcheck() {
  logged "$sanitizer" --tool memcheck --error-exitcode 1 \
    "$build/tests/alibi_tests" --gtest_filter="$memcheck_filter" > "$out/sanitize-memcheck.log" 2>&1
}

stage_sanitize_racecheck() {
  logged "$sanitizer" --tool racecheck --racecheck-report all --error-exitcode 1 \
    "$build/tests/alibi_tests" --gtest_filter="$racecheck_filter" > "$out/sanitize-racecheck.log" 2>&1
}

# ctest where the build tree is this machine's own; a carried tree (bench/gpu/carry.sh, whose
# ctest files name another machine's paths) runs the test binary itself.
stage_tests() {
  if [ -f "$build/CTestTestfile.cmake" ]; then
    logged ctest --test-dir "$build" --output-on-failure -j "$jobs" > "$out/ctest.log" 2>&1
  else
    logged "$build/tests/alibi_tests" > "$out/ctest.log" 2>&1
  fi
}

stage_bench() {
  # shellcheck disable=SC2086  # bench_args is a list of words
  logged "$bench" $bench_args > "$out/alibi_gpu_bench.csv" 2> "$out/alibi_gpu_bench.log"
}

stage_torch() {
  if ! python3 -c 'import torch' > "$out/torch_peers.log" 2>&1; then
    echo "torch does not import: the PyTorch peers are skipped" >> "$out/torch_peers.log"
    return 77
  fi
  # shellcheck disable=SC2086
  logged "$bench" --spec $bench_args > "$out/cases.json"
  logged python3 "$repo/bench/gpu/torch_peers.py" --cases "$out/cases.json" \
    > "$out/torch_peers.csv" 2>> "$out/torch_peers.log"
}

stage_summary() {
  awk -f "$repo/bench/gpu/summary.awk" "$out/commands.txt" "$out/stages.tsv" \
    "$out/alibi_gpu_bench.csv" "$out/torch_peers.csv" > "$out/summary.md"
}

# Runs a stage function, records "name<TAB>status<TAB>seconds" in stages.tsv; never fails.
run_stage() {
  name=$1
  start=$(date +%s)
  echo "[$(date -u +%H:%M:%S)] $name" >&2
  set +e
  (set -e; "$2")
  rc=$?
  set -e
  case $rc in
    0) status=ok ;;
    77) status=skipped ;;
    124) status="timed out after ${stage_timeout} s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  printf '%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - start))" >> "$out/stages.tsv"
  echo "  $name: $status" >&2
}

# stages.tsv and commands.txt accumulate, so that the stages may run in separate invocations.
touch "$out/commands.txt" "$out/stages.tsv" "$out/alibi_gpu_bench.csv" "$out/torch_peers.csv"
for stage in $stages; do
  case $stage in
    build) run_stage build stage_build ;;
    info) run_stage info stage_info ;;
    sanitize)
      run_stage sanitize-memcheck stage_sanitize_memcheck
      run_stage sanitize-racecheck stage_sanitize_racecheck
      ;;
    tests) run_stage ctest stage_tests ;;
    bench) run_stage alibi-gpu-bench stage_bench ;;
    torch) run_stage torch-peers stage_torch ;;
    summary) run_stage summary stage_summary ;;
    *) echo "run.sh: unknown stage '$stage'" >&2; exit 2 ;;
  esac
done
echo "results in $out" >&2
! grep -qE $'\t(failed|timed out)' "$out/stages.tsv"
