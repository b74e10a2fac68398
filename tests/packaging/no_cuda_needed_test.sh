#!/usr/bin/env bash
# packaging.no_cuda_dependency: libalibi itself must load on machines without CUDA, so its
# dynamic section may not ask for any CUDA library (the CUDA backend is dlopen'ed instead).
#
# usage: no_cuda_needed_test.sh READELF LIBRARY
set -euo pipefail
if [ "$#" -ne 2 ]; then echo "usage: $0 READELF LIBRARY" >&2; exit 2; fi
readelf=$1 lib=$2

needed=$("$readelf" -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
echo "NEEDED by $(basename "$lib"): $(echo $needed)"
cuda=$(grep -Ei 'cuda|cublas' <<< "$needed" || true)
if [ -n "$cuda" ]; then
  echo "no CUDA dependency test: FAIL: $lib needs $(echo $cuda)" >&2
  exit 1
fi
echo "no CUDA dependency test: PASS"
