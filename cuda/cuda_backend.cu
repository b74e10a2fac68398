// The CUDA backend: libalibi_cuda.so.0 exports alibi_backend_entry, which libalibi finds with
// dlopen/dlsym when a CUDA context is asked for. Every entry point makes its device current for
// the call (restoring the caller's), runs on the context's stream and returns a Status.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

// Makes a device current for a scope and gives the caller's back.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ == device) return;
    error_ = cudaSetDevice(device);
    restore_ = error_ == cudaSuccess && previous_ >= 0;
  }
  ~DeviceGuard() {
    if (restore_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
  bool restore_ = false;
};

[[noreturn]] void fail_with(alibi_status code, std::string message) {
  throw BackendError({code, std::move(message)});
}

size_t element_size(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F16:
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I64: return 8;
    default: return 4;
  }
}

size_t byte_count(const TensorView& t) { return size_t(t.numel()) * element_size(t.dtype); }

bool is_contiguous(const TensorView& t) {
  int64_t expected = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expected) return false;
    expected *= t.shape[d];
  }
  return true;
}

// Launch grids put query heads on the y axis.
void require_grid_heads(int64_t heads) {
  if (heads > 65535)
    fail_with(ALIBI_STATUS_UNSUPPORTED,
              std::to_string(heads) + " heads: the CUDA backend takes at most 65535");
}

// ------------------------------------------------------------------------ strided copies

struct Layout {
  int ndim;
  int64_t shape[ALIBI_MAX_DIMS];
  int64_t strides[ALIBI_MAX_DIMS];
};

// Element i of the row-major packed array <-> its place in the strided tensor.
template <class Word>
__global__ void copy_strided_kernel(Word* strided, Word* packed, Layout layout, int64_t n,
                                    bool to_packed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offset = 0, rest = i;
    for (int d = layout.ndim - 1; d >= 0; --d) {
      offset += rest % layout.shape[d] * layout.strides[d];
      rest /= layout.shape[d];
    }
    if (to_packed)
      packed[i] = strided[offset];
    else
      strided[offset] = packed[i];
  }
}

template <class Word>
void launch_copy_strided(const TensorView& t, void* packed, bool to_packed, cudaStream_t stream) {
  Layout layout{t.ndim, {}, {}};
  for (int d = 0; d < t.ndim; ++d) {
    layout.shape[d] = t.shape[d];
    layout.strides[d] = t.strides[d];
  }
  copy_strided_kernel<Word><<<grid_blocks(t.numel(), 256), 256, 0, stream>>>(
      static_cast<Word*>(t.data), static_cast<Word*>(packed), layout, t.numel(), to_packed);
  CUDA_CHECK_LAUNCH();
}

void copy_strided(const TensorView& t, void* packed, bool to_packed, cudaStream_t stream) {
  switch (element_size(t.dtype)) {
    case 2: return launch_copy_strided<uint16_t>(t, packed, to_packed, stream);
    case 4: return launch_copy_strided<uint32_t>(t, packed, to_packed, stream);
    default: return launch_copy_strided<unsigned long long>(t, packed, to_packed, stream);
  }
}

// ----------------------------------------------------------------------------- paths

enum class Path { kFused, kCublas };

// ALIBI_CUDA_PATH, read on every call: unset or "auto" (the fused kernel where it applies),
// "cublas" (always the cuBLAS path) or "fused" (UNSUPPORTED where the fused kernel does not apply).
Path choose_path(const ForwardArgs& args) {
  const std::string why_not = fused_attention_unsupported(args);
  const char* variable = std::getenv("ALIBI_CUDA_PATH");
  const std::string choice = variable ? variable : "";
  if (choice.empty() || choice == "auto") return why_not.empty() ? Path::kFused : Path::kCublas;
  if (choice == "cublas") return Path::kCublas;
  if (choice != "fused")
    fail_with(ALIBI_STATUS_INVALID_ARGUMENT,
              "ALIBI_CUDA_PATH = '" + choice + "' is not auto, fused or cublas");
  if (!why_not.empty())
    fail_with(ALIBI_STATUS_UNSUPPORTED,
              "ALIBI_CUDA_PATH = fused, but the fused kernel does not take " + why_not);
  return Path::kFused;
}

// ----------------------------------------------------------------------------- context

struct HostArray {
  const void* data;
  size_t bytes;
};

size_t aligned_16(size_t bytes) { return (bytes + 15) / 16 * 16; }

