// alibi-dist-bench: context parallelism under MPI (issue 15). One causal sequence split across
// the ranks of MPI_COMM_WORLD, one thread per rank: per rank, the time of
// alibi_dist_attention_forward and _backward, their GFLOP/s against this machine's one-thread
// f32 GEMM rate (the ceiling), the bytes each rank receives against an all-gather of K and V,
// and the load balance (max / mean workload). The baseline, in the same run: rank 0's
// single-process alibi_attention_forward / _backward of the whole sequence, one thread.
//
//   mpirun -np 2 build/bench/alibi-dist-bench [--tokens 16384] [--heads 16] [--dim 128]
//                                             [--chunk 512] [--reps 3]
#include <alibi/alibi.h>
#include <alibi/alibi_dist.h>
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "baselines.h"

namespace {

struct Options {
  int64_t tokens = 16384;
  int heads = 16, dim = 128, chunk = 512, reps = 3;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const long long value = std::atoll(argv[i + 1]);
    if (name == "--tokens") o.tokens = value;
    else if (name == "--heads") o.heads = int(value);
    else if (name == "--dim") o.dim = int(value);
    else if (name == "--chunk") o.chunk = int(value);
    else if (name == "--reps") o.reps = int(value);
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      std::exit(2);
    }
  }
  return o;
}

void check(alibi_status status, const char* what) {
  if (status == ALIBI_STATUS_SUCCESS) return;
  std::fprintf(stderr, "%s: %s (%s)\n", what, alibi_status_string(status),
               alibi_last_error_message());
  MPI_Abort(MPI_COMM_WORLD, 1);
}

// The collectives over MPI_COMM_WORLD, counting the bytes this rank receives from the others.
struct CountingMpi {
  int rank = 0;
  int64_t received_from_others = 0;

  static int alltoallv(void* user, const void* send, const int64_t* send_counts,
                       const int64_t* send_displs, void* recv, const int64_t* recv_counts,
                       const int64_t* recv_displs) {
    auto* self = static_cast<CountingMpi*>(user);
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int r = 0; r < size; ++r) {
      if (send_displs[r] + send_counts[r] > INT_MAX || recv_displs[r] + recv_counts[r] > INT_MAX)
        return 1;  // past MPI's int counts
      if (r != self->rank) self->received_from_others += recv_counts[r];
    }
    const auto ints = [size](const int64_t* values) {
      return std::vector<int>(values, values + size);
    };
    return MPI_Alltoallv(send, ints(send_counts).data(), ints(send_displs).data(), MPI_BYTE, recv,
                         ints(recv_counts).data(), ints(recv_displs).data(), MPI_BYTE,
                         MPI_COMM_WORLD);
  }

  static int allgather(void* user, const void* send, void* recv, int64_t bytes_per_rank) {
    auto* self = static_cast<CountingMpi*>(user);
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (bytes_per_rank > INT_MAX) return 1;
    self->received_from_others += bytes_per_rank * (size - 1);
    return MPI_Allgather(send, int(bytes_per_rank), MPI_BYTE, recv, int(bytes_per_rank), MPI_BYTE,
                         MPI_COMM_WORLD);
  }
};

// A (tokens, heads, dim) f32 tensor of its own, random values or zeros.
struct Tensor {
  std::vector<float> data;
  alibi_tensor_t handle = nullptr;
  Tensor(alibi_context_t ctx, std::vector<int64_t> shape, uint32_t seed) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    data.resize(size_t(n));
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& x : data) x = seed ? uniform(rng) : 0.0f;
    check(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, int(shape.size()), shape.data(), nullptr,
                            data.data(), &handle),
          "alibi_tensor_wrap");
  }
  ~Tensor() { alibi_tensor_destroy(handle); }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
};

