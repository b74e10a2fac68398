# Markdown summary of a bench/gpu/run.sh run (POSIX awk). Files, in this order: commands.txt,
# stages.tsv, then the CSV tables of alibi-gpu-bench and torch_peers.py (columns: 1 case, 2 kind,
# 3 dtype, 4 H, 5 Hkv, 6 D, 7 N_or_Tk, 8 mask, 9 implementation, 10 reps, 11 median_ms,
# 12 tflops, 13 gb_per_s, 14 frac_of_copy, 15 max_abs_diff, 16 note).

BEGIN {
  FS = ","
  FA2_CAUSAL_TFLOPS = 335  # the FA2 H100 forward figure issue 7 quotes (causal, D=128)
  DECODE_TARGET = 0.70     # of the device-to-device copy bandwidth
  split("libalibi_fused libalibi_cublas flex_attention sdpa_bias", IMPL, " ")
  split("fused cuBLAS flex SDPA", IMPL_TITLE, " ")
}

FILENAME ~ /commands\.txt$/ { commands[++ncommands] = $0; next }
FILENAME ~ /stages\.tsv$/ {
  split($0, field, "\t")
  stages[++nstages] = "| " field[1] " | " field[2] " | " field[3] " |"
  next
}
/^# gpu: / { table = FILENAME; sub(/.*\//, "", table); gpus[table] = substr($0, 8); next }
/^#/ || $1 == "case" || NF < 16 { next }
$2 == "ceiling" { ceilings[++nceilings] = "| " $9 " | " $11 " | " $13 " |"; next }
{
  if (!($1 in kind)) {
    order[++ncases] = $1
    kind[$1] = $2; dim[$1] = $6; len[$1] = $7; mask[$1] = $8
  }
  key = $1 SUBSEP $9
  tflops[key] = $12; gbps[key] = $13; frac[key] = $14; note[key] = $16
  if ($16 ~ /^(skipped|error|mismatch)/) notes[++nnotes] = "- `" $1 "` " $9 ": " $16
}

# The value of a field of a row, or what stands in its place.
function cell(c, impl, value,   k) {
  k = c SUBSEP impl
  if (!(k in note)) return "-"
  if (note[k] ~ /^skipped/) return "skipped"
  if (note[k] ~ /^error/) return "error"
  if (note[k] ~ /^mismatch/) return value " (mismatch)"
  return value
}

function measured(c, impl,   k) {
  k = c SUBSEP impl
  return (k in tflops) && tflops[k] != ""
}

function ratio(c, a, b) {
  if (!measured(c, a) || !measured(c, b) || tflops[c SUBSEP b] + 0 == 0) return "-"
  return sprintf("%.2f", tflops[c SUBSEP a] / tflops[c SUBSEP b])
}

function print_prefill_table(   i, c, j, line) {
  print "## Prefill and varlen: TFLOP/s (4 * D * visible cells * H / time)"
  print ""
  print "| case | fused | cuBLAS | flex | SDPA | fused / flex | fused / SDPA |"
  print "|---|--:|--:|--:|--:|--:|--:|"
  for (i = 1; i <= ncases; i++) {
    c = order[i]
    if (kind[c] == "decode") continue
    line = "| `" c "`"
    for (j = 1; j <= 4; j++) line = line " | " cell(c, IMPL[j], tflops[c SUBSEP IMPL[j]])
    print line " | " ratio(c, "libalibi_fused", "flex_attention") " | " \
          ratio(c, "libalibi_fused", "sdpa_bias") " |"
  }
  print ""
}

function print_decode_table(   i, c, j, k, line) {
  print "## Decode: GB/s of K, V, q and out (fraction of the device-to-device copy)"
  print ""
  print "| case | fused | cuBLAS | flex | SDPA |"
  print "|---|--:|--:|--:|--:|"
  for (i = 1; i <= ncases; i++) {
    c = order[i]
    if (kind[c] != "decode") continue
    line = "| `" c "`"
    for (j = 1; j <= 4; j++) {
      k = c SUBSEP IMPL[j]
      line = line " | " cell(c, IMPL[j], gbps[k] " (" frac[k] ")")
    }
    print line " |"
  }
  print ""
}

# Issue 7's targets, forward bf16 D=128 N >= 4k: fused >= flex on every row, fused >= FA2's
# causal figure, decode >= 70% of the copy.
function print_targets(   i, c, rows, beat_flex, with_flex, causal, beat_fa2, decode, fast) {
  for (i = 1; i <= ncases; i++) {
    c = order[i]
    if (dim[c] != 128) continue
    if (kind[c] == "decode") {
      if (!measured(c, "libalibi_fused")) continue
      decode++
      if (frac[c SUBSEP "libalibi_fused"] + 0 >= DECODE_TARGET) fast++
      continue
    }
    if (len[c] + 0 < 4096 || !measured(c, "libalibi_fused")) continue
    rows++
    if (measured(c, "flex_attention")) {
      with_flex++
      if (tflops[c SUBSEP "libalibi_fused"] + 0 >= tflops[c SUBSEP "flex_attention"] + 0) beat_flex++
    }
    if (mask[c] == "causal") {
      causal++
      if (tflops[c SUBSEP "libalibi_fused"] + 0 >= FA2_CAUSAL_TFLOPS) beat_fa2++
    }
  }
  print "## Targets (D=128; prefill and varlen with N >= 4096)"
  print ""
  printf "- fused >= flex_attention: %d of %d rows with a flex figure (%d rows in all)\n", \
         beat_flex, with_flex, rows
  printf "- fused >= %d TFLOP/s (FA2's H100 causal forward figure): %d of %d causal rows\n", \
         FA2_CAUSAL_TFLOPS, beat_fa2, causal
  printf "- decode, fused >= %.0f%% of the copy: %d of %d rows\n", 100 * DECODE_TARGET, fast, decode
  print ""
}

END {
  print "# GPU run summary"
  print ""
  for (f in gpus) print "- " f ": " gpus[f]
  print ""
  print "## Stages"
  print ""
  print "| stage | status | seconds |"
  print "|---|---|--:|"
  for (i = 1; i <= nstages; i++) print stages[i]
  print ""
  if (ncases > 0) {
    print_targets()
    print_prefill_table()
    print_decode_table()
  }
  if (nceilings > 0) {
    print "## Ceilings"
    print ""
    print "| implementation | median ms | GB/s (read + write) |"
    print "|---|--:|--:|"
    for (i = 1; i <= nceilings; i++) print ceilings[i]
    print ""
  }
  if (nnotes > 0) {
    print "## Skipped, failed and mismatched rows"
    print ""
    for (i = 1; i <= nnotes; i++) print notes[i]
    print ""
  }
  print "## Commands"
  print ""
  print "```"
  for (i = 1; i <= ncommands; i++) print commands[i]
  print "```"
}
