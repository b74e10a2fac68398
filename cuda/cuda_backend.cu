// The CUDA backend: libalibi_cuda exports alibi_backend_entry, which libalibi finds with
// dlopen/dlsym when a CUDA context is asked for, and which returns the backend's table. Every
// context method makes its device current for the call (restoring the caller's) and runs on the
// context's stream; the table's entries turn its exceptions into a status and a message.
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
    if (clear_error(cudaGetDevice(&previous_)) != cudaSuccess) previous_ = -1;
    if (previous_ == device) return;
    error_ = clear_error(cudaSetDevice(device));
    restore_ = error_ == cudaSuccess && previous_ >= 0;
  }
  ~DeviceGuard() {
    if (restore_) clear_error(cudaSetDevice(previous_));
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
  bool restore_ = false;
};

// A DeviceGuard whose failure to make the device current is the call's failure.
class OnDevice : public DeviceGuard {
 public:
  explicit OnDevice(int device) : DeviceGuard(device) { CUDA_CHECK(error()); }
};

size_t byte_count(const TensorView& t) { return size_t(t.numel()) * dtype_size(t.dtype); }

bool is_contiguous(const TensorView& t) {
  int64_t expected = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expected) return false;
    expected *= t.shape[d];
  }
  return true;
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
  switch (dtype_size(t.dtype)) {
    case 2: return launch_copy_strided<uint16_t>(t, packed, to_packed, stream);
    case 4: return launch_copy_strided<uint32_t>(t, packed, to_packed, stream);
    default: return launch_copy_strided<unsigned long long>(t, packed, to_packed, stream);
  }
}

// ----------------------------------------------------------------------------- paths

enum class Path { kFused, kCublas };

// ALIBI_CUDA_PATH, read on every call: unset or "auto" (the fused kernel where it applies),
// "cublas" (always the cuBLAS path) or "fused" (UNSUPPORTED where the fused kernel does not apply).
// why_not: why the call's fused kernel does not apply, "" when it does.
Path choose_path(const std::string& why_not) {
  const char* variable = std::getenv("ALIBI_CUDA_PATH");
  const std::string choice = variable ? variable : "";
  if (choice.empty() || choice == "auto") return why_not.empty() ? Path::kFused : Path::kCublas;
  if (choice == "cublas") return Path::kCublas;
  if (choice != "fused")
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "ALIBI_CUDA_PATH = '%s' is not auto, fused or cublas",
         choice.c_str());
  if (!why_not.empty())
    fail(ALIBI_STATUS_UNSUPPORTED, "ALIBI_CUDA_PATH = fused, but the fused kernel does not take %s",
         why_not.c_str());
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
      clear_error(cudaEventSynchronize(buffer.copied));
      clear_error(cudaEventDestroy(buffer.copied));
      clear_error(cudaFreeHost(buffer.pinned));
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
    if (state != cudaErrorNotReady) {
      CUDA_CHECK(state);
      return true;
    }
    // Not an error: if the runtime recorded it, clear it (and only it) for the next launch check.
    if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
    return false;
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

// ------------------------------------------------------------------------------- devices

