// The public API surface: version, statuses, devices, contexts, tensors, masks and slopes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using test::Context;
using test::make_cpu_context;
using test::make_sliding_window;
using test::make_varlen;
using test::Mask;
using test::Tensor;

constexpr alibi_dtype kAllDtypes[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16,
                                      ALIBI_DTYPE_I32, ALIBI_DTYPE_I64};

size_t element_size(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F16:
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I64: return 8;
    default: return 4;
  }
}

bool is_floating(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 || dtype == ALIBI_DTYPE_F16 || dtype == ALIBI_DTYPE_BF16;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::vector<int64_t> row_major_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

// Random element bytes (little-endian); floating-point elements get the top exponent bit cleared so
// they are finite and copies can be compared bitwise.
std::vector<uint8_t> random_elements(alibi_dtype dtype, int64_t count, uint32_t seed) {
  const size_t size = element_size(dtype);
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(size_t(count) * size);
  for (auto& b : bytes) b = uint8_t(rng());
  if (is_floating(dtype)) {
    for (int64_t e = 0; e < count; ++e) bytes[size_t(e) * size + size - 1] &= 0xbf;
  }
  return bytes;
}

Tensor create_tensor(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape) {
  alibi_tensor_t t = nullptr;
  EXPECT_EQ(alibi_tensor_create(ctx, dtype, int(shape.size()), shape.data(), &t),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Tensor(t);
}

Tensor wrap_tensor(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape,
                   const int64_t* strides, void* data) {
  alibi_tensor_t t = nullptr;
  EXPECT_EQ(alibi_tensor_wrap(ctx, dtype, int(shape.size()), shape.data(), strides, data, &t),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Tensor(t);
}

// Checks every getter of a tensor against what it was made with.
void expect_tensor_describes(alibi_tensor_t t, alibi_dtype dtype, const std::vector<int64_t>& shape,
                             const std::vector<int64_t>& strides) {
  alibi_dtype got_dtype = ALIBI_DTYPE_I64;
  int got_ndim = -1;
  std::vector<int64_t> got_shape(ALIBI_MAX_DIMS, -7), got_strides(ALIBI_MAX_DIMS, -7);
  ASSERT_OK(alibi_tensor_get_dtype(t, &got_dtype));
  ASSERT_OK(alibi_tensor_get_ndim(t, &got_ndim));
  ASSERT_OK(alibi_tensor_get_shape(t, ALIBI_MAX_DIMS, got_shape.data()));
  ASSERT_OK(alibi_tensor_get_strides(t, ALIBI_MAX_DIMS, got_strides.data()));
  EXPECT_EQ(got_dtype, dtype);
  ASSERT_EQ(got_ndim, int(shape.size()));
  got_shape.resize(shape.size());
  got_strides.resize(shape.size());
  EXPECT_EQ(got_shape, shape);
  EXPECT_EQ(got_strides, strides);
}

// Byte offset of the element with row-major index `flat` in a strided tensor.
size_t strided_byte_offset(int64_t flat, const std::vector<int64_t>& shape,
                           const std::vector<int64_t>& strides, size_t size) {
  int64_t offset = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    offset += (flat % shape[d]) * strides[d];
    flat /= shape[d];
  }
  return size_t(offset) * size;
}

// ------------------------------------------------------------------------------------------
// Version, statuses, devices

TEST(ApiVersion, HeaderMacrosMatchTheLinkedLibrary) {
  EXPECT_EQ(alibi_version_number(), unsigned(ALIBI_VERSION_NUMBER));
  EXPECT_STREQ(alibi_version_string(), ALIBI_VERSION_STRING);
  EXPECT_EQ(ALIBI_VERSION_NUMBER,
            ALIBI_VERSION_MAJOR * 10000 + ALIBI_VERSION_MINOR * 100 + ALIBI_VERSION_PATCH);
  const std::string dotted = std::to_string(ALIBI_VERSION_MAJOR) + "." +
                             std::to_string(ALIBI_VERSION_MINOR) + "." +
                             std::to_string(ALIBI_VERSION_PATCH);
  EXPECT_EQ(dotted, ALIBI_VERSION_STRING);
}

TEST(ApiStatus, EveryStatusHasItsOwnText) {
  std::set<std::string> seen;
  for (int s = ALIBI_STATUS_SUCCESS; s <= ALIBI_STATUS_COMMUNICATION_ERROR; ++s) {
    const char* text = alibi_status_string(alibi_status(s));
    ASSERT_NE(text, nullptr) << s;
    EXPECT_STRNE(text, "") << s;
    EXPECT_STRNE(text, "unknown status") << s;
    EXPECT_TRUE(seen.insert(text).second) << "status " << s << " repeats \"" << text << "\"";
  }
  EXPECT_STREQ(alibi_status_string(ALIBI_STATUS_INVALID_ARGUMENT), "invalid argument");
}

TEST(ApiStatus, OtherValuesAreUnknown) {
  EXPECT_STREQ(alibi_status_string(alibi_status(11)), "unknown status");
  EXPECT_STREQ(alibi_status_string(alibi_status(15)), "unknown status");
}

TEST(ApiDevice, CountsPerKind) {
  const int cuda = alibi_device_count(ALIBI_DEVICE_CUDA);
  EXPECT_EQ(alibi_device_count(ALIBI_DEVICE_CPU), 1);
  EXPECT_GE(cuda, 0);
  EXPECT_EQ(alibi_device_count(ALIBI_DEVICE_AUTO), cuda > 0 ? cuda : 1);
  EXPECT_EQ(alibi_device_count(alibi_device(3)), 0);
}

// ------------------------------------------------------------------------------------------
// Contexts

alibi_device device_of(alibi_context_t ctx) {
  alibi_device device = ALIBI_DEVICE_AUTO;
  EXPECT_EQ(alibi_context_get_device(ctx, &device), ALIBI_STATUS_SUCCESS);
  return device;
}

TEST(ApiContext, CpuContextReportsCpu) {
  Context ctx = make_cpu_context();
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(device_of(ctx.get()), ALIBI_DEVICE_CPU);
  EXPECT_STREQ(alibi_last_error_message(), "");
}

TEST(ApiContext, AutoResolvesToTheAvailableDevice) {
  alibi_context_t raw = nullptr;
  ASSERT_OK(alibi_context_create(ALIBI_DEVICE_AUTO, 0, &raw));
  Context ctx(raw);
  const bool has_cuda = alibi_device_count(ALIBI_DEVICE_CUDA) > 0;
  EXPECT_EQ(device_of(ctx.get()), has_cuda ? ALIBI_DEVICE_CUDA : ALIBI_DEVICE_CPU);
}

TEST(ApiContext, NumThreadsAcceptsZeroUpTo1024) {
  Context ctx = make_cpu_context();
  for (int threads : {0, 1, 3, 64, 1024})
    ASSERT_OK(alibi_context_set_num_threads(ctx.get(), threads));
}

TEST(ApiContext, CpuStreamAcceptsOnlyNull) {
  Context ctx = make_cpu_context();
  ASSERT_OK(alibi_context_set_stream(ctx.get(), nullptr));
  int not_a_stream = 0;
  EXPECT_EQ(alibi_context_set_stream(ctx.get(), &not_a_stream), ALIBI_STATUS_UNSUPPORTED);
  EXPECT_NE(std::string(alibi_last_error_message()).find("alibi_context_set_stream"),
            std::string::npos)
      << alibi_last_error_message();
}

TEST(ApiContext, SynchronizeSucceeds) {
  Context ctx = make_cpu_context();
  ASSERT_OK(alibi_context_synchronize(ctx.get()));
}

TEST(ApiContext, DestroyNullIsANoOpForEveryHandle) {
  alibi_context_destroy(nullptr);
  alibi_tensor_destroy(nullptr);
  alibi_mask_destroy(nullptr);
  SUCCEED();
}

TEST(ApiContext, ParamsInitWritesOnlyTheCallersStruct) {
  constexpr size_t kOurs = sizeof(alibi_attention_params);
  unsigned char block[kOurs + 16];
  std::memset(block, 0x5a, sizeof block);
  auto* params = reinterpret_cast<alibi_attention_params*>(block);
  alibi_attention_params_init_v2(params, kOurs + 8);  // a caller whose header has one more field
  EXPECT_EQ(params->struct_size, kOurs + 8);
  EXPECT_EQ(params->max_bias, 8.0f);
  for (size_t i = kOurs; i < kOurs + 8; ++i) EXPECT_EQ(block[i], 0) << "byte " << i;
  for (size_t i = kOurs + 8; i < sizeof block; ++i) EXPECT_EQ(block[i], 0x5a) << "byte " << i;
  alibi_attention_params_init_v2(nullptr, kOurs);
}

TEST(ApiContext, ParamsInitGivesTheDocumentedDefaults) {
  alibi_attention_params params;
  std::memset(&params, 0x5a, sizeof params);
  alibi_attention_params_init(&params);
  EXPECT_EQ(params.struct_size, sizeof(alibi_attention_params));
  EXPECT_LE(params.softmax_scale, 0.0f);
  EXPECT_EQ(params.softcap, 0.0f);
  EXPECT_EQ(params.max_bias, 8.0f);
  EXPECT_EQ(params.slopes, nullptr);
  EXPECT_EQ(params.slopes_per_batch, 0);
  EXPECT_EQ(params.total_heads, 0);
  EXPECT_EQ(params.head_offset, 0);
  EXPECT_EQ(params.attn_bias, nullptr);
}

// ------------------------------------------------------------------------------------------
// Tensors

TEST(ApiTensor, CreatedTensorIsContiguousAndAligned) {
  Context ctx = make_cpu_context();
  const std::vector<int64_t> shape{2, 3, 5, 7};
  for (alibi_dtype dtype : kAllDtypes) {
    SCOPED_TRACE(dtype);
    Tensor t = create_tensor(ctx.get(), dtype, shape);
    expect_tensor_describes(t.get(), dtype, shape, row_major_strides(shape));
    void* data = nullptr;
    ASSERT_OK(alibi_tensor_get_data(t.get(), &data));
    ASSERT_NE(data, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % 64, 0u);
  }
}

TEST(ApiTensor, OwnedRoundTripForEveryDtype) {
  Context ctx = make_cpu_context();
  const std::vector<int64_t> shape{3, 5, 7};
  for (alibi_dtype dtype : kAllDtypes) {
    SCOPED_TRACE(dtype);
    Tensor t = create_tensor(ctx.get(), dtype, shape);
    const auto source = random_elements(dtype, numel(shape), 11u + dtype);
    ASSERT_OK(alibi_tensor_copy_from_host(t.get(), source.data(), source.size()));
    std::vector<uint8_t> back(source.size(), 0);
    ASSERT_OK(alibi_tensor_copy_to_host(t.get(), back.data(), back.size()));
    EXPECT_EQ(back, source);
  }
}

TEST(ApiTensor, ScalarTensorHoldsOneElement) {
  Context ctx = make_cpu_context();
  alibi_tensor_t raw = nullptr;
  ASSERT_OK(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 0, nullptr, &raw));
  Tensor t(raw);
  expect_tensor_describes(t.get(), ALIBI_DTYPE_F32, {}, {});
  const float value = 2.5f;
  float back = 0.0f;
  ASSERT_OK(alibi_tensor_copy_from_host(t.get(), &value, sizeof value));
  ASSERT_OK(alibi_tensor_copy_to_host(t.get(), &back, sizeof back));
  EXPECT_EQ(back, value);
}

TEST(ApiTensor, EmptyTensorsHaveNoData) {
  Context ctx = make_cpu_context();
  Tensor owned = create_tensor(ctx.get(), ALIBI_DTYPE_F16, {0, 4});
  void* data = reinterpret_cast<void*>(uintptr_t(0x1234));
  ASSERT_OK(alibi_tensor_get_data(owned.get(), &data));
  EXPECT_EQ(data, nullptr);
  uint16_t unused = 0;
  ASSERT_OK(alibi_tensor_copy_from_host(owned.get(), &unused, 0));
  ASSERT_OK(alibi_tensor_copy_to_host(owned.get(), &unused, 0));
  Tensor wrapped = wrap_tensor(ctx.get(), ALIBI_DTYPE_F32, {2, 0}, nullptr, nullptr);
  int64_t shape[2] = {-1, -1};
  ASSERT_OK(alibi_tensor_get_shape(wrapped.get(), 2, shape));
  EXPECT_EQ(shape[0], 2);
  EXPECT_EQ(shape[1], 0);
}

TEST(ApiTensor, WrapReportsTheCallersMemoryAndStrides) {
  Context ctx = make_cpu_context();
  std::vector<float> buffer(64);
  const std::vector<int64_t> shape{3, 4}, strides{16, 2};
  Tensor strided = wrap_tensor(ctx.get(), ALIBI_DTYPE_F32, shape, strides.data(), buffer.data());
  expect_tensor_describes(strided.get(), ALIBI_DTYPE_F32, shape, strides);
  void* data = nullptr;
  ASSERT_OK(alibi_tensor_get_data(strided.get(), &data));
  EXPECT_EQ(data, buffer.data());
  Tensor contiguous = wrap_tensor(ctx.get(), ALIBI_DTYPE_F32, shape, nullptr, buffer.data());
  expect_tensor_describes(contiguous.get(), ALIBI_DTYPE_F32, shape, row_major_strides(shape));
}

// Copies into and out of a strided wrapped tensor touch exactly the addressed elements.
void expect_strided_round_trip(alibi_context_t ctx, alibi_dtype dtype,
                               const std::vector<int64_t>& shape,
                               const std::vector<int64_t>& strides, size_t buffer_elements) {
  const size_t size = element_size(dtype);
  const uint8_t fill = 0xa5;
  std::vector<uint8_t> buffer(buffer_elements * size, fill);
  Tensor t = wrap_tensor(ctx, dtype, shape, strides.data(), buffer.data());
  const int64_t count = numel(shape);
  const auto source = random_elements(dtype, count, 29u + dtype);
  ASSERT_OK(alibi_tensor_copy_from_host(t.get(), source.data(), source.size()));

  std::vector<bool> addressed(buffer.size(), false);
  for (int64_t e = 0; e < count; ++e) {
    const size_t offset = strided_byte_offset(e, shape, strides, size);
    EXPECT_EQ(std::memcmp(buffer.data() + offset, source.data() + size_t(e) * size, size), 0)
        << "element " << e;
    std::fill(addressed.begin() + offset, addressed.begin() + offset + size, true);
  }
  for (size_t byte = 0; byte < buffer.size(); ++byte) {
    if (addressed[byte]) continue;
    EXPECT_EQ(buffer[byte], fill) << "gap byte " << byte << " was written";
  }
  std::vector<uint8_t> back(source.size(), 0);
  ASSERT_OK(alibi_tensor_copy_to_host(t.get(), back.data(), back.size()));
  EXPECT_EQ(back, source);
}

TEST(ApiTensor, StridedWrapCopiesHonourStridesForEveryDtype) {
  Context ctx = make_cpu_context();
  for (alibi_dtype dtype : kAllDtypes) {
    SCOPED_TRACE(dtype);
    expect_strided_round_trip(ctx.get(), dtype, {3, 4, 2}, {29, 6, 2}, 79);
    expect_strided_round_trip(ctx.get(), dtype, {4, 3}, {1, 5}, 15);  // column-major-like
  }
}

TEST(ApiTensor, ZeroStrideBroadcastsOnCopyToHost) {
  Context ctx = make_cpu_context();
  std::vector<int32_t> row{7, -8, 9};
  const std::vector<int64_t> strides{0, 1};
  Tensor t = wrap_tensor(ctx.get(), ALIBI_DTYPE_I32, {4, 3}, strides.data(), row.data());
  std::vector<int32_t> back(12, 0);
  ASSERT_OK(alibi_tensor_copy_to_host(t.get(), back.data(), back.size() * sizeof(int32_t)));
  for (size_t i = 0; i < back.size(); ++i) EXPECT_EQ(back[i], row[i % 3]) << i;
}

// ------------------------------------------------------------------------------------------
// Masks

struct Slices {
  std::vector<int32_t> q, k, types;  // q and k: [n][2]
  int count() const { return int(types.size()); }
};

Slices read_slices(alibi_mask_t mask) {
  int n = -1;
  EXPECT_EQ(alibi_mask_get_num_slices(mask, &n), ALIBI_STATUS_SUCCESS);
  Slices s;
  if (n < 0) return s;
  s.q.assign(size_t(2 * n), -9);
  s.k.assign(size_t(2 * n), -9);
  s.types.assign(size_t(n), -9);
  EXPECT_EQ(alibi_mask_get_slices(mask, s.q.data(), s.k.data(), s.types.data()),
            ALIBI_STATUS_SUCCESS);
  return s;
}

TEST(ApiMask, VarlenHasOneSlicePerSequence) {
  Context ctx = make_cpu_context();
  const std::vector<int32_t> cu_q{0, 3, 3, 7}, cu_k{0, 5, 6, 6};
  for (int causal : {0, 1}) {
    Mask mask = make_varlen(ctx.get(), cu_q, cu_k, causal);
    const Slices s = read_slices(mask.get());
    const int32_t type = causal ? ALIBI_MASK_CAUSAL : ALIBI_MASK_FULL;
    EXPECT_EQ(s.q, (std::vector<int32_t>{0, 3, 3, 3, 3, 7}));
    EXPECT_EQ(s.k, (std::vector<int32_t>{0, 5, 5, 6, 6, 6}));
    EXPECT_EQ(s.types, (std::vector<int32_t>{type, type, type}));
  }
}

TEST(ApiMask, RangesAreReturnedAsGivenAndHostArraysAreCopied) {
  Context ctx = make_cpu_context();
  std::vector<int32_t> q{0, 4, 4, 9, 2, 2, 4, 9}, k{0, 4, 0, 9, 5, 8, 10, 12}, types{1, 2, 3, 0};
  const auto q0 = q, k0 = k, types0 = types;
  alibi_mask_t raw = nullptr;
  ASSERT_OK(alibi_mask_create_ranges(ctx.get(), 4, q.data(), k.data(), types.data(), 9, 12, &raw));
  Mask mask(raw);
  std::fill(q.begin(), q.end(), 0);
  std::fill(k.begin(), k.end(), 0);
  std::fill(types.begin(), types.end(), 0);
  const Slices s = read_slices(mask.get());
  EXPECT_EQ(s.q, q0);
  EXPECT_EQ(s.k, k0);
  EXPECT_EQ(s.types, types0);
}

TEST(ApiMask, GetSlicesSkipsNullArrays) {
  Context ctx = make_cpu_context();
  Mask mask = make_varlen(ctx.get(), {0, 2, 5}, {0, 3, 4}, 1);
  std::vector<int32_t> k(4, -1);
  ASSERT_OK(alibi_mask_get_slices(mask.get(), nullptr, k.data(), nullptr));
  EXPECT_EQ(k, (std::vector<int32_t>{0, 3, 3, 4}));
  ASSERT_OK(alibi_mask_get_slices(mask.get(), nullptr, nullptr, nullptr));
}

TEST(ApiMask, GetTotalsGivesTheTokenCountsOfEveryKind) {
  Context ctx = make_cpu_context();
  const std::vector<int32_t> cu_q{0, 2, 5}, cu_k{0, 3, 9};
  Mask varlen = make_varlen(ctx.get(), cu_q, cu_k, 1);
  Mask window = make_sliding_window(ctx.get(), cu_q, cu_k, 1, 0);
  alibi_mask_t raw = nullptr;
  const int32_t q_ranges[2] = {1, 4}, k_ranges[2] = {0, 6}, types[1] = {ALIBI_MASK_FULL};
  ASSERT_OK(alibi_mask_create_ranges(ctx.get(), 1, q_ranges, k_ranges, types, 11, 13, &raw));
  Mask ranges(raw);
  const std::pair<alibi_mask_t, std::pair<int64_t, int64_t>> expected[] = {
      {varlen.get(), {5, 9}}, {window.get(), {5, 9}}, {ranges.get(), {11, 13}}};
  for (const auto& [mask, totals] : expected) {
    int64_t total_q = -1, total_k = -1;
    ASSERT_OK(alibi_mask_get_totals(mask, &total_q, &total_k));
    EXPECT_EQ(total_q, totals.first);
    EXPECT_EQ(total_k, totals.second);
    total_k = -1;
    ASSERT_OK(alibi_mask_get_totals(mask, nullptr, &total_k));
    EXPECT_EQ(total_k, totals.second);
  }
}

TEST(ApiMask, EmptyRangesMaskHasNoSlices) {
  Context ctx = make_cpu_context();
  alibi_mask_t raw = nullptr;
  ASSERT_OK(alibi_mask_create_ranges(ctx.get(), 0, nullptr, nullptr, nullptr, 5, 6, &raw));
  Mask mask(raw);
  EXPECT_EQ(read_slices(mask.get()).count(), 0);
}

// SPEC's table: is local cell (r, c) of an sq x sk slice of this type visible?
bool slice_sees(int type, int64_t r, int64_t c, int64_t sq, int64_t sk) {
  const bool causal_ok = c <= r + (sk - sq);
  const bool inverse_ok = c >= r;
  switch (type) {
    case ALIBI_MASK_FULL: return true;
    case ALIBI_MASK_CAUSAL: return causal_ok;
    case ALIBI_MASK_INV_CAUSAL: return inverse_ok;
    case ALIBI_MASK_BI_CAUSAL: return causal_ok && inverse_ok;
    default: return false;
  }
}

// Visibility grid (total_q x total_k) of a list of slices; rectangles must not overlap.
std::vector<char> expand_slices(const Slices& s, int64_t total_q, int64_t total_k) {
  std::vector<char> grid(size_t(total_q * total_k), 0);
  std::vector<char> covered(grid.size(), 0);
  for (int n = 0; n < s.count(); ++n) {
    const int64_t qs = s.q[2 * n], qe = s.q[2 * n + 1], ks = s.k[2 * n], ke = s.k[2 * n + 1];
    for (int64_t i = qs; i < qe; ++i) {
      for (int64_t j = ks; j < ke; ++j) {
        const size_t cell = size_t(i * total_k + j);
        EXPECT_FALSE(covered[cell])
            << "slice " << n << " overlaps another at (" << i << "," << j << ")";
        covered[cell] = 1;
        grid[cell] = slice_sees(s.types[n], i - qs, j - ks, qe - qs, ke - ks);
      }
    }
  }
  return grid;
}

// SPEC's sliding-window definition, written directly per cell.
std::vector<char> sliding_window_grid(const std::vector<int32_t>& cu_q,
                                      const std::vector<int32_t>& cu_k, int left, int right) {
  const int64_t total_k = cu_k.back();
  std::vector<char> grid(size_t(cu_q.back() * total_k), 0);
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    const int64_t sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b], m = std::min(sq, sk);
    for (int64_t row = sq - m; row < sq; ++row) {
      const int64_t p = row - (sq - m) + (sk - m);
      for (int64_t c = 0; c < sk; ++c) {
        const bool inside = (left < 0 || c >= p - left) && (right < 0 || c <= p + right);
        if (inside) grid[size_t((cu_q[b] + row) * total_k + cu_k[b] + c)] = 1;
      }
    }
  }
  return grid;
}

