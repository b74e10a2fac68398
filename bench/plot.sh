#!/bin/sh
# Draws GFLOP/s by case (prefill, varlen, memory and backward cases; decode is memory-bound and
# left out) for libalibi, the unfused baseline and the f32 GEMM ceiling timed with the case (the
# fastest sgemm row of the case), from the CSV alibi-bench prints. The legend names the sgemms
# that gave the ceilings.  Usage: plot.sh RESULTS.csv OUT.png   (alibi-bench --plot runs it.)
set -eu
if [ "$#" -ne 2 ]; then
  echo "usage: $0 RESULTS.csv OUT.png" >&2
  exit 2
fi
csv=$1
png=$2
data=$(mktemp /tmp/alibi-plot-XXXXXX)
names=$(mktemp /tmp/alibi-plot-names-XXXXXX)
trap 'rm -f "$data" "$names"' EXIT

# Columns of the CSV: 1 case, 2 kind, 9 implementation, 12 gflop_per_s. Rows of the case whose
# implementation ends in _sgemm are its GEMM ceilings; the fastest is the ceiling.
awk -F, -v names="$names" '
  NR == 1 { next }
  $2 == "ceiling" || $2 == "decode" || $1 ~ /^paged_/ { next }
  !($1 in seen) { seen[$1] = 1; order[++n] = $1 }
  $9 ~ /_sgemm$/ {
    if (!($1 in best) || $12 + 0 > best[$1] + 0) { best[$1] = $12; best_name[$1] = $9 }
    next
  }
  { gflops[$1, $9] = $12 }
  END {
    for (i = 1; i <= n; ++i) {
      name = order[i]
      unfused = gflops[name, "unfused"]
      printf "%s %s %s %s\n", name, gflops[name, "libalibi"], (unfused == "" ? "NaN" : unfused),
             best[name]
      used[best_name[name]] = 1
    }
    for (gemm in used) list = list (list == "" ? "" : ", ") gemm
    print list > names
  }' "$csv" > "$data"

if [ "$(wc -l < "$data")" -lt 1 ]; then
  echo "$0: no prefill, varlen or backward rows in $csv" >&2
  exit 1
fi

gnuplot <<GNUPLOT
set terminal pngcairo noenhanced size 1600,800 font "sans,11"
set output "$png"
set title "libalibi CPU attention: GFLOP/s = 4·D·(visible cells)·H / s (backward cases: 2.5 times that)"
set ylabel "GFLOP/s"
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0
set grid ytics
set key top right horizontal
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by 90 right font ",9" nomirror
set bmargin 24
set rmargin 6
plot "$data" using 2:xtic(1) title "libalibi" linecolor rgb "#1f77b4", \
     "" using 3 title "unfused Eigen baseline" linecolor rgb "#ff7f0e", \
     "" using 4 title "f32 GEMM ceiling: best sgemm 2048^3 timed with the case ($(cat "$names"))" \\
       linecolor rgb "#aaaaaa"
GNUPLOT