// Pinned host buffers for the small arrays calls upload. A buffer is reused once the copy out of
// it has run, so a call waits for earlier work on its stream only when kMaxBuffers copies are
// still pending.
class StagingPool {
 public:
  struct Buffer {
    void* pinned = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;  // recorded after the copy out of `pinned`
  };

  StagingPool() = default;
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;
  ~StagingPool() {
    for (Buffer& buffer : buffers_) {
      cudaEventSynchronize(buffer.copied);
      cudaEventDestroy(buffer.copied);
      cudaFreeHost(buffer.pinned);
    }
  }

  // A buffer of at least `bytes` that may be overwritten now.
  Buffer& acquire(size_t bytes) {
    for (Buffer& buffer : buffers_)
      if (buffer.bytes >= bytes && copied(buffer)) return buffer;
    if (buffers_.size() < kMaxBuffers) {
      Buffer& buffer = buffers_.emplace_back();
      CUDA_CHECK(cudaEventCreateWithFlags(&buffer.copied, cudaEventDisableTiming));
      grow(buffer, bytes);
      return buffer;
    }
    Buffer& oldest = buffers_[next_++ % buffers_.size()];
    CUDA_CHECK(cudaEventSynchronize(oldest.copied));
    if (oldest.bytes < bytes) grow(oldest, bytes);
    return oldest;
  }

 private:
  static constexpr size_t kMaxBuffers = 16;

  static bool copied(const Buffer& buffer) {
    const cudaError_t state = cudaEventQuery(buffer.copied);
    if (state == cudaErrorNotReady) {
      cudaGetLastError();  // not an error: do not leave it for the next launch check
      return false;
    }
    CUDA_CHECK(state);
    return true;
  }

  static void grow(Buffer& buffer, size_t bytes) {
    if (buffer.pinned) CUDA_CHECK(cudaFreeHost(buffer.pinned));
    buffer.pinned = nullptr;
    buffer.bytes = 0;
    const size_t size = bytes > 4096 ? bytes : 4096;
    CUDA_CHECK(cudaMallocHost(&buffer.pinned, size));
    buffer.bytes = size;
  }

  std::deque<Buffer> buffers_;  // stable addresses
  size_t next_ = 0;
};

class CudaContext final : public DeviceContext {
 public:
  explicit CudaContext(int device) : device_(device) {}

  ~CudaContext() override {
    DeviceGuard guard(device_);
    staging_.reset();
    if (cublas_) cublasDestroy(cublas_);
    if (pool_) cudaMemPoolDestroy(pool_);  // released once outstanding frees have run
  }

  Status set_num_threads(int) override { return Status::success(); }

  Status set_stream(void* stream) override {
    return run([&] {
      stream_ = static_cast<cudaStream_t>(stream);
      if (cublas_) CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    });
  }

  Status synchronize() override {
    return run([&] { CUDA_CHECK(cudaStreamSynchronize(stream_)); });
  }

  Status allocate(size_t bytes, void** out) override {
    return run([&] { CUDA_CHECK(cudaMalloc(out, bytes)); });
  }

  void deallocate(void* data) override {
    DeviceGuard guard(device_);
    cudaFree(data);
  }

  Status copy_from_host(const TensorView& dst, const void* src) override {
    return run([&] {
      const size_t bytes = byte_count(dst);
      if (is_contiguous(dst)) {
        CUDA_CHECK(cudaMemcpyAsync(dst.data, src, bytes, cudaMemcpyHostToDevice, stream_));
      } else {
        Scratch packed(bytes, stream_, pool());
        CUDA_CHECK(cudaMemcpyAsync(packed.at<void>(), src, bytes, cudaMemcpyHostToDevice, stream_));
        copy_strided(dst, packed.at<void>(), false, stream_);
      }
      CUDA_CHECK(cudaStreamSynchronize(stream_));
    });
  }