// The sequence whose block contains a slice, or -1.
int owning_sequence(const Slices& s, int n, const std::vector<int32_t>& cu_q,
                    const std::vector<int32_t>& cu_k) {
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    if (cu_q[b] <= s.q[2 * n] && s.q[2 * n + 1] <= cu_q[b + 1] && cu_k[b] <= s.k[2 * n] &&
        s.k[2 * n + 1] <= cu_k[b + 1])
      return int(b);
  }
  return -1;
}

// Per sequence: at most a causal head, one full or bi-causal middle and an inverse-causal tail,
// each a non-empty rectangle inside the sequence's block.
void expect_sliding_window_pieces(const Slices& s, const std::vector<int32_t>& cu_q,
                                  const std::vector<int32_t>& cu_k) {
  const size_t batch = cu_q.size() - 1;
  std::vector<int> heads(batch, 0), middles(batch, 0), tails(batch, 0);
  for (int n = 0; n < s.count(); ++n) {
    EXPECT_LT(s.q[2 * n], s.q[2 * n + 1]) << "empty piece " << n;
    EXPECT_LT(s.k[2 * n], s.k[2 * n + 1]) << "empty piece " << n;
    const int b = owning_sequence(s, n, cu_q, cu_k);
    ASSERT_GE(b, 0) << "piece " << n << " leaves every sequence's block";
    const int type = s.types[n];
    if (type == ALIBI_MASK_CAUSAL)
      ++heads[b];
    else if (type == ALIBI_MASK_INV_CAUSAL)
      ++tails[b];
    else
      ++middles[b];
  }
  for (size_t b = 0; b < batch; ++b) {
    EXPECT_LE(heads[b], 1) << "sequence " << b;
    EXPECT_LE(middles[b], 1) << "sequence " << b;
    EXPECT_LE(tails[b], 1) << "sequence " << b;
  }
}

