#!/usr/bin/env bash
# Prepares a GPU visit from this machine. The device image has CUDA, PyTorch and
# compute-sanitizer but neither Eigen nor GoogleTest, so the CUDA build (sm_90) happens here and
# only what runs travels: libalibi, libalibi_cuda, alibi_tests and alibi-gpu-bench, in run.sh's
# build-tree layout, in DIR (default .gpu, which this script adds to .git/info/exclude). Then,
# through the device tool, with DIR carried:
#
#   export LD_LIBRARY_PATH=$PWD/.gpu:/usr/local/cuda/lib64 ALIBI_GPU_BUILD_DIR=$PWD/.gpu
#   bash bench/gpu/run.sh /tmp/r info tests sanitize bench torch summary; tar czf $OUT/r.tgz -C /tmp/r .
#
#   bench/gpu/carry.sh [DIR]    (build tree: build-gpu, configured when it has no CMakeCache.txt)
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(realpath -m "${1:-$repo/.gpu}")
build=$repo/build-gpu
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$repo" -B "$build" -DALIBI_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DALIBI_BUILD_BINDINGS=OFF -DCMAKE_BUILD_TYPE=Release > /dev/null
fi
cmake --build "$build" -j "$(nproc)" --target alibi alibi_cuda alibi_tests alibi_gpu_bench > /dev/null
rm -rf "$dir"
mkdir -p "$dir/tests" "$dir/bench/gpu"
# Files, not links: a link travels as a link.
cp -L "$build/libalibi.so.0" "$build/libalibi_cuda.so.0" "$dir/"
cp "$build/tests/alibi_tests" "$dir/tests/"
cp "$build/bench/gpu/alibi-gpu-bench" "$dir/bench/gpu/"
case $dir in
  "$repo"/*)
    exclude=$(cd "$repo" && realpath -m "$(git rev-parse --git-path info/exclude)")
    relative=/${dir#"$repo"/}/
    grep -qxF "$relative" "$exclude" 2> /dev/null || echo "$relative" >> "$exclude"
    ;;
esac
du -sh "$dir"
