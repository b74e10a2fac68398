// Fuzz target: alibi_tensor_create / alibi_tensor_wrap with any dtype, ndim, sizes and strides
// (including sizes and strides whose element or byte counts overflow 64 bits), the getters, and
// strided copies to and from the host, checked element by element.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_common.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;

constexpr size_t kBufferBytes = 8192;
constexpr int64_t kMaxCreateBytes = 1 << 20;  // larger creations are valid but not run
using i128 = __int128;

alignas(64) unsigned char buffer[kBufferBytes];

size_t valid_element_size(int dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F32:
    case ALIBI_DTYPE_I32: return 4;
    case ALIBI_DTYPE_F16:
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I64: return 8;
    default: return 0;
  }
}

// Walks every element in row-major order: fn(index, offset in elements).
template <class Fn>
void for_each(int ndim, const int64_t* shape, const int64_t* strides, Fn fn) {
  int64_t numel = 1;
  for (int d = 0; d < ndim; ++d) numel *= shape[d];
  for (int64_t i = 0; i < numel; ++i) {
    int64_t rest = i, offset = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      offset += (rest % shape[d]) * strides[d];
      rest /= shape[d];
    }
    fn(i, offset);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  const bool wrap = in.flag();
  const uint8_t dtype_pick = in.u8();
  const int dtype = dtype_pick < 240 ? int(in.in(0, 4)) : dtype_pick < 248 ? 5 : dtype_pick < 252 ? -1 : INT32_MIN;
  const uint8_t ndim_pick = in.u8();
  const int ndim = ndim_pick < 240   ? int(in.in(0, 4))
                   : ndim_pick < 248 ? int(in.in(5, 8))
                   : ndim_pick < 252 ? 9
                                     : -1;
  int64_t shape[ALIBI_MAX_DIMS + 1] = {}, strides[ALIBI_MAX_DIMS + 1] = {};
  const int dims = std::clamp(ndim, 0, ALIBI_MAX_DIMS);
  for (int d = 0; d < dims; ++d) shape[d] = in.i64_small_or_wild(0, 5);
  const bool explicit_strides = wrap && in.flag();
  for (int d = 0; d < dims; ++d) strides[d] = in.i64_small_or_wild(0, 12);
  const uint8_t nulls = in.u8();
  const bool null_ctx = nulls == 255, null_shape = nulls == 254, null_out = nulls == 253;
  const bool null_data = nulls < 32;

  // The answer the header promises, in the library's order of checks.
  const size_t esize = valid_element_size(dtype);
  Expect expect;
  i128 numel = 1, extent = 1, reach = 0;
  bool extent_overflows = false, reach_overflows = false;
  for (int d = 0; d < dims; ++d) {
    if (shape[d] < 0) continue;
    numel *= shape[d];
    if (numel > INT64_MAX) numel = i128(INT64_MAX) + 1;
    extent *= std::max<int64_t>(shape[d], 1);
    if (extent * i128(std::max<size_t>(esize, 1)) > INT64_MAX) extent_overflows = true, extent = 1;
  }
  bool negative_size = false;
  for (int d = 0; d < dims; ++d) negative_size |= shape[d] < 0;
  int64_t contiguous[ALIBI_MAX_DIMS] = {};
  if (!extent_overflows && !negative_size) {
    int64_t stride = 1;
    for (int d = dims - 1; d >= 0; --d) contiguous[d] = stride, stride *= shape[d];
  }
  const int64_t* used_strides = explicit_strides ? strides : contiguous;
  bool negative_stride = false;
  for (int d = 0; d < dims; ++d) {
    negative_stride |= explicit_strides && strides[d] < 0;
    if (shape[d] <= 0) continue;
    if (explicit_strides && strides[d] >= 0) {
      reach += i128(shape[d] - 1) * strides[d];
      if (reach > INT64_MAX || (reach + 1) * i128(std::max<size_t>(esize, 1)) > INT64_MAX)
        reach_overflows = true, reach = 0;
    }
  }
  if (!explicit_strides && !extent_overflows && !negative_size) {
    reach = 0;
    for (int d = 0; d < dims; ++d)
      if (shape[d] > 0) reach += i128(shape[d] - 1) * contiguous[d];
  }
  if (null_out || null_ctx) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  } else if (esize == 0 || ndim < 0 || ndim > ALIBI_MAX_DIMS) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (ndim > 0 && null_shape) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  } else if (negative_size || extent_overflows) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (wrap && (negative_stride || reach_overflows)) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (wrap && null_data && numel > 0) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  }
  const int64_t bytes = expect.ok() ? int64_t(numel) * int64_t(esize) : 0;
  if (!wrap && expect.ok() && bytes > kMaxCreateBytes) return 0;  // valid, but not run

  alibi_context_t ctx = null_ctx ? nullptr : fuzz::cpu_context(1);
  alibi_tensor_t t = reinterpret_cast<alibi_tensor_t>(&expect);  // must be overwritten
  alibi_tensor_t* out = null_out ? nullptr : &t;
  const int64_t* shape_arg = null_shape ? nullptr : shape;
  if (wrap) {
    expect.check(alibi_tensor_wrap(ctx, alibi_dtype(dtype), ndim, shape_arg,
                                   explicit_strides ? strides : nullptr, null_data ? nullptr : buffer, out),
                 "alibi_tensor_wrap");
  } else {
    expect.check(alibi_tensor_create(ctx, alibi_dtype(dtype), ndim, shape_arg, out), "alibi_tensor_create");
  }
  if (!expect.ok()) {
    FUZZ_REQUIRE(null_out || t == nullptr, "a failed tensor call did not set *out to NULL");
    return 0;
  }
  fuzz::TensorHandle owner{t};

  // Getters.
  alibi_dtype got_dtype;
  int got_ndim = -1;
  int64_t got[ALIBI_MAX_DIMS + 1];
  void* got_data = nullptr;
  fuzz::check_status_ok(alibi_tensor_get_dtype(t, &got_dtype), "alibi_tensor_get_dtype");
  fuzz::check_status_ok(alibi_tensor_get_ndim(t, &got_ndim), "alibi_tensor_get_ndim");
  FUZZ_REQUIRE(got_dtype == dtype && got_ndim == ndim, "dtype or ndim read back differ");
  fuzz::check_status_ok(alibi_tensor_get_shape(t, ALIBI_MAX_DIMS + 1, got), "alibi_tensor_get_shape");
  for (int d = 0; d < ndim; ++d) FUZZ_REQUIRE(got[d] == shape[d], "shape[%d] read back differs", d);
  fuzz::check_status_ok(alibi_tensor_get_strides(t, ndim, got), "alibi_tensor_get_strides");
  for (int d = 0; d < ndim; ++d)
    FUZZ_REQUIRE(got[d] == used_strides[d], "strides[%d] = %lld read back, expected %lld", d,
                 (long long)got[d], (long long)used_strides[d]);
  if (ndim > 0) {
    Expect small;
    small.add(ALIBI_STATUS_INVALID_ARGUMENT);
    small.check(alibi_tensor_get_shape(t, ndim - 1, got), "alibi_tensor_get_shape");
    Expect null;
    null.add(ALIBI_STATUS_NULL_POINTER);
    null.check(alibi_tensor_get_strides(t, ndim, nullptr), "alibi_tensor_get_strides");
  }
  fuzz::check_status_ok(alibi_tensor_get_data(t, &got_data), "alibi_tensor_get_data");
  if (wrap) {
    FUZZ_REQUIRE(got_data == (null_data ? nullptr : buffer), "the wrapped data pointer changed");
  } else {
    FUZZ_REQUIRE((got_data == nullptr) == (bytes == 0), "an owned tensor of %lld bytes has data %p",
                 (long long)bytes, got_data);
    FUZZ_REQUIRE(reinterpret_cast<uintptr_t>(got_data) % 64 == 0, "owned data is not 64-byte aligned");
  }

  // Copies, when the elements lie inside memory this target owns.
  unsigned char* base = static_cast<unsigned char*>(got_data);
  const bool fits = wrap ? (numel == 0 || (reach + 1) * i128(esize) <= i128(kBufferBytes)) : true;
  if (!fits || numel > 4096) return 0;
  Expect wrong_size;
  wrong_size.add(ALIBI_STATUS_INVALID_ARGUMENT);
  std::vector<unsigned char> host(size_t(bytes) + esize);
  wrong_size.check(alibi_tensor_copy_to_host(t, host.data(), size_t(bytes) + esize), "alibi_tensor_copy_to_host");
  if (bytes > 0) {
    Expect null;
    null.add(ALIBI_STATUS_NULL_POINTER);
    null.check(alibi_tensor_copy_from_host(t, nullptr, size_t(bytes)), "alibi_tensor_copy_from_host");
  }
  if (numel == 0) {
    fuzz::check_status_ok(alibi_tensor_copy_to_host(t, nullptr, 0), "alibi_tensor_copy_to_host");
    return 0;
  }
  // Host -> tensor: elements written in row-major order (later ones win where strides alias).
  const uint8_t seed = in.u8();
  for (size_t i = 0; i < size_t(bytes); ++i) host[i] = uint8_t(seed + i * 7);
  std::vector<unsigned char> before(kBufferBytes);
  if (wrap) std::memcpy(before.data(), buffer, kBufferBytes);
  fuzz::check_status_ok(alibi_tensor_copy_from_host(t, host.data(), size_t(bytes)), "alibi_tensor_copy_from_host");
  if (wrap) {
    std::vector<unsigned char> want = before;
    for_each(ndim, shape, used_strides, [&](int64_t i, int64_t offset) {
      std::memcpy(&want[size_t(offset) * esize], &host[size_t(i) * esize], esize);
    });
    FUZZ_REQUIRE(std::memcmp(want.data(), buffer, kBufferBytes) == 0,
                 "copy_from_host wrote other bytes than the strided elements");
  }
  // Tensor -> host: each element read from its offset.
  std::vector<unsigned char> back(static_cast<size_t>(bytes));
  fuzz::check_status_ok(alibi_tensor_copy_to_host(t, back.data(), size_t(bytes)), "alibi_tensor_copy_to_host");
  for_each(ndim, shape, used_strides, [&](int64_t i, int64_t offset) {
    FUZZ_REQUIRE(std::memcmp(&back[size_t(i) * esize], base + size_t(offset) * esize, esize) == 0,
                 "copy_to_host element %lld differs from the tensor's element", (long long)i);
  });
  return 0;
}
