/*
 * Pure C test of libalibi's C ABI: the header compiles as strict C99, the header's version
 * agrees with the library's, handles are created and destroyed, destroy(NULL) is a no-op,
 * and failures give the documented status and a message naming the function.
 * Prints one line per failed check and a closing summary; exits non-zero on any failure.
 */
#include <alibi/alibi.h>

#include <stdio.h>
#include <string.h>

static int g_checks = 0;
static int g_failures = 0;

#define CHECK(cond)                                                             \
  do {                                                                          \
    ++g_checks;                                                                 \
    if (!(cond)) {                                                              \
      ++g_failures;                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                                           \
  } while (0)

#define CHECK_STATUS(call, expected)                                                     \
  do {                                                                                   \
    alibi_status s_ = (call);                                                            \
    ++g_checks;                                                                          \
    if (s_ != (expected)) {                                                              \
      ++g_failures;                                                                      \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s); last error: %s\n",  \
              __FILE__, __LINE__, #call, (int)s_, alibi_status_string(s_),               \
              (int)(expected), alibi_status_string(expected), alibi_last_error_message()); \
    }                                                                                    \
  } while (0)

static void test_version(void) {
  const char* s = alibi_version_string();
  char expected[32];
  CHECK(ALIBI_VERSION_NUMBER ==
        ALIBI_VERSION_MAJOR * 10000 + ALIBI_VERSION_MINOR * 100 + ALIBI_VERSION_PATCH);
  CHECK(alibi_version_number() == (unsigned)ALIBI_VERSION_NUMBER);
  CHECK(s != NULL);
  CHECK(s != NULL && strcmp(s, ALIBI_VERSION_STRING) == 0);
  snprintf(expected, sizeof expected, "%d.%d.%d", ALIBI_VERSION_MAJOR, ALIBI_VERSION_MINOR,
           ALIBI_VERSION_PATCH);
  CHECK(strcmp(ALIBI_VERSION_STRING, expected) == 0);
}

static void test_status_strings(void) {
  int s;
  for (s = ALIBI_STATUS_SUCCESS; s <= ALIBI_STATUS_INTERNAL; ++s) {
    const char* text = alibi_status_string((alibi_status)s);
    CHECK(text != NULL && text[0] != '\0');
  }
  CHECK(alibi_status_string((alibi_status)12345) != NULL);
  /* The numbers are ABI. */
  CHECK(ALIBI_STATUS_INVALID_ARGUMENT == 1 && ALIBI_STATUS_NULL_POINTER == 2 &&
        ALIBI_STATUS_BACKEND_UNAVAILABLE == 6 && ALIBI_STATUS_INTERNAL == 9);
  CHECK(ALIBI_DTYPE_F32 == 0 && ALIBI_DTYPE_I64 == 4 && ALIBI_DEVICE_CUDA == 2 &&
        ALIBI_MASK_BI_CAUSAL == 3);
}

static void test_destroy_null(void) {
  alibi_context_destroy(NULL);
  alibi_tensor_destroy(NULL);
  alibi_mask_destroy(NULL);
  ++g_checks; /* reaching this line is the check */
}

static void test_context(void) {
  alibi_context_t ctx = NULL;
  alibi_device device = ALIBI_DEVICE_AUTO;
  CHECK(alibi_device_count(ALIBI_DEVICE_CPU) == 1);
  CHECK(alibi_device_count(ALIBI_DEVICE_CUDA) >= 0);
  CHECK_STATUS(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), ALIBI_STATUS_SUCCESS);
  CHECK(ctx != NULL);
  if (ctx == NULL) return;
  CHECK(strcmp(alibi_last_error_message(), "") == 0);
  CHECK_STATUS(alibi_context_get_device(ctx, &device), ALIBI_STATUS_SUCCESS);
  CHECK(device == ALIBI_DEVICE_CPU);
  CHECK_STATUS(alibi_context_set_num_threads(ctx, 1), ALIBI_STATUS_SUCCESS);
  CHECK_STATUS(alibi_context_synchronize(ctx), ALIBI_STATUS_SUCCESS);
  CHECK_STATUS(alibi_context_set_num_threads(ctx, -1), ALIBI_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(alibi_context_get_device(ctx, NULL), ALIBI_STATUS_NULL_POINTER);
  alibi_context_destroy(ctx);
}

static void test_tensor_and_mask(void) {
  alibi_context_t ctx = NULL;
  alibi_tensor_t t = NULL;
  alibi_mask_t mask = NULL;
  const int64_t shape[2] = {2, 3};
  const float src[6] = {1, 2, 3, 4, 5, 6};
  float dst[6] = {0};
  int64_t got_shape[2] = {0, 0};
  const int32_t cu_q[3] = {0, 1, 4};
  const int32_t cu_k[3] = {0, 2, 5};
  int n = -1;
  CHECK_STATUS(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), ALIBI_STATUS_SUCCESS);
  if (ctx == NULL) return;

  CHECK_STATUS(alibi_tensor_create(ctx, ALIBI_DTYPE_F32, 2, shape, &t), ALIBI_STATUS_SUCCESS);
  CHECK_STATUS(alibi_tensor_copy_from_host(t, src, sizeof src), ALIBI_STATUS_SUCCESS);
  CHECK_STATUS(alibi_tensor_copy_to_host(t, dst, sizeof dst), ALIBI_STATUS_SUCCESS);
  CHECK(memcmp(src, dst, sizeof src) == 0);
  CHECK_STATUS(alibi_tensor_get_shape(t, 2, got_shape), ALIBI_STATUS_SUCCESS);
  CHECK(got_shape[0] == 2 && got_shape[1] == 3);
  CHECK_STATUS(alibi_tensor_copy_to_host(t, dst, sizeof dst - 1), ALIBI_STATUS_INVALID_ARGUMENT);
  alibi_tensor_destroy(t);

  CHECK_STATUS(alibi_mask_create_varlen(ctx, 2, cu_q, cu_k, 1, &mask), ALIBI_STATUS_SUCCESS);
  CHECK_STATUS(alibi_mask_get_num_slices(mask, &n), ALIBI_STATUS_SUCCESS);
  CHECK(n == 2);
  alibi_mask_destroy(mask);
  /* Objects may outlive their context. */
  CHECK_STATUS(alibi_mask_create_varlen(ctx, 2, cu_q, cu_k, 0, &mask), ALIBI_STATUS_SUCCESS);
  alibi_context_destroy(ctx);
  alibi_mask_destroy(mask);
}

static void test_errors(void) {
  alibi_context_t ctx = (alibi_context_t)&g_checks; /* must be reset to NULL on failure */
  const char* message;
  char small[8];
  char big[1024];
  size_t full;

  CHECK_STATUS(alibi_context_create((alibi_device)7, 0, &ctx), ALIBI_STATUS_INVALID_ARGUMENT);
  CHECK(ctx == NULL);
  message = alibi_last_error_message();
  CHECK(message != NULL && strstr(message, "alibi_context_create") != NULL);
  if (message == NULL) return;
  full = strlen(message);
  CHECK(full >= sizeof small); /* long enough to exercise truncation */

  /* Truncation: like snprintf, the full length comes back and the buffer is NUL-terminated. */
  memset(small, 'X', sizeof small);
  CHECK(alibi_last_error_copy(small, sizeof small) == full);
  CHECK(small[sizeof small - 1] == '\0');
  CHECK(strncmp(small, message, sizeof small - 1) == 0);
  CHECK(strlen(small) == sizeof small - 1);
  /* Capacity 1 gives an empty string, capacity 0 writes nothing. */
  small[0] = 'X';
  CHECK(alibi_last_error_copy(small, 1) == full && small[0] == '\0');
  small[0] = 'X';
  CHECK(alibi_last_error_copy(small, 0) == full && small[0] == 'X');
  CHECK(alibi_last_error_copy(NULL, 0) == full);
  /* A large enough buffer gets the whole message. */
  CHECK(alibi_last_error_copy(big, sizeof big) == full);
  CHECK(strcmp(big, message) == 0);
  /* Copying is not an alibi call that fails or succeeds: the message is still there. */
  CHECK(strcmp(alibi_last_error_message(), big) == 0);

  CHECK_STATUS(alibi_context_create(ALIBI_DEVICE_CPU, 0, NULL), ALIBI_STATUS_NULL_POINTER);
  CHECK(strstr(alibi_last_error_message(), "alibi_context_create") != NULL);
  CHECK_STATUS(alibi_context_create(ALIBI_DEVICE_CPU, 3, &ctx), ALIBI_STATUS_INVALID_ARGUMENT);
  CHECK(ctx == NULL);
  CHECK_STATUS(alibi_context_get_device(NULL, NULL), ALIBI_STATUS_NULL_POINTER);
  CHECK_STATUS(alibi_compute_slopes(4, 8.0f, NULL), ALIBI_STATUS_NULL_POINTER);

  /* A successful call clears the message. */
  CHECK_STATUS(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), ALIBI_STATUS_SUCCESS);
  CHECK(strcmp(alibi_last_error_message(), "") == 0);
  alibi_context_destroy(ctx);
}

