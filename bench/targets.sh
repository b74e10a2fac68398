#!/bin/sh
# Runs alibi-bench RUNS times (default 5) over the cases the CPU performance targets name and
# prints, for each target, the value of every run and their median. Each run times its own
# ceilings, so every figure is a ratio within one run. WHICH: forward (issue 3's targets and
# issue 16's), backward (issue 14's), paged (issue 17's) or all (default). CSV: a file to keep
# every run's rows in.
#   Usage: targets.sh PATH/TO/alibi-bench [RUNS [forward|backward|paged|all [CSV]]]
#   (progress on stderr)
set -eu
if [ "$#" -lt 1 ] || [ "$#" -gt 4 ]; then
  echo "usage: $0 PATH/TO/alibi-bench [RUNS [forward|backward|paged|all [CSV]]]" >&2
  exit 2
fi
bench=$1
runs=${2:-5}
which=${3:-all}
kept=${4:-}
forward_cases="--case prefill_h16_d128_n2048 --case prefill_h32_d128_n4096_causal
               --case prefill_h16_d64_n512_causal --case decode_h32_d128_tk32768
               --case decode_h32_hkv8_d128_tk32768 --case memory_h8_d128_n16384"
backward_cases="--case backward_h16_d128_n2048 --case backward_varlen --case backward_memory"
paged_cases="--case paged_"
case $which in
  forward) cases=$forward_cases ;;
  backward) cases=$backward_cases ;;
  paged) cases=$paged_cases ;;
  all) cases="$forward_cases $backward_cases $paged_cases" ;;
  *)
    echo "$0: WHICH is forward, backward, paged or all, not '$which'" >&2
    exit 2
    ;;
esac
csv=$(mktemp /tmp/alibi-targets-XXXXXX)
trap 'rm -f "$csv"' EXIT

i=1
while [ "$i" -le "$runs" ]; do
  echo "run $i of $runs" >&2
  # shellcheck disable=SC2086 # $cases is a list of arguments
  "$bench" $cases 2>/dev/null | sed 1d >> "$csv"
  i=$((i + 1))
done
if [ -n "$kept" ]; then cp "$csv" "$kept"; fi