void expect_sliding_window_matches_definition(alibi_context_t ctx, const std::vector<int32_t>& cu_q,
                                              const std::vector<int32_t>& cu_k, int left,
                                              int right) {
  SCOPED_TRACE("batch " + std::to_string(cu_q.size() - 1) + " total_q " +
               std::to_string(cu_q.back()) + " total_k " + std::to_string(cu_k.back()) +
               " window (" + std::to_string(left) + ", " + std::to_string(right) + ")");
  Mask mask = make_sliding_window(ctx, cu_q, cu_k, left, right);
  ASSERT_NE(mask, nullptr);
  const Slices s = read_slices(mask.get());
  for (int type : s.types) EXPECT_TRUE(type >= 0 && type <= 3) << type;
  expect_sliding_window_pieces(s, cu_q, cu_k);
  EXPECT_EQ(expand_slices(s, cu_q.back(), cu_k.back()),
            sliding_window_grid(cu_q, cu_k, left, right));
}

std::vector<int32_t> random_offsets(std::mt19937& rng, int batch, int max_length) {
  std::uniform_int_distribution<int> length(0, max_length);
  std::vector<int32_t> cu{0};
  for (int b = 0; b < batch; ++b) cu.push_back(cu.back() + length(rng));
  return cu;
}

TEST(ApiMask, SlidingWindowSingleSequencesMatchTheDefinition) {
  Context ctx = make_cpu_context();
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> window(-1, 13);
  for (int trial = 0; trial < 400; ++trial) {
    const auto cu_q = random_offsets(rng, 1, 12), cu_k = random_offsets(rng, 1, 12);
    expect_sliding_window_matches_definition(ctx.get(), cu_q, cu_k, window(rng), window(rng));
    if (HasFailure()) return;
  }
}

