#include "gemm_ceiling.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "baselines.h"
#include "measure.h"

#ifdef ALIBI_BENCH_WITH_OPENBLAS
#include <cblas.h>
#endif

extern char** environ;

namespace bench {

namespace {

class EigenSgemm : public Sgemm {
 public:
  explicit EigenSgemm(int n) : gemm_(n) {}
  const std::string& name() const override { return name_; }
  std::vector<double> call_seconds(int reps) override {
    return bench::call_seconds([&] { gemm_.run(); }, reps);
  }

 private:
  Gemm gemm_;
  std::string name_ = "eigen_sgemm";
};

#ifdef ALIBI_BENCH_WITH_OPENBLAS

// The child's environment variable that makes alibi-bench an OpenBLAS worker: "N THREADS".
constexpr const char* kWorkerVariable = "ALIBI_BENCH_OPENBLAS_WORKER";
// OpenBLAS's AVX-512 sgemm kernels: SkylakeX's, which Cooperlake and SapphireRapids reuse.
constexpr const char* kAvx512Core = "SkylakeX";

bool is_avx512_core(std::string core) {
  for (char& ch : core) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return core == "skylakex" || core == "cooperlake" || core == "sapphirerapids";
}

bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

// This process's environment for a worker: the worker variable, OPENBLAS_CORETYPE replaced by
// `core` (kept as it is when `core` is empty), and OpenBLAS's idle threads put to sleep at once
// (OPENBLAS_THREAD_TIMEOUT=4, 2^4 cycles) instead of spinning on the cores libalibi is timed on
// next, unless the caller chose a timeout.
std::vector<std::string> worker_environment(int n, int threads, const std::string& core) {
  std::vector<std::string> variables;
  bool timeout_set = false;
  for (char** entry = environ; *entry; ++entry) {
    const std::string variable = *entry;
    if (!core.empty() && variable.rfind("OPENBLAS_CORETYPE=", 0) == 0) continue;
    timeout_set = timeout_set || variable.rfind("OPENBLAS_THREAD_TIMEOUT=", 0) == 0;
    variables.push_back(variable);
  }
  variables.push_back(std::string(kWorkerVariable) + "=" + std::to_string(n) + " " +
                      std::to_string(threads));
  if (!core.empty()) variables.push_back("OPENBLAS_CORETYPE=" + core);
  if (!timeout_set) variables.push_back("OPENBLAS_THREAD_TIMEOUT=4");
  return variables;
}

// OpenBLAS's sgemm in a child process (this program again, as a worker). The worker says its
// core once started ("core NAME"); each request "REPS" is answered with REPS lines of seconds.
class OpenblasSgemm : public Sgemm {
 public:
  // `core` empty: the core OpenBLAS picks. ok() tells whether the worker started.
  OpenblasSgemm(int n, int threads, const std::string& core) {
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0) return;
    if (pipe2(from_child, O_CLOEXEC) != 0) {
      close(to_child[0]);
      close(to_child[1]);
      return;
    }
    spawn(worker_environment(n, threads, core), to_child[0], from_child[1]);
    close(to_child[0]);
    close(from_child[1]);
    requests_ = fdopen(to_child[1], "w");
    answers_ = fdopen(from_child[0], "r");
    char line[128];
    char core_name[64];
    if (pid_ > 0 && requests_ && answers_ && std::fgets(line, sizeof line, answers_) &&
        std::sscanf(line, "core %63s", core_name) == 1)
      core_ = core_name;
    name_ = "openblas_" + core_ + "_sgemm";
    for (char& ch : name_) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  }
  ~OpenblasSgemm() override {
    if (requests_) std::fclose(requests_);  // the worker reads end of file and exits
    if (answers_) std::fclose(answers_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  OpenblasSgemm(const OpenblasSgemm&) = delete;
  OpenblasSgemm& operator=(const OpenblasSgemm&) = delete;

  bool ok() const { return !core_.empty(); }
  const std::string& core() const { return core_; }
  const std::string& name() const override { return name_; }

  std::vector<double> call_seconds(int reps) override {
    std::fprintf(requests_, "%d\n", reps);
    std::fflush(requests_);
    std::vector<double> seconds;
    double value;
    for (int r = 0; r < reps; ++r) {
      if (std::fscanf(answers_, "%lf", &value) != 1) {
        std::fprintf(stderr, "alibi-bench: the %s worker stopped answering\n", name_.c_str());
        std::exit(1);
      }
      seconds.push_back(value);
    }
    return seconds;
  }

 private:
  void spawn(const std::vector<std::string>& environment, int stdin_fd, int stdout_fd) {
    std::vector<char*> envp;
    for (const std::string& variable : environment) envp.push_back(const_cast<char*>(variable.c_str()));
    envp.push_back(nullptr);
    char program[] = "alibi-bench";
    char* argv[] = {program, nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, stdin_fd, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
    if (posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv, envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }

  pid_t pid_ = -1;
  FILE* requests_ = nullptr;
  FILE* answers_ = nullptr;
  std::string core_, name_;
};

// "OpenBLAS 0.3.21", OPENBLAS_VERSION without its padding.
std::string openblas_version() {
  std::string version = OPENBLAS_VERSION;
  version.erase(0, version.find_first_not_of(' '));
  version.erase(version.find_last_not_of(' ') + 1);
  return version;
}

// Starts OpenBLAS with the core it picks and, where that core lacks AVX-512 on a CPU with it,
// with kAvx512Core as well.
void add_openblas_sgemms(int n, int threads, std::vector<std::unique_ptr<Sgemm>>& sgemms) {
  auto own_choice = std::make_unique<OpenblasSgemm>(n, threads, "");
  if (!own_choice->ok()) {
    std::fprintf(stderr, "alibi-bench: OpenBLAS worker did not start: no OpenBLAS ceiling\n");
    return;
  }
  const std::string core = own_choice->core();
  const bool avx512 = cpu_has_avx512();
  std::fprintf(stderr, "alibi-bench: %s picks core %s (CPU %s AVX-512)\n", openblas_version().c_str(),
               core.c_str(), avx512 ? "with" : "without");
  sgemms.push_back(std::move(own_choice));
  if (!avx512 || is_avx512_core(core)) return;
  std::fprintf(stderr,
               "alibi-bench: setting OPENBLAS_CORETYPE=%s in a child process to time OpenBLAS's "
               "AVX-512 sgemm as well\n",
               kAvx512Core);
  auto forced = std::make_unique<OpenblasSgemm>(n, threads, kAvx512Core);
  if (!forced->ok() || !is_avx512_core(forced->core())) {
    std::fprintf(stderr, "alibi-bench: OpenBLAS with OPENBLAS_CORETYPE=%s gave core %s: left out\n",
                 kAvx512Core, forced->ok() ? forced->core().c_str() : "(none, it did not start)");
    return;
  }
  sgemms.push_back(std::move(forced));
}

// Fixed values in [-1, 1).
std::vector<float> matrix_values(int n, unsigned seed) {
  std::vector<float> values(size_t(n) * n);
  for (float& value : values) {
    seed = seed * 1664525u + 1013904223u;
    value = float(seed >> 8) / float(1u << 23) - 1.0f;
  }
  return values;
}

int serve_openblas(int n, int threads) {
  openblas_set_num_threads(threads);
  const std::vector<float> a = matrix_values(n, 1), b = matrix_values(n, 2);
  std::vector<float> c(size_t(n) * n);
  const Run sgemm = [&] {
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  };
  sgemm();  // the first call starts OpenBLAS's threads
  std::printf("core %s\n", openblas_get_corename());
  std::fflush(stdout);
  for (int reps; std::scanf("%d", &reps) == 1;) {
    for (double seconds : call_seconds(sgemm, reps)) std::printf("%.9g\n", seconds);
    std::fflush(stdout);
  }
  return 0;
}

#endif  // ALIBI_BENCH_WITH_OPENBLAS

}  // namespace

double sgemm_flops(int n) { return 2.0 * double(n) * double(n) * double(n); }

std::vector<std::unique_ptr<Sgemm>> available_sgemms(int n, int threads) {
  std::vector<std::unique_ptr<Sgemm>> sgemms;
  sgemms.push_back(std::make_unique<EigenSgemm>(n));
#ifdef ALIBI_BENCH_WITH_OPENBLAS
  add_openblas_sgemms(n, threads, sgemms);
#else
  (void)threads;
  std::fprintf(stderr,
               "alibi-bench: built without OpenBLAS (not found when configured; Debian: "
               "libopenblas-dev): the GEMM ceiling is Eigen's alone\n");
#endif
  return sgemms;
}

std::optional<int> serve_as_openblas_worker() {
#ifdef ALIBI_BENCH_WITH_OPENBLAS
  const char* request = std::getenv(kWorkerVariable);
  int n, threads;
  if (request && std::sscanf(request, "%d %d", &n, &threads) == 2) return serve_openblas(n, threads);
#endif
  return std::nullopt;
}

}  // namespace bench
