#!/bin/sh
# Runs alibi-bench RUNS times (default 5) over the cases the CPU performance targets name and
# prints, for each target, the value of every run and their median. Each run times its own
# ceilings, so every figure is a ratio within one run. WHICH: forward (issue 3's targets),
# backward (issue 14's) or all (default).
#   Usage: targets.sh PATH/TO/alibi-bench [RUNS [forward|backward|all]]   (progress on stderr)
set -eu
if [ "$#" -lt 1 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 PATH/TO/alibi-bench [RUNS [forward|backward|all]]" >&2
  exit 2
fi
bench=$1
runs=${2:-5}
which=${3:-all}
case $which in
  forward) cases="--case prefill_h16_d128_n2048 --case decode_h32_d128_tk32768 --case memory_h8_d128_n16384" ;;
  backward) cases="--case backward_h16_d128_n2048 --case backward_varlen --case backward_memory" ;;
  all) cases="--case prefill_h16_d128_n2048 --case decode_h32_d128_tk32768 --case memory_h8_d128_n16384
              --case backward_h16_d128_n2048 --case backward_varlen --case backward_memory" ;;
  *)
    echo "$0: WHICH is forward, backward or all, not '$which'" >&2
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

# CSV columns: 1 case, 9 implementation, 12 gflop_per_s, 13 frac_of_gemm, 14 speedup_vs_unfused,
# 15 gb_per_s, 16 frac_of_copy, 17 peak_extra_mib, 18 memory_bound_mib.
column() {  # case implementation column
  awk -F, -v c="$1" -v impl="$2" -v col="$3" '$1 == c && $9 == impl { print $col }' "$csv"
}
bf16_over_f32() {  # mask: libalibi's bf16 GFLOP/s over its f32 GFLOP/s, run by run
  awk -F, -v bf16="prefill_h16_d128_n2048_$1_bf16" -v f32="prefill_h16_d128_n2048_$1_f32" '
    $9 != "libalibi" { next }
    $1 == bf16 { b[++nb] = $12 }
    $1 == f32 { f[++nf] = $12 }
    END { for (i = 1; i <= nb; ++i) printf "%.3f\n", b[i] / f[i] }' "$csv"
}
decode_over_read() {  # libalibi's decode GB/s over the read-only stream's, run by run
  awk -F, -v c=decode_h32_d128_tk32768_f32 '
    $1 != c { next }
    $9 == "libalibi" { d[++nd] = $15 }
    $9 == "read_stream" { r[++nr] = $15 }
    END { for (i = 1; i <= nd; ++i) printf "%.3f\n", d[i] / r[i] }' "$csv"
}
report() {  # name target values...
  name=$1
  target=$2
  shift 2
  median=$(printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
  printf '| %s | %s | %s | %s |\n' "$name" "$target" "$*" "$median"
}

forward_targets() {
  report "causal f32 H16 D128 N2048: of GEMM" ">= 0.6" $(column prefill_h16_d128_n2048_causal_f32 libalibi 13)
  report "causal f32 H16 D128 N2048: vs unfused" ">= 3" $(column prefill_h16_d128_n2048_causal_f32 libalibi 14)
  report "full f32 H16 D128 N2048: of GEMM" ">= 0.6" $(column prefill_h16_d128_n2048_full_f32 libalibi 13)
  report "causal bf16 / f32 GFLOP/s" ">= 0.85" $(bf16_over_f32 causal)
  report "full bf16 / f32 GFLOP/s" ">= 0.85" $(bf16_over_f32 full)
  report "decode Tk 32768 H32 D128 f32: of copy" ">= 0.7" $(column decode_h32_d128_tk32768_f32 libalibi 16)
  report "read-only stream: of copy (context)" "" $(column decode_h32_d128_tk32768_f32 read_stream 16)
  report "decode: of the read-only stream (context)" "" $(decode_over_read)
  report "N 16384 H8 D128 causal: peak extra MiB" "< 64" $(column memory_h8_d128_n16384_causal_f32 libalibi 17)
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

echo "| target | wanted | per run | median |"
echo "|---|---|---|---|"
if [ "$which" != backward ]; then forward_targets; fi
if [ "$which" != forward ]; then backward_targets; fi