TEST(ApiMask, SlidingWindowBatchesMatchTheDefinition) {
  Context ctx = make_cpu_context();
  std::mt19937 rng(6);
  std::uniform_int_distribution<int> window(-1, 9), batch(1, 4);
  for (int trial = 0; trial < 150; ++trial) {
    const int b = batch(rng);
    const auto cu_q = random_offsets(rng, b, 9), cu_k = random_offsets(rng, b, 9);
    expect_sliding_window_matches_definition(ctx.get(), cu_q, cu_k, window(rng), window(rng));
    if (HasFailure()) return;
  }
}

TEST(ApiMask, SlidingWindowEdgeCasesMatchTheDefinition) {
  Context ctx = make_cpu_context();
  const std::vector<int32_t> cu_q{0, 6, 6, 9, 17}, cu_k{0, 6, 10, 10, 21};
  for (int left : {-1, 0, 1, 5, 40}) {
    for (int right : {-1, 0, 1, 5, 40})
      expect_sliding_window_matches_definition(ctx.get(), cu_q, cu_k, left, right);
  }
}

TEST(ApiMask, SlidingWindowUnboundedLeftEqualsCausalVarlen) {
  Context ctx = make_cpu_context();
  const std::vector<int32_t> cu_q{0, 4, 5, 12, 12}, cu_k{0, 4, 11, 14, 17};
  Mask window = make_sliding_window(ctx.get(), cu_q, cu_k, -1, 0);
  Mask causal = make_varlen(ctx.get(), cu_q, cu_k, 1);
  EXPECT_EQ(expand_slices(read_slices(window.get()), 12, 17),
            expand_slices(read_slices(causal.get()), 12, 17));
}

