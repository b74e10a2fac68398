#!/usr/bin/env python3
"""PyTorch peers of alibi-gpu-bench on the same cases, as CSV rows with the same columns.

  flex_attention  torch.nn.attention.flex_attention under torch.compile, ALiBi as a score_mod,
                  causal and document masks as a block mask (decode: one query per sequence)
  sdpa_bias       torch.nn.functional.scaled_dot_product_attention with the ALiBi bias and the
                  mask materialized as one bf16 attn_mask (-inf where masked); skipped where that
                  tensor would not fit in free memory

Usage (progress on stderr, CSV on stdout; needs torch >= 2.5 and a CUDA device):
  alibi-gpu-bench --spec [--quick] [--case S] > cases.json
  python3 torch_peers.py --cases cases.json [--reps N] [--only flex|sdpa] [--list]

Timing matches alibi-gpu-bench: warm-up calls, then calls issued back to back on the current
stream with a CUDA event between each two, and the median of the intervals.
"""

import argparse
import inspect
import json
import math
import sys

try:  # --list needs no torch
    import torch
    import torch.nn.functional as F
except ImportError as error:
    torch = None
    TORCH_IMPORT_ERROR = error

MAX_BIAS = 8.0
WARMUP_CALLS = 2
SECONDS_PER_IMPLEMENTATION = 0.25
MIN_REPS, MAX_REPS = 3, 200
COPY_BYTES = 1 << 30
COPY_REPS = 20
FREE_MEMORY_SHARE = 0.85  # of the free device memory an SDPA case may plan to use
CSV_HEADER = ("case,kind,dtype,H,Hkv,D,N_or_Tk,mask,implementation,reps,median_ms,tflops,"
              "gb_per_s,frac_of_copy,max_abs_diff,note")
EXIT_SKIP = 77


# ------------------------------------------------------------------------------ cases (no torch)

def alibi_slopes(heads):
    """The contract's slopes (SPEC section 1), in double; the caller rounds them once to f32."""
    c = 1 << (heads.bit_length() - 1)
    m0 = 2.0 ** (-MAX_BIAS / c)
    m1 = 2.0 ** (-MAX_BIAS / (2 * c))
    return [m0 ** (h + 1) if h < c else m1 ** (2 * (h - c) + 1) for h in range(heads)]


def visible_cells(case):
    """Visible (query, key) cells per head, bottom-right aligned causal as libalibi counts them."""
    cells = 0
    for lq, lk in zip(case["lengths_q"], case["lengths_k"]):
        if case["causal"]:
            cells += sum(min(max(row + lk - lq + 1, 0), lk) for row in range(lq))
        else:
            cells += lq * lk
    return cells


def flops(case):
    return 4.0 * case["head_dim"] * visible_cells(case) * case["heads"]


def io_bytes(case):
    kv = 2 * sum(case["lengths_k"]) * case["kv_heads"] * case["head_dim"]
    q_and_out = 2 * sum(case["lengths_q"]) * case["heads"] * case["head_dim"]
    return 2.0 * (kv + q_and_out)


def is_batched(case):
    """Every sequence has the same lengths: a (B, H, S, D) batch. Otherwise packed documents."""
    return len(set(zip(case["lengths_q"], case["lengths_k"]))) == 1


def table_length(case):
    return case["lengths_k"][0] if case["kind"] == "decode" else sum(case["lengths_q"])


def sdpa_bias_bytes(case):
    batch_rows = case["lengths_q"][0] if is_batched(case) else sum(case["lengths_q"])
    batch_cols = case["lengths_k"][0] if is_batched(case) else sum(case["lengths_k"])
    return 2 * case["heads"] * batch_rows * batch_cols


def load_cases(path):
    with open(path) as file:
        cases = json.load(file)
    for case in cases:
        if not is_batched(case) and case["lengths_q"] != case["lengths_k"]:
            raise SystemExit(f"{case['name']}: packed documents need equal query and key lengths")
    return cases


# ------------------------------------------------------------------------------ the table

class Row:
    def __init__(self, implementation, note=""):
        self.implementation = implementation
        self.reps = 0
        self.median_ms = self.tflops = self.gb_per_s = self.frac_of_copy = None
        self.max_abs_diff = None
        self.note = note


def number(value, fmt):
    return "" if value is None else fmt % value