std::string cuda_version(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Why cudaGetDeviceCount failed, in words.
std::string probe_failure(cudaError_t error) {
  const std::string detail = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(error) +
                             " (" + cudaGetErrorName(error) + ")";
  int driver = 0, runtime = 0;
  clear_error(cudaDriverGetVersion(&driver));
  clear_error(cudaRuntimeGetVersion(&runtime));
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
    fail(ALIBI_STATUS_BACKEND_UNAVAILABLE,
         "CUDA device %d has compute capability %d.%d; the CUDA backend needs 8.0 (Ampere) or newer",
         device, major, minor);
}

// The visible devices, probed once.
struct Devices {
  int count = 0;
  std::string why_none;
};

const Devices& devices() {
  static const Devices probed = [] {
    Devices d;
    const cudaError_t error = clear_error(cudaGetDeviceCount(&d.count));
    if (error != cudaSuccess) {
      d.count = 0;
      d.why_none = probe_failure(error);
    } else if (d.count == 0) {
      d.why_none = "no CUDA device is visible (see CUDA_VISIBLE_DEVICES)";
    }
    return d;
  }();
  return probed;
}

class CudaContext {
 public:
  static constexpr PlanShape kPlanShape = cuda::kPlanShape;
  static int device_count() { return devices().count; }
  static std::string unavailable_reason() { return devices().why_none; }
  static CudaContext* create(int device) {
    require_compute_capability(device);
    return new CudaContext(device);
  }
  static void release_mask(void* device_mask) { delete static_cast<CudaMask*>(device_mask); }

  explicit CudaContext(int device) : device_(device) {}

  ~CudaContext() {
    const DeviceGuard guard(device_);
    staging_.reset();
    if (cublas_) cublasDestroy(cublas_);
    if (pool_) clear_error(cudaMemPoolDestroy(pool_));  // released once outstanding frees have run
  }

  void set_num_threads(int) {}

  void set_stream(void* stream) {
    const OnDevice on_device(device_);
    stream_ = static_cast<cudaStream_t>(stream);
    if (cublas_) CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  }

  void synchronize() {
    const OnDevice on_device(device_);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void allocate(size_t bytes, void** out) {
    const OnDevice on_device(device_);
    CUDA_CHECK(cudaMalloc(out, bytes));
  }

  void deallocate(void* data) {
    const DeviceGuard guard(device_);
    clear_error(cudaFree(data));
  }

  void copy_from_host(const TensorView* dst, const void* src) {
    const OnDevice on_device(device_);
    const size_t bytes = byte_count(*dst);
    if (is_contiguous(*dst)) {
      CUDA_CHECK(cudaMemcpyAsync(dst->data, src, bytes, cudaMemcpyHostToDevice, stream_));
    } else {
      StreamMemory packed(bytes, stream_, pool());
      CUDA_CHECK(cudaMemcpyAsync(packed.at<void>(), src, bytes, cudaMemcpyHostToDevice, stream_));
      copy_strided(*dst, packed.at<void>(), false, stream_);
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void copy_to_host(const TensorView* src, void* dst) {
    const OnDevice on_device(device_);
    const size_t bytes = byte_count(*src);
    if (is_contiguous(*src)) {
      CUDA_CHECK(cudaMemcpyAsync(dst, src->data, bytes, cudaMemcpyDeviceToHost, stream_));
    } else {
      StreamMemory packed(bytes, stream_, pool());
      copy_strided(*src, packed.at<void>(), true, stream_);
      CUDA_CHECK(cudaMemcpyAsync(dst, packed.at<void>(), bytes, cudaMemcpyDeviceToHost, stream_));
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void mask_upload(const MaskView* mask, void** device_mask) {
    const OnDevice on_device(device_);
    *device_mask = new CudaMask(*mask, stream_);
  }

  void attention_forward(const ForwardArgs* args) {
    const OnDevice on_device(device_);
    if (args->q.shape[0] == 0) return;
    forward(*args);
  }

  // Di of every row, then one path for dq, dk, dv and the spans' parts of dslopes, then dslopes.
  // Nothing returns early on empty sizes: with no query rows, dk and dv are still written (0).
  void attention_backward(const BackwardArgs* args) {
    const OnDevice on_device(device_);
    if (!args->dq && !args->dk && !args->dv && !args->dslopes) return;
    const ForwardArgs& forward = args->forward;
    const Path path = choose_path(fused_backward_unsupported(*args));
    std::vector<const void*> device;
    const StreamMemory uploaded = upload({slope_array(forward.slopes, *forward.mask)}, &device);
    const SlopeTable slopes = device_slopes(forward.slopes, device[0]);
    const int64_t heads = forward.q.shape[1];
    const size_t row_dot_bytes = aligned_16(size_t(heads * forward.q.shape[0]) * sizeof(float));
    const size_t span_slope_bytes =
        args->dslopes ? size_t(heads * forward.mask->num_spans) * sizeof(double) : 0;
    const StreamMemory scratch(row_dot_bytes + span_slope_bytes, stream_, pool());
    BackwardWork work{};
    work.row_dot = scratch.at<float>();
    work.span_slopes = args->dslopes ? scratch.at<double>(row_dot_bytes) : nullptr;
    work.key_blocks = device_mask(forward.device_mask).key_blocks();
    row_dots(*args, scratch.at<float>(), stream_);
    if (path == Path::kFused)
      fused_backward(*args, slopes, work, stream_);
    else
      cublas_backward(*args, slopes, work, stream_, pool(), cublas());
    if (args->dslopes) write_slope_gradient(*args, work.span_slopes, stream_);
  }

  void attention_merge(const MergeArgs* args) {
    const OnDevice on_device(device_);
    cuda::attention_merge(*args, stream_);
  }

  void build_bias(const BiasArgs* args) {
    const OnDevice on_device(device_);
    std::vector<const void*> device;
    const StreamMemory memory = upload({slope_array(args->slopes, *args->mask)}, &device);
    cuda::build_bias(*args, device_slopes(args->slopes, device[0]), stream_);
  }

  void build_dynamic_batching_mask(const DynamicBatchingArgs* args) {
    const OnDevice on_device(device_);
    const size_t offsets = (size_t(args->batch) + 1) * sizeof(int64_t);
    std::vector<const void*> device;
    const StreamMemory memory = upload({{args->seqstarts, offsets},
                                        {args->kvstarts, offsets},
                                        {args->slopes.values, args->slopes.num_heads * sizeof(float)}},
                                       &device);
    cuda::build_dynamic_batching_mask(*args, static_cast<const int64_t*>(device[0]),
                                      static_cast<const int64_t*>(device[1]),
                                      device_slopes(args->slopes, device[2]), stream_);
  }

  void build_bloom_bias(const BloomArgs* args) {
    const OnDevice on_device(device_);
    std::vector<const void*> device;
    const StreamMemory memory =
        upload({{args->slopes.values, args->slopes.num_heads * sizeof(float)}}, &device);
    cuda::build_bloom_bias(*args, device_slopes(args->slopes, device[0]), stream_);
  }

  // Validated by core. Calls with a few queries per sequence take the split-KV decode kernel,
  // which reads the blocks in place; the others (prefill) run the forward on gathered keys.
  void attention_forward_paged(const PagedForwardArgs* args) {
    const OnDevice on_device(device_);
    if (args->forward.q.shape[0] == 0) return;
    if (paged_decode_applies(*args))
      decode_paged(*args);
    else
      prefill_paged(*args);
  }

 private:
  static HostArray slope_array(const SlopeTable& slopes, const MaskView& mask) {
    const size_t count = size_t(slopes.num_heads) * (slopes.per_sequence ? mask.num_sequences : 1);
    return {slopes.values, count * sizeof(float)};
  }

  // The fused kernel where it applies, else cuBLAS (ALIBI_CUDA_PATH may force either).
  void forward(const ForwardArgs& args) {
    const Path path = choose_path(fused_attention_unsupported(args));
    std::vector<const void*> device;
    const StreamMemory memory = upload({slope_array(args.slopes, *args.mask)}, &device);
    const SlopeTable slopes = device_slopes(args.slopes, device[0]);
    if (path == Path::kFused)
      fused_attention(args, slopes, stream_);
    else
      cublas_attention(args, slopes, stream_, pool(), cublas());
  }

  static HostArray block_table_array(const PagedForwardArgs& args) {
    return {args.block_table, size_t(paged_table_entries(args)) * sizeof(int32_t)};
  }

  static HostArray key_begin_array(const PagedForwardArgs& args) {
    return {args.key_begin, size_t(args.forward.mask->num_sequences + 1) * sizeof(int32_t)};
  }

  void decode_paged(const PagedForwardArgs& args) {
    const ForwardArgs& forward = args.forward;
    const MaskView& mask = *forward.mask;
    std::vector<const void*> device;
    const StreamMemory memory =
        upload({block_table_array(args), key_begin_array(args),
                {mask.slices, size_t(mask.num_slices) * sizeof(Slice)},
                {mask.tiles, size_t(mask.num_tiles) * sizeof(RowTile)},
                {mask.spans, size_t(mask.num_spans) * sizeof(SliceRows)},
                {mask.q_positions, size_t(mask.total_q) * sizeof(int32_t)},
                slope_array(forward.slopes, mask)},
               &device);
    PagedDeviceArrays arrays;
    arrays.block_table = static_cast<const int32_t*>(device[0]);
    arrays.key_begin = static_cast<const int32_t*>(device[1]);
    arrays.slices = static_cast<const Slice*>(device[2]);
    arrays.tiles = static_cast<const RowTile*>(device[3]);
    arrays.spans = static_cast<const SliceRows*>(device[4]);
    arrays.q_positions = static_cast<const int32_t*>(device[5]);
    arrays.slopes = device_slopes(forward.slopes, device[6]);
    paged_decode(args, arrays, stream_, pool());
  }

  // The keys of every sequence gathered into contiguous buffers, then the forward with the
  // call's mask, which core planned over exactly those packed keys. Waits for its work before
  // returning, since the mask's device copy is freed then.
  void prefill_paged(const PagedForwardArgs& args) {
    std::vector<const void*> device;
    const StreamMemory tables = upload({block_table_array(args), key_begin_array(args)}, &device);
    PagedDeviceArrays arrays;
    arrays.block_table = static_cast<const int32_t*>(device[0]);
    arrays.key_begin = static_cast<const int32_t*>(device[1]);
    ForwardArgs gathered = args.forward;
    gathered.k = packed_keys(args.forward.k, args.forward.mask->total_k);
    gathered.v = gathered.k;
    const size_t bytes = aligned_16(byte_count(gathered.k));
    const StreamMemory keys(2 * bytes, stream_, pool());
    gathered.k.data = keys.at<void>();
    gathered.v.data = keys.at<void>(bytes);
    gather_paged_keys(args, arrays, gathered.k.data, gathered.v.data, stream_);
    const CudaMask mask(*args.forward.mask, stream_);
    gathered.device_mask = &mask;
    forward(gathered);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // A contiguous (total_k, Hkv, D) tensor of a cache's dtype, without data yet.
  static TensorView packed_keys(const TensorView& cache, int64_t total_k) {
    TensorView packed;
    packed.dtype = cache.dtype;
    packed.ndim = 3;
    packed.shape[0] = total_k;
    packed.shape[1] = cache.shape[2];
    packed.shape[2] = cache.shape[3];
    packed.strides[0] = packed.shape[1] * packed.shape[2];
    packed.strides[1] = packed.shape[2];
    packed.strides[2] = 1;
    return packed;
  }

  // The slope table with its values in device memory.
  static SlopeTable device_slopes(const SlopeTable& slopes, const void* values) {
    SlopeTable on_device = slopes;
    on_device.values = static_cast<const float*>(values);
    return on_device;
  }

  // Copies small host arrays (slopes, offsets) into one stream-ordered device allocation with
  // one asynchronous copy from a pinned staging buffer (a copy from pageable memory would wait
  // for the stream). device[i] receives where arrays[i] landed.
  StreamMemory upload(const std::vector<HostArray>& arrays, std::vector<const void*>* device) {
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
    StreamMemory memory(total, stream_, pool());
    CUDA_CHECK(
        cudaMemcpyAsync(memory.at<void>(), staged.pinned, total, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaEventRecord(staged.copied, stream_));
    for (size_t offset : offsets) device->push_back(memory.at<char>(offset));
    return memory;
  }

  // Stream-ordered memory of this context's calls; the pool keeps what they free (until the
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

}  // namespace

// ---------------------------------------------------------------------------------- masks

namespace {

// KeyBlockSlices on the host: slices[first[b], first[b + 1]) are the slices (mask order) with
// query rows and keys in key block b.
struct HostKeyBlocks {
  std::vector<int64_t> first;
  std::vector<int32_t> slices;
};

HostKeyBlocks key_blocks_of(const MaskView& mask) {
  const int64_t blocks = (mask.total_k + kBackwardKeyBlock - 1) / kBackwardKeyBlock;
  HostKeyBlocks result{std::vector<int64_t>(size_t(blocks) + 1, 0), {}};
  auto for_each_block = [&](auto&& visit) {
    for (int64_t s = 0; s < mask.num_slices; ++s) {
      const Slice& slice = mask.slices[s];
      if (slice.q_begin >= slice.q_end || slice.k_begin >= slice.k_end) continue;
      for (int64_t b = slice.k_begin / kBackwardKeyBlock;
           b <= (slice.k_end - 1) / kBackwardKeyBlock; ++b)
        visit(b, int32_t(s));
    }
  };
  for_each_block([&](int64_t b, int32_t) { ++result.first[size_t(b) + 1]; });
  for (int64_t b = 0; b < blocks; ++b) result.first[size_t(b) + 1] += result.first[size_t(b)];
  result.slices.resize(size_t(result.first[size_t(blocks)]));
  std::vector<int64_t> next(result.first.begin(), result.first.end() - 1);
  for_each_block([&](int64_t b, int32_t s) { result.slices[size_t(next[size_t(b)]++)] = s; });
  return result;
}

}  // namespace

CudaMask::CudaMask(const MaskView& mask, cudaStream_t stream) {
  CUDA_CHECK(cudaGetDevice(&device_));
  const HostKeyBlocks blocks = key_blocks_of(mask);
  const HostArray parts[] = {
      {mask.slices, size_t(mask.num_slices) * sizeof(Slice)},
      {mask.q_positions, size_t(mask.total_q) * sizeof(int32_t)},
      {mask.k_positions, size_t(mask.total_k) * sizeof(int32_t)},
      {mask.tiles, size_t(mask.num_tiles) * sizeof(RowTile)},
      {mask.spans, size_t(mask.num_spans) * sizeof(SliceRows)},
      {blocks.first.data(), blocks.first.size() * sizeof(int64_t)},
      {blocks.slices.data(), blocks.slices.size() * sizeof(int32_t)}};
  constexpr int kParts = sizeof parts / sizeof parts[0];
  size_t offsets[kParts], total = 0;
  for (int i = 0; i < kParts; ++i) {
    offsets[i] = total;
    total += aligned_16(parts[i].bytes);
  }
  std::vector<char> packed(total);
  for (int i = 0; i < kParts; ++i)
    if (parts[i].bytes > 0) std::memcpy(packed.data() + offsets[i], parts[i].data, parts[i].bytes);
  void* memory = nullptr;
  CUDA_CHECK(cudaMalloc(&memory, total > 0 ? total : 16));
  memory_.reset(memory);
  // Synchronous: the mask may be used next from another context's stream.
  CUDA_CHECK(cudaMemcpyAsync(memory, packed.data(), total, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  char* base = static_cast<char*>(memory);
  view_ = mask;
  view_.slices = reinterpret_cast<const Slice*>(base + offsets[0]);
  view_.q_positions = reinterpret_cast<const int32_t*>(base + offsets[1]);
  view_.k_positions = reinterpret_cast<const int32_t*>(base + offsets[2]);
  view_.tiles = reinterpret_cast<const RowTile*>(base + offsets[3]);
  view_.spans = reinterpret_cast<const SliceRows*>(base + offsets[4]);
  view_.tiles_by_work = nullptr;
  view_.uncovered = nullptr;
  view_.chunks = nullptr;
  view_.first_chunk = nullptr;
  key_blocks_.first = reinterpret_cast<const int64_t*>(base + offsets[5]);
  key_blocks_.slices = reinterpret_cast<const int32_t*>(base + offsets[6]);
  key_blocks_.num_blocks = int64_t(blocks.first.size()) - 1;
}

CudaMask::~CudaMask() {
  const DeviceGuard guard(device_);
  memory_.reset();
}

}  // namespace alibi::cuda

extern "C" __attribute__((visibility("default"))) const alibi::BackendOps* alibi_backend_entry(
    int abi_version) {
  if (abi_version != alibi::kBackendAbiVersion) return nullptr;
  static const alibi::BackendOps table = alibi::backend_table<alibi::cuda::CudaContext>();
  return &table;
}