# CSV columns: 1 case, 9 implementation, 12 gflop_per_s, 13 frac_of_gemm, 14 speedup_vs_unfused,
# 15 gb_per_s, 16 frac_of_copy, 17 peak_extra_mib, 18 memory_bound_mib.
column() {  # case implementation column
  awk -F, -v c="$1" -v impl="$2" -v col="$3" '$1 == c && $9 == impl { print $col }' "$csv"
}
half_over_f32() {  # shape dtype: libalibi's GFLOP/s in dtype over its f32 GFLOP/s, run by run
  awk -F, -v half="prefill_$1_$2" -v f32="prefill_$1_f32" '
    $9 != "libalibi" { next }
    $1 == half { h[++nh] = $12 }
    $1 == f32 { f[++nf] = $12 }
    END { for (i = 1; i <= nh; ++i) printf "%.3f\n", h[i] / f[i] }' "$csv"
}
decode_over_read() {  # case [implementation [stream]]: its GB/s over the stream's (default the
  # read-only stream; read_blocks: a paged case's blocks read in table order), run by run
  awk -F, -v c="$1" -v impl="${2:-libalibi}" -v stream="${3:-read_stream}" '
    $1 != c { next }
    $9 == impl { d[++nd] = $15 }
    $9 == stream { r[++nr] = $15 }
    END { for (i = 1; i <= nd; ++i) printf "%.3f\n", d[i] / r[i] }' "$csv"
}
paged_over_contiguous() {  # case column: libalibi_paged's value over libalibi's, run by run
  awk -F, -v c="$1" -v col="$2" '
    $1 != c { next }
    $9 == "libalibi_paged" { p[++np] = $col }
    $9 == "libalibi" { q[++nq] = $col }
    END { for (i = 1; i <= np; ++i) printf "%.3f\n", p[i] / q[i] }' "$csv"
}
report() {  # name target values...
  name=$1
  target=$2
  shift 2
  median=$(printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
  printf '| %s | %s | %s | %s |\n' "$name" "$target" "$*" "$median"
}

# Issue 3's targets, then issue 16's (of GEMM: of the fastest sgemm timed with the case).
forward_targets() {
  report "causal f32 H16 D128 N2048: vs unfused" ">= 3" $(column prefill_h16_d128_n2048_causal_f32 libalibi 14)
  report "decode Tk 32768 H32 D128 f32: of copy" ">= 0.7" $(column decode_h32_d128_tk32768_f32 libalibi 16)
  report "read-only stream: of copy (context)" "" $(column decode_h32_d128_tk32768_f32 read_stream 16)
  report "N 16384 H8 D128 causal: peak extra MiB" "< 64" $(column memory_h8_d128_n16384_causal_f32 libalibi 17)
  for goal in h16_d128_n2048_causal:0.7 h32_d128_n4096_causal:0.7 h16_d128_n2048_full:0.75 \
    h16_d64_n512_causal:0.5; do
    shape=${goal%:*}
    report "$shape f32: of GEMM" ">= ${goal#*:}" $(column "prefill_${shape}_f32" libalibi 13)
    for half in bf16 f16; do
      report "$shape $half / f32 GFLOP/s" ">= 1" $(half_over_f32 "$shape" "$half")
    done
  done
  for decode in decode_h32_d128_tk32768_f32 decode_h32_hkv8_d128_tk32768_f32; do
    report "$decode: of the read-only stream" ">= 0.8" $(decode_over_read "$decode")
  done
}

backward_targets() {  # report() sets $name, hence $shape here
  for shape in h16_d128_n2048_causal_f32 h16_d128_n2048_causal_bf16 h16_d128_n2048_full_f32 \
    h16_d128_n2048_full_bf16 varlen_h16_d128_l37-512-1999-64_causal_f32; do
    report "backward $shape: of GEMM" ">= 0.5" $(column "backward_$shape" libalibi 13)
    report "backward $shape: vs unfused" ">= 2" $(column "backward_$shape" libalibi 14)
  done
  for shape in h16_d128_n2048_causal_f32 memory_h2_d128_n16384_causal_f32; do
    report "backward $shape: peak extra MiB" "<= $(column "backward_$shape" libalibi 18 | head -1)" \
      $(column "backward_$shape" libalibi 17)
  done
}

# Issue 17's: paged decode (bf16, blocks of 16 tokens, shuffled) within 10% of the contiguous
# call on the same keys and >= 0.8 of the read-only stream; speculative decode (_qN) and the
# chunked prefill for context.
paged_targets() {
  for decode in $(awk -F, '$1 ~ /^paged_decode_/ && $1 !~ /_q[0-9]+_/ && !seen[$1]++ { print $1 }' "$csv"); do
    shape=${decode#paged_decode_}
    report "paged decode $shape: paged / contiguous GB/s" ">= 0.9" \
      $(paged_over_contiguous "$decode" 15)
    report "paged decode $shape: of the read-only stream" ">= 0.8" \
      $(decode_over_read "$decode" libalibi_paged)
    report "contiguous decode $shape: of the read-only stream (context)" "" \
      $(decode_over_read "$decode")
    report "plain read of its blocks in table order: of the read-only stream (context)" "" \
      $(decode_over_read "$decode" read_blocks)
    report "paged decode $shape: of the plain read of its blocks (context)" "" \
      $(decode_over_read "$decode" libalibi_paged read_blocks)
  done
  for decode in $(awk -F, '$1 ~ /^paged_decode_.*_q[0-9]+_/ && !seen[$1]++ { print $1 }' "$csv"); do
    shape=${decode#paged_decode_}
    report "speculative decode $shape: paged / contiguous GB/s (context)" "" \
      $(paged_over_contiguous "$decode" 15)
    report "speculative decode $shape: paged of the read-only stream (context)" "" \
      $(decode_over_read "$decode" libalibi_paged)
  done
  prefill=paged_prefill_b4_h32_hkv8_d128_q512_tk4096_bs16_bf16
  shape=${prefill#paged_prefill_}
  report "chunked prefill $shape: paged / contiguous GFLOP/s" "" $(paged_over_contiguous "$prefill" 12)
  report "chunked prefill $shape: paged of GEMM" "" $(column "$prefill" libalibi_paged 13)
}

echo "| target | wanted | per run | median |"
echo "|---|---|---|---|"
case $which in
  forward) forward_targets ;;
  backward) backward_targets ;;
  paged) paged_targets ;;
  all) forward_targets; backward_targets; paged_targets ;;
esac