// ------------------------------------------------------------------------------------------
// Lifetimes

TEST(ApiLifetime, TensorsAndMasksOutliveTheirContext) {
  alibi_context_t first = nullptr;
  ASSERT_OK(alibi_context_create(ALIBI_DEVICE_CPU, 0, &first));
  const std::vector<int32_t> cu_q{0, 2}, cu_k{0, 3};
  Mask mask = make_varlen(first, cu_q, cu_k, 0);
  Tensor out = create_tensor(first, ALIBI_DTYPE_F32, {1, 2, 3});
  alibi_context_destroy(first);

  std::vector<float> poison(6, test::kPoison), values(6, 0.0f);
  ASSERT_OK(alibi_tensor_copy_from_host(out.get(), poison.data(), poison.size() * sizeof(float)));
  EXPECT_EQ(read_slices(mask.get()).count(), 1);
  Context second = make_cpu_context();
  ASSERT_OK(alibi_build_bias(second.get(), mask.get(), 1, nullptr, out.get()));
  ASSERT_OK(alibi_tensor_copy_to_host(out.get(), values.data(), values.size() * sizeof(float)));
  // One head: slope 2^-8. Bottom-right aligned positions: qpos = i + 1, kpos = j.
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(values[size_t(i * 3 + j)], -std::abs(i + 1 - j) / 256.0f);
  }
}