  Status copy_to_host(const TensorView& src, void* dst) override {
    return run([&] {
      const size_t bytes = byte_count(src);
      if (is_contiguous(src)) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src.data, bytes, cudaMemcpyDeviceToHost, stream_));
      } else {
        Scratch packed(bytes, stream_, pool());
        copy_strided(src, packed.at<void>(), true, stream_);
        CUDA_CHECK(cudaMemcpyAsync(dst, packed.at<void>(), bytes, cudaMemcpyDeviceToHost, stream_));
      }
      CUDA_CHECK(cudaStreamSynchronize(stream_));
    });
  }

  Status upload_mask(const MaskPlan& plan, std::shared_ptr<DeviceMask>* out) override {
    return run([&] { *out = std::make_shared<CudaMask>(plan, stream_); });
  }

  Status attention_forward(const ForwardArgs& args) override {
    return run([&] {
      if (args.q.shape[0] == 0) return;
      require_grid_heads(args.q.shape[1]);
      const Path path = choose_path(args);
      std::vector<const void*> device;
      const Scratch memory = upload({slope_array(args.slopes, *args.plan)}, &device);
      const DeviceSlopes slopes = device_slopes(args.slopes, device[0]);
      if (path == Path::kFused)
        fused_attention(args, slopes, stream_);
      else
        cublas_attention(args, slopes, stream_, pool(), cublas());
    });
  }

  Status build_bias(const BiasArgs& args) override {
    return run([&] {
      require_grid_heads(args.out.shape[0]);
      std::vector<const void*> device;
      const Scratch memory = upload({slope_array(args.slopes, *args.plan)}, &device);
      cuda::build_bias(args, device_slopes(args.slopes, device[0]), stream_);
    });
  }

  Status build_dynamic_batching_mask(const DynamicBatchingArgs& args) override {
    return run([&] {
      const size_t offsets = (size_t(args.batch) + 1) * sizeof(int64_t);
      std::vector<const void*> device;
      const Scratch memory = upload({{args.seqstarts, offsets},
                                     {args.kvstarts, offsets},
                                     {args.slopes.values, args.slopes.num_heads * sizeof(float)}},
                                    &device);
      cuda::build_dynamic_batching_mask(args, static_cast<const int64_t*>(device[0]),
                                        static_cast<const int64_t*>(device[1]),
                                        device_slopes(args.slopes, device[2]), stream_);
    });
  }

  Status build_bloom_bias(const BloomArgs& args) override {
    return run([&] {
      std::vector<const void*> device;
      const Scratch memory =
          upload({{args.slopes.values, args.slopes.num_heads * sizeof(float)}}, &device);
      cuda::build_bloom_bias(args, device_slopes(args.slopes, device[0]), stream_);
    });
  }

 private:
  // Runs fn with the context's device current; failures become the Status.
  template <class Fn>
  Status run(Fn&& fn) {
    return guarded([&] {
      DeviceGuard guard(device_);
      CUDA_CHECK(guard.error());
      fn();
    });
  }

  static HostArray slope_array(const SlopeTable& slopes, const MaskPlan& plan) {
    const size_t count = size_t(slopes.num_heads) * (slopes.per_sequence ? plan.num_sequences : 1);
    return {slopes.values, count * sizeof(float)};
  }

  static DeviceSlopes device_slopes(const SlopeTable& slopes, const void* values) {
    return {static_cast<const float*>(values), slopes.per_sequence ? 1 : 0, slopes.num_heads};
  }

  // Copies small host arrays (slopes, offsets) into one stream-ordered device allocation with
  // one asynchronous copy from a pinned staging buffer (a copy from pageable memory would wait
  // for the stream). device[i] receives where arrays[i] landed.
  Scratch upload(const std::vector<HostArray>& arrays, std::vector<const void*>* device) {
    std::vector<size_t> offsets;
    size_t total = 0;
    for (const HostArray& array : arrays) {
      offsets.push_back(total);
      total += aligned_16(array.bytes);
    }
    if (!staging_) staging_ = std::make_unique<StagingPool>();
    StagingPool::Buffer& staged = staging_->acquire(total);
    for (size_t i = 0; i < arrays.size(); ++i)
      if (arrays[i].bytes > 0)
        std::memcpy(static_cast<char*>(staged.pinned) + offsets[i], arrays[i].data,
                    arrays[i].bytes);
    Scratch memory(total, stream_, pool());
    CUDA_CHECK(
        cudaMemcpyAsync(memory.at<void>(), staged.pinned, total, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaEventRecord(staged.copied, stream_));
    for (size_t offset : offsets) device->push_back(memory.at<char>(offset));
    return memory;
  }

  // Stream-ordered scratch memory of this context's calls; it keeps what they free (until the
  // context is destroyed), so later calls do not map device memory again.
  cudaMemPool_t pool() {
    if (!pool_) {
      cudaMemPoolProps props = {};
      props.allocType = cudaMemAllocationTypePinned;
      props.location.type = cudaMemLocationTypeDevice;
      props.location.id = device_;
      CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
      uint64_t keep_all = UINT64_MAX;
      CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep_all));
    }
    return pool_;
  }

  cublasHandle_t cublas() {
    if (!cublas_) {
      CUBLAS_CHECK(cublasCreate(&cublas_));
      CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    }
    return cublas_;
  }

  const int device_;
  cudaStream_t stream_ = nullptr;
  // Created on first use:
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<StagingPool> staging_;
};

