#!/usr/bin/env bash
# packaging.cuda_backend_symbols: the CUDA backend library exports alibi_backend_entry and
# nothing else.
#
# usage: backend_symbols_test.sh NM LIBRARY
set -euo pipefail
if [ "$#" -ne 2 ]; then echo "usage: $0 NM LIBRARY" >&2; exit 2; fi
nm=$1 lib=$2

exported=$("$nm" -D --defined-only "$lib" | awk 'NF >= 3 {print $3}' | sed 's/@.*//' | sort -u)
echo "exported by $(basename "$lib"): $(echo $exported)"
if [ "$exported" != "alibi_backend_entry" ]; then
  echo "backend symbols test: FAIL: expected exactly alibi_backend_entry" >&2
  exit 1
fi
echo "backend symbols test: PASS"