static void test_slopes_and_params(void) {
  float slopes[8];
  float tp[3];
  alibi_attention_params params;
  int h;
  CHECK_STATUS(alibi_compute_slopes(8, 8.0f, slopes), ALIBI_STATUS_SUCCESS);
  /* 8 heads, max_bias 8: slope[h] = 2^-(h+1), exact in float. */
  for (h = 0; h < 8; ++h) CHECK(slopes[h] == 1.0f / (float)(2 << h));
  CHECK_STATUS(alibi_compute_slopes_tp(8, 4, 3, 8.0f, tp), ALIBI_STATUS_SUCCESS);
  CHECK(tp[0] == slopes[4] && tp[1] == slopes[5] && tp[2] == slopes[6]);
  CHECK_STATUS(alibi_compute_slopes(-1, 8.0f, slopes), ALIBI_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(alibi_last_error_message(), "alibi_compute_slopes") != NULL);

  memset(&params, 0xff, sizeof params);
  alibi_attention_params_init(&params);
  CHECK(params.struct_size == sizeof(alibi_attention_params));
  CHECK(params.max_bias == 8.0f);
  CHECK(params.softcap == 0.0f);
  CHECK(params.slopes == NULL && params.attn_bias == NULL);
  CHECK(params.total_heads == 0 && params.head_offset == 0);
}

int main(void) {
  test_version();
  test_status_strings();
  test_destroy_null();
  test_context();
  test_tensor_and_mask();
  test_errors();
  test_slopes_and_params();
  printf("c_abi_test: libalibi %s (header %s): %d checks, %d failed: %s\n",
         alibi_version_string(), ALIBI_VERSION_STRING, g_checks, g_failures,
         g_failures == 0 ? "PASS" : "FAIL");
  return g_failures == 0 ? 0 : 1;
}
