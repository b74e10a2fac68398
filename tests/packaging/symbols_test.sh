#!/usr/bin/env bash
# packaging.symbols: the shared library exports only alibi_* symbols, and every function the
# public header declares (ALIBI_API) is exported.
#
# usage: symbols_test.sh LIBRARY HEADER
set -euo pipefail
if [ "$#" -ne 2 ]; then echo "usage: $0 LIBRARY HEADER" >&2; exit 2; fi
lib=$1 header=$2

exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 {print $3}' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || { echo "symbols test: FAIL: $lib exports nothing" >&2; exit 1; }

status=0
others=$(grep -v '^alibi_' <<< "$exported" || true)
if [ -n "$others" ]; then
  echo "symbols test: FAIL: $lib exports symbols outside alibi_*:" >&2
  sed 's/^/    /' <<< "$others" >&2
  status=1
fi

declared=$(grep -h '^ALIBI_API' "$header" | grep -oE '\balibi_[A-Za-z0-9_]+ *\(' | tr -d '( ' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
if [ -n "$missing" ]; then
  echo "symbols test: FAIL: declared in $(basename "$header") but not exported:" >&2
  sed 's/^/    /' <<< "$missing" >&2
  status=1
fi

echo "symbols test: $(wc -l <<< "$exported") exported, $(wc -l <<< "$declared") declared: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