// -------------------------------------------------------------------------------- backend

std::string cuda_version(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Why cudaGetDeviceCount failed, in words.
std::string probe_failure(cudaError_t error) {
  const std::string detail = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(error) +
                             " (" + cudaGetErrorName(error) + ")";
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (error == cudaErrorInsufficientDriver && driver == 0)
    return "no CUDA driver: the NVIDIA driver (libcuda.so.1) is not installed or not loadable; " +
           detail;
  if (error == cudaErrorInsufficientDriver)
    return "the CUDA driver supports CUDA " + cuda_version(driver) +
           ", older than the CUDA runtime " + cuda_version(runtime) + " of this backend; " + detail;
  if (error == cudaErrorNoDevice) return "no CUDA device: " + detail;
  return "CUDA is not usable: " + detail;
}

void require_compute_capability(int device) {
  int major = 0, minor = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major < 8)
    fail_with(ALIBI_STATUS_BACKEND_UNAVAILABLE,
              "CUDA device " + std::to_string(device) + " has compute capability " +
                  std::to_string(major) + "." + std::to_string(minor) +
                  "; the CUDA backend needs 8.0 (Ampere) or newer");
}

class CudaBackend final : public Backend {
 public:
  int device_count() override {
    probe();
    return count_;
  }

  std::string unavailable_reason() override {
    probe();
    return reason_;
  }

  Status create_context(int device_index, std::shared_ptr<DeviceContext>* out) override {
    return guarded([&] {
      require_compute_capability(device_index);
      *out = std::make_shared<CudaContext>(device_index);
    });
  }

 private:
  void probe() {
    std::call_once(probed_, [this] {
      const cudaError_t error = cudaGetDeviceCount(&count_);
      if (error != cudaSuccess) {
        cudaGetLastError();  // not sticky: clear it
        count_ = 0;
        reason_ = probe_failure(error);
      } else if (count_ == 0) {
        reason_ = "no CUDA device is visible (see CUDA_VISIBLE_DEVICES)";
      }
    });
  }

  std::once_flag probed_;
  int count_ = 0;
  std::string reason_;
};

}  // namespace

// ---------------------------------------------------------------------------------- masks

CudaMask::CudaMask(const MaskPlan& plan, cudaStream_t stream) {
  CUDA_CHECK(cudaGetDevice(&device_));
  const RowTiling tiling = tile_rows(plan, kMaskTileRows);
  const HostArray parts[] = {
      {plan.slices.data(), plan.slices.size() * sizeof(Slice)},
      {plan.q_positions.data(), plan.q_positions.size() * sizeof(int32_t)},
      {plan.k_positions.data(), plan.k_positions.size() * sizeof(int32_t)},
      {tiling.tiles.data(), tiling.tiles.size() * sizeof(RowTile)},
      {tiling.slice_list.data(), tiling.slice_list.size() * sizeof(int32_t)}};
  size_t offsets[5], total = 0;
  for (int i = 0; i < 5; ++i) {
    offsets[i] = total;
    total += aligned_16(parts[i].bytes);
  }
  std::vector<char> packed(total);
  for (int i = 0; i < 5; ++i)
    if (parts[i].bytes > 0) std::memcpy(packed.data() + offsets[i], parts[i].data, parts[i].bytes);
  void* memory = nullptr;
  CUDA_CHECK(cudaMalloc(&memory, total > 0 ? total : 16));
  memory_.reset(memory);
  // Synchronous: the mask may be used next from another context's stream.
  CUDA_CHECK(cudaMemcpyAsync(memory, packed.data(), total, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  char* base = static_cast<char*>(memory);
  arrays_.slices = reinterpret_cast<const Slice*>(base + offsets[0]);
  arrays_.q_positions = reinterpret_cast<const int32_t*>(base + offsets[1]);
  arrays_.k_positions = reinterpret_cast<const int32_t*>(base + offsets[2]);
  arrays_.tiles = reinterpret_cast<const RowTile*>(base + offsets[3]);
  arrays_.slice_list = reinterpret_cast<const int32_t*>(base + offsets[4]);
  arrays_.num_tiles = int32_t(tiling.tiles.size());
}

CudaMask::~CudaMask() {
  DeviceGuard guard(device_);
  memory_.reset();
}

}  // namespace alibi::cuda

extern "C" __attribute__((visibility("default"))) alibi::Backend* alibi_backend_entry(
    int abi_version) {
  if (abi_version != alibi::kBackendAbiVersion) return nullptr;
  static alibi::cuda::CudaBackend backend;
  return &backend;
}