def print_row(columns, row):
    note = row.note.replace(",", ";").replace("\n", " ")
    fields = columns + [row.implementation, str(row.reps), number(row.median_ms, "%.4f"),
                        number(row.tflops, "%.2f"), number(row.gb_per_s, "%.1f"),
                        number(row.frac_of_copy, "%.3f"), number(row.max_abs_diff, "%.3g"), note]
    print(",".join(fields), flush=True)


def case_columns(case):
    return [case["name"], case["kind"], "bf16", str(case["heads"]), str(case["kv_heads"]),
            str(case["head_dim"]), str(table_length(case)),
            "causal" if case["causal"] else "full"]


def repetitions(ms_per_call, fixed):
    if fixed:
        return fixed
    wanted = math.ceil(SECONDS_PER_IMPLEMENTATION * 1e3 / max(ms_per_call, 1e-6))
    return min(max(wanted, MIN_REPS), MAX_REPS)


# ------------------------------------------------------------------------------ torch


def back_to_back_ms(call, reps):
    events = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
    events[0].record()
    for i in range(reps):
        call()
        events[i + 1].record()
    events[-1].synchronize()
    return [events[i].elapsed_time(events[i + 1]) for i in range(reps)]


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else 0.5 * (values[middle - 1] + values[middle])


def measure_copy():
    source = torch.zeros(COPY_BYTES, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    call = lambda: target.copy_(source)
    back_to_back_ms(call, WARMUP_CALLS)
    ms = median(back_to_back_ms(call, COPY_REPS))
    return ms, 2.0 * COPY_BYTES / (ms * 1e-3) * 1e-9


class Inputs:
    """q (B, H, Sq, D), k and v (B, Hkv, Sk, D): a batch of equal sequences, or one packed row
    of documents (B = 1) with each token's document id."""

    def __init__(self, case):
        generator = torch.Generator(device="cuda").manual_seed(1)
        batched = is_batched(case)
        batch = len(case["lengths_q"]) if batched else 1
        sq = case["lengths_q"][0] if batched else sum(case["lengths_q"])
        sk = case["lengths_k"][0] if batched else sum(case["lengths_k"])
        d = case["head_dim"]

        def uniform(heads, length):
            shape = (batch, heads, length, d)
            return torch.empty(shape, dtype=torch.bfloat16, device="cuda").uniform_(
                -1, 1, generator=generator)

        self.q = uniform(case["heads"], sq)
        self.k = uniform(case["kv_heads"], sk)
        self.v = uniform(case["kv_heads"], sk)
        # Bottom-right alignment: query row i sits at position i + offset of its sequence.
        self.offset = sk - sq if batched else 0
        self.documents = None if batched else torch.repeat_interleave(
            torch.arange(len(case["lengths_q"]), device="cuda", dtype=torch.int32),
            torch.tensor(case["lengths_q"], device="cuda"))
        self.slopes = torch.tensor(alibi_slopes(case["heads"]), dtype=torch.float32, device="cuda")
        # A single query row sees every key when causal (bottom-right): no mask at all.
        self.causal = case["causal"] and sq > 1
        self.gqa = case["heads"] != case["kv_heads"]


def mask_mod_of(inputs):
    """flex mask_mod of the case, or None when every cell is visible."""
    offset, documents = inputs.offset, inputs.documents
    if documents is None and not inputs.causal:
        return None
    if documents is None:
        return lambda b, h, q_idx, kv_idx: q_idx + offset >= kv_idx
    if not inputs.causal:
        return lambda b, h, q_idx, kv_idx: documents[q_idx] == documents[kv_idx]
    return lambda b, h, q_idx, kv_idx: (documents[q_idx] == documents[kv_idx]) & (q_idx >= kv_idx)


def block_mask_of(inputs):
    from torch.nn.attention.flex_attention import create_block_mask
    mask_mod = mask_mod_of(inputs)
    if mask_mod is None:
        return None
    kwargs = {}
    # Compiled, the mask is evaluated block by block instead of as one Sq x Sk tensor (64k^2).
    if "_compile" in inspect.signature(create_block_mask).parameters:
        kwargs["_compile"] = True
    return create_block_mask(mask_mod, None, None, inputs.q.shape[2], inputs.k.shape[2],
                             device="cuda", **kwargs)


def flex_call(compiled_flex, inputs):
    slopes, offset = inputs.slopes, inputs.offset

    def alibi(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx + offset - kv_idx).abs()

    block_mask = block_mask_of(inputs)
    return lambda: compiled_flex(inputs.q, inputs.k, inputs.v, score_mod=alibi,
                                 block_mask=block_mask, enable_gqa=inputs.gqa)


def materialized_bias(inputs):
    """(1, H, Sq, Sk) bf16: -slope * |qpos - kpos| where visible, -inf elsewhere; one head at a
    time, so the f32 temporaries stay one Sq x Sk plane."""
    sq, sk = inputs.q.shape[2], inputs.k.shape[2]
    rows = torch.arange(sq, dtype=torch.int32, device="cuda").unsqueeze(1) + inputs.offset
    cols = torch.arange(sk, dtype=torch.int32, device="cuda").unsqueeze(0)
    distance = (rows - cols).abs_().float()
    visible = torch.ones(sq, sk, dtype=torch.bool, device="cuda")
    if inputs.causal:
        visible &= rows >= cols
    if inputs.documents is not None:
        visible &= inputs.documents.unsqueeze(1) == inputs.documents.unsqueeze(0)
    hidden = ~visible
    heads = inputs.slopes.numel()
    bias = torch.empty(1, heads, sq, sk, dtype=torch.bfloat16, device="cuda")
    for h in range(heads):
        bias[0, h] = (distance * -inputs.slopes[h]).masked_fill_(hidden, float("-inf"))
    return bias


def sdpa_plan_bytes(case, inputs):
    """The bias, its f32 planes (distance, one head) and bool masks, and k, v expanded (GQA)."""
    plane = inputs.q.shape[2] * inputs.k.shape[2]
    expanded = 2 * inputs.k.numel() * (case["heads"] // case["kv_heads"]) * 2 if inputs.gqa else 0
    return sdpa_bias_bytes(case) + plane * (4 + 4 + 2) + expanded


def sdpa_call(inputs):
    group = inputs.q.shape[1] // inputs.k.shape[1]
    # Expanded once, outside the timing: SDPA's memory-efficient kernel takes no GQA with a bias.
    k = inputs.k.repeat_interleave(group, dim=1) if inputs.gqa else inputs.k
    v = inputs.v.repeat_interleave(group, dim=1) if inputs.gqa else inputs.v
    bias = materialized_bias(inputs)
    return lambda: F.scaled_dot_product_attention(inputs.q, k, v, attn_mask=bias)


def timed_row(case, implementation, call, copy_gb_per_s, fixed_reps):
    call()  # compiles (flex) and checks that it runs
    warmup = back_to_back_ms(call, WARMUP_CALLS)
    row = Row(implementation)
    row.reps = repetitions(warmup[-1], fixed_reps)
    row.median_ms = median(back_to_back_ms(call, row.reps))
    seconds = row.median_ms * 1e-3
    row.tflops = flops(case) / seconds * 1e-12
    if case["kind"] == "decode":
        row.gb_per_s = io_bytes(case) / seconds * 1e-9
        row.frac_of_copy = row.gb_per_s / copy_gb_per_s
    return row


def report_progress(row):
    line = f"  {row.implementation:<15} {row.median_ms:.4f} ms (median of {row.reps}), " \
           f"{row.tflops:.1f} TFLOP/s"
    if row.gb_per_s is not None:
        line += f", {row.gb_per_s:.1f} GB/s = {row.frac_of_copy:.2f} of copy"
    print(line, file=sys.stderr)


def failure_row(implementation, error):
    out_of_memory = isinstance(error, torch.cuda.OutOfMemoryError)
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return Row(implementation, ("skipped: out of memory: " if out_of_memory else "error: ") +
               reason), out_of_memory


def prepared_call(implementation, compiled_flex, case, inputs):
    """The call to time, or None with the reason when SDPA's bias would not fit."""
    if implementation == "flex_attention":
        return flex_call(compiled_flex, inputs), ""
    free, _ = torch.cuda.mem_get_info()
    need = sdpa_plan_bytes(case, inputs)
    if need > FREE_MEMORY_SHARE * free:
        return None, f"skipped: the bias needs {need / 2**30:.1f} GiB of {free / 2**30:.1f} free"
    return sdpa_call(inputs), "k and v expanded to H heads outside the timing" if inputs.gqa else ""


def run_case(compiled_flex, case, options, copy_gb_per_s):
    """Rows of the case's implementations; False when one failed for another reason than memory."""
    columns, ok, outputs = case_columns(case), True, {}
    inputs = Inputs(case)
    for implementation in options.implementations:
        call = None
        try:
            call, note = prepared_call(implementation, compiled_flex, case, inputs)
            if call is None:
                print_row(columns, Row(implementation, note))
                continue
            row = timed_row(case, implementation, call, copy_gb_per_s, options.reps)
            row.note = note
            outputs[implementation] = call()
            if len(outputs) == 2:
                first, second = outputs.values()
                row.max_abs_diff = (first.float() - second.float()).abs().max().item()
                row.note = "; ".join(filter(None, [note, "max_abs_diff: against flex_attention "
                                                         "(this bias is rounded to bf16)"]))
            report_progress(row)
        except Exception as error:  # one failed implementation must not stop the table
            row, out_of_memory = failure_row(implementation, error)
            ok = ok and out_of_memory
            print(f"  {implementation}: {row.note}", file=sys.stderr)
        finally:
            call = None
            torch.cuda.empty_cache()
        print_row(columns, row)
    return ok


def configure_compile():
    """Every case is a new shape: let torch.compile keep one graph per case."""
    from torch._dynamo import config
    from torch.nn.attention.flex_attention import flex_attention
    for limit in ("cache_size_limit", "recompile_limit"):
        if hasattr(config, limit):
            setattr(config, limit, 1024)
    return torch.compile(flex_attention, dynamic=False)


def print_copy_ceiling():
    copy_ms, copy_gb_per_s = measure_copy()
    print(f"ceiling: device-to-device copy of {COPY_BYTES >> 20} MiB: {copy_gb_per_s:.1f} GB/s",
          file=sys.stderr)
    row = Row("torch_copy_d2d", "read + write bytes")
    row.reps, row.median_ms, row.gb_per_s, row.frac_of_copy = COPY_REPS, copy_ms, copy_gb_per_s, 1.0
    print_row([f"copy_d2d_{COPY_BYTES >> 20}mib", "ceiling", "bf16", "", "", "", str(COPY_BYTES),
               ""], row)
    return copy_gb_per_s


def run(options, cases):
    if torch is None:
        print(f"torch_peers.py: no torch: {TORCH_IMPORT_ERROR}", file=sys.stderr)
        return EXIT_SKIP
    if not torch.cuda.is_available():
        print("torch_peers.py: no CUDA device visible to torch", file=sys.stderr)
        return EXIT_SKIP
    try:
        compiled_flex = configure_compile()
    except ImportError as error:
        print(f"torch_peers.py: torch {torch.__version__} has no flex_attention (2.5 or later "
              f"needed): {error}", file=sys.stderr)
        return 1
    gpu = torch.cuda.get_device_name(0)
    print(f"# {' '.join(sys.argv)}\n# gpu: {gpu}; torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}\n{CSV_HEADER}", flush=True)
    print(f"torch_peers.py: {gpu}; torch {torch.__version__}; {len(cases)} cases", file=sys.stderr)
    copy_gb_per_s = print_copy_ceiling()
    all_ok = True
    for i, case in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {case['name']}: {flops(case) * 1e-12:.3g} TFLOP",
              file=sys.stderr)
        all_ok = run_case(compiled_flex, case, options, copy_gb_per_s) and all_ok
    return 0 if all_ok else 1


def list_cases(options, cases):
    for case in cases:
        bias = sdpa_bias_bytes(case) / 2**30 if "sdpa_bias" in options.implementations else 0
        layout = "batched" if is_batched(case) else "packed documents"
        print(f"{case['name']}: {flops(case) * 1e-12:.4g} TFLOP, {io_bytes(case) * 1e-9:.4g} GB, "
              f"{layout}, sdpa bias {bias:.3g} GiB")
    return 0


def parse_options():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, help="JSON from alibi-gpu-bench --spec")
    parser.add_argument("--reps", type=int, default=0,
                        help="timed calls per implementation (default: enough for 0.25 s)")
    parser.add_argument("--only", choices=("flex", "sdpa"), help="one implementation only")
    parser.add_argument("--list", action="store_true",
                        help="print the cases with their sizes and exit (needs no torch)")
    options = parser.parse_args()
    all_implementations = {"flex": "flex_attention", "sdpa": "sdpa_bias"}
    options.implementations = [all_implementations[options.only]] if options.only else \
        list(all_implementations.values())
    return options


def main():
    options = parse_options()
    cases = load_cases(options.cases)
    return list_cases(options, cases) if options.list else run(options, cases)


if __name__ == "__main__":
    sys.exit(main())