// The attention problem of `tokens` rows on one rank: q, k, v, dout and the outputs.
struct Problem {
  Tensor q, k, v, out, lse, dout, dq, dk, dv, dslopes;
  Problem(alibi_context_t ctx, int64_t tokens, const Options& o, uint32_t seed)
      : q(ctx, {tokens, o.heads, o.dim}, seed),
        k(ctx, {tokens, o.heads, o.dim}, seed + 1),
        v(ctx, {tokens, o.heads, o.dim}, seed + 2),
        out(ctx, {tokens, o.heads, o.dim}, 0),
        lse(ctx, {o.heads, tokens}, 0),
        dout(ctx, {tokens, o.heads, o.dim}, seed + 3),
        dq(ctx, {tokens, o.heads, o.dim}, 0),
        dk(ctx, {tokens, o.heads, o.dim}, 0),
        dv(ctx, {tokens, o.heads, o.dim}, 0),
        dslopes(ctx, {o.heads}, 0) {}
};

double seconds_of(const std::function<void()>& call) {
  const auto start = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over reps of the slowest rank's time of a collective call.
double timed(int reps, const std::function<void()>& call) {
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t = seconds_of(call);
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    times.push_back(t);
  }
  return median(times);
}

double one_thread_gemm_rate() {
  omp_set_num_threads(1);
  bench::Gemm gemm(1024);
  gemm.run();
  std::vector<double> times;
  for (int r = 0; r < 5; ++r) times.push_back(seconds_of([&] { gemm.run(); }));
  return gemm.flops() / median(times);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const Options o = parse(argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  alibi_context_t ctx = nullptr;
  check(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), "alibi_context_create");
  check(alibi_context_set_num_threads(ctx, 1), "alibi_context_set_num_threads");
  CountingMpi counter{rank, 0};
  alibi_comm_ops ops{};
  ops.struct_size = sizeof ops;
  ops.alltoallv = &CountingMpi::alltoallv;
  ops.allgather = &CountingMpi::allgather;
  alibi_comm_t comm = nullptr;
  check(alibi_comm_create(&ops, &counter, rank, size, &comm), "alibi_comm_create");

  const int32_t cu[2] = {0, int32_t(o.tokens)};
  alibi_mask_t mask = nullptr;
  check(alibi_mask_create_varlen(ctx, 1, cu, cu, 1, &mask), "alibi_mask_create_varlen");
  alibi_dist_plan_t plan = nullptr;
  check(alibi_dist_plan_create(mask, size, o.chunk, &plan), "alibi_dist_plan_create");
  int64_t local = 0;
  check(alibi_dist_plan_get_num_local_tokens(plan, &local), "get_num_local_tokens");
  std::vector<int64_t> workloads(static_cast<size_t>(size));
  check(alibi_dist_plan_get_workloads(plan, workloads.data()), "get_workloads");
  int64_t total_cells = 0, most_cells = 0;
  for (int64_t w : workloads) total_cells += w, most_cells = std::max(most_cells, w);

  Problem mine(ctx, local, o, 11 + uint32_t(rank) * 10);
  const double forward_s = timed(o.reps, [&] {
    check(alibi_dist_attention_forward(ctx, comm, plan, mine.q.handle, mine.k.handle,
                                       mine.v.handle, nullptr, mine.out.handle, mine.lse.handle),
          "alibi_dist_attention_forward");
  });
  counter.received_from_others = 0;
  check(alibi_dist_attention_forward(ctx, comm, plan, mine.q.handle, mine.k.handle, mine.v.handle,
                                     nullptr, mine.out.handle, mine.lse.handle),
        "alibi_dist_attention_forward");
  const int64_t forward_bytes = counter.received_from_others;
  const double backward_s = timed(o.reps, [&] {
    check(alibi_dist_attention_backward(ctx, comm, plan, mine.q.handle, mine.k.handle,
                                        mine.v.handle, nullptr, mine.out.handle, mine.lse.handle,
                                        mine.dout.handle, mine.dq.handle, mine.dk.handle,
                                        mine.dv.handle, mine.dslopes.handle),
          "alibi_dist_attention_backward");
  });
  std::vector<int64_t> bytes_by_rank(static_cast<size_t>(size));
  MPI_Gather(&forward_bytes, 1, MPI_INT64_T, bytes_by_rank.data(), 1, MPI_INT64_T, 0,
             MPI_COMM_WORLD);

  // The single-process baseline on rank 0 (the others wait at the barrier).
  double single_forward_s = 0.0, single_backward_s = 0.0, gemm_rate = 0.0;
  if (rank == 0) {
    Problem whole(ctx, o.tokens, o, 7);
    std::vector<double> f, b;
    for (int r = 0; r < o.reps; ++r) {
      f.push_back(seconds_of([&] {
        check(alibi_attention_forward(ctx, whole.q.handle, whole.k.handle, whole.v.handle, mask,
                                      nullptr, whole.out.handle, whole.lse.handle),
              "alibi_attention_forward");
      }));
      b.push_back(seconds_of([&] {
        check(alibi_attention_backward(ctx, whole.q.handle, whole.k.handle, whole.v.handle, mask,
                                       nullptr, whole.out.handle, whole.lse.handle,
                                       whole.dout.handle, whole.dq.handle, whole.dk.handle,
                                       whole.dv.handle, whole.dslopes.handle),
              "alibi_attention_backward");
      }));
    }
    single_forward_s = median(f), single_backward_s = median(b);
    gemm_rate = one_thread_gemm_rate();
  }
  MPI_Barrier(MPI_COMM_WORLD);

  if (rank == 0) {
    // FLOPs: 4 D per visible cell per head forward (two GEMMs), 2.5 times that backward.
    const double forward_flops = 4.0 * o.dim * double(most_cells) * o.heads;
    const double all_gather_bytes = double(size - 1) / size * double(o.tokens) * o.heads * o.dim *
                                    sizeof(float) * 2.0;
    const auto [fewest, most] = std::minmax_element(bytes_by_rank.begin(), bytes_by_rank.end());
    const std::string of_all_gather =
        size == 1 ? "-"
                  : std::to_string(double(*fewest) / all_gather_bytes).substr(0, 5) + " to " +
                        std::to_string(double(*most) / all_gather_bytes).substr(0, 5);
    std::printf("| ranks | tokens | H | D | chunk | max/mean workload | forward s | vs 1 process | "
                "forward GFLOP/s/rank | of 1-thread GEMM | backward s | vs 1 process | "
                "backward GFLOP/s/rank | of 1-thread GEMM | forward MiB received per rank | of a "
                "K/V all-gather |\n");
    std::printf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    std::printf("| %d | %lld | %d | %d | %d | %.3f | %.3f | %.2fx | %.1f | %.2f | %.3f | %.2fx | "
                "%.1f | %.2f | %.1f to %.1f | %s |\n",
                size, (long long)o.tokens, o.heads, o.dim, o.chunk,
                double(most_cells) / (double(total_cells) / size), forward_s,
                single_forward_s / forward_s, forward_flops / forward_s * 1e-9,
                forward_flops / forward_s / gemm_rate, backward_s, single_backward_s / backward_s,
                2.5 * forward_flops / backward_s * 1e-9,
                2.5 * forward_flops / backward_s / gemm_rate, double(*fewest) / (1 << 20),
                double(*most) / (1 << 20), of_all_gather.c_str());
    std::printf("\nbaseline (rank 0, one process, one thread): forward %.3f s, backward %.3f s; "
                "1-thread GEMM ceiling %.1f GFLOP/s\n",
                single_forward_s, single_backward_s, gemm_rate * 1e-9);
  }

  alibi_dist_plan_destroy(plan);
  alibi_mask_destroy(mask);
  alibi_comm_destroy(comm);
  alibi_context_destroy(ctx);
  MPI_Finalize();
  return 0;
}