// ------------------------------------------------------------------------------------------
// Slopes

// SPEC's slope formula in double.
double reference_slope(int head, int num_heads, double max_bias) {
  int c = 1;
  while (c * 2 <= num_heads) c *= 2;
  const double m0 = std::pow(2.0, -max_bias / c), m1 = std::pow(2.0, -max_bias / (2.0 * c));
  return head < c ? std::pow(m0, head + 1) : std::pow(m1, 2 * (head - c) + 1);
}

std::vector<float> library_slopes(int num_heads, float max_bias) {
  std::vector<float> slopes(size_t(num_heads), -1.0f);
  EXPECT_EQ(alibi_compute_slopes(num_heads, max_bias, slopes.data()), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return slopes;
}

// The float nearest the double (allowing for a tie broken by a rounding of the double itself).
void expect_correctly_rounded(float got, double exact) {
  const float nearest = float(exact);
  const double half_ulp = (double(std::nextafter(nearest, INFINITY)) - nearest) / 2.0;
  EXPECT_LE(std::fabs(double(got) - exact), half_ulp * 1.001)
      << "got " << got << " exact " << exact;
}

TEST(ApiSlopes, MatchThePaperFormulaUpTo128Heads) {
  for (float max_bias : {8.0f, 1.0f, 0.5f, 3.7f, 16.0f}) {
    for (int n = 1; n <= 128; ++n) {
      SCOPED_TRACE("max_bias " + std::to_string(max_bias) + " heads " + std::to_string(n));
      const auto slopes = library_slopes(n, max_bias);
      for (int h = 0; h < n; ++h)
        expect_correctly_rounded(slopes[size_t(h)], reference_slope(h, n, max_bias));
      if (HasFailure()) return;
    }
  }
}

TEST(ApiSlopes, KnownValues) {
  EXPECT_EQ(library_slopes(8, 8.0f),
            (std::vector<float>{1.f / 2, 1.f / 4, 1.f / 8, 1.f / 16, 1.f / 32, 1.f / 64, 1.f / 128,
                                1.f / 256}));
  EXPECT_EQ(library_slopes(3, 8.0f), (std::vector<float>{1.f / 16, 1.f / 256, 1.f / 4}));
  EXPECT_EQ(library_slopes(6, 8.0f),
            (std::vector<float>{1.f / 4, 1.f / 16, 1.f / 64, 1.f / 256, 1.f / 2, 1.f / 8}));
  EXPECT_EQ(library_slopes(1, 8.0f), (std::vector<float>{1.f / 256}));
  EXPECT_EQ(library_slopes(4, 4.0f), (std::vector<float>{1.f / 2, 1.f / 4, 1.f / 8, 1.f / 16}));
}

TEST(ApiSlopes, ZeroMaxBiasGivesZeros) {
  for (int n = 1; n <= 128; ++n) {
    for (float slope : library_slopes(n, 0.0f)) ASSERT_EQ(slope, 0.0f) << n << " heads";
  }
}

TEST(ApiSlopes, TensorParallelShardsAreSlicesOfTheGlobalSlopes) {
  std::mt19937 rng(3);
  for (float max_bias : {8.0f, 5.5f}) {
    for (int total = 1; total <= 96; ++total) {
      const auto global = library_slopes(total, max_bias);
      for (int trial = 0; trial < 4; ++trial) {
        const int offset = std::uniform_int_distribution<int>(0, total - 1)(rng);
        const int n = std::uniform_int_distribution<int>(1, total - offset)(rng);
        std::vector<float> shard(size_t(n), -1.0f);
        ASSERT_OK(alibi_compute_slopes_tp(total, offset, n, max_bias, shard.data()));
        const std::vector<float> expected(global.begin() + offset, global.begin() + offset + n);
        ASSERT_EQ(shard, expected) << "total " << total << " offset " << offset << " n " << n;
      }
    }
  }
}

}  // namespace
