/*
 * packaging.params_abi_*: alibi_attention_params across header versions. Built twice: against
 * today's header (the "older caller") and, with ALIBI_NEWER_HEADER, against a copy of it with a
 * field appended (the "newer caller"). Each run loads two builds of libalibi, today's and one
 * built against that newer header, and checks that
 *   - an older caller is served by a newer library: its struct is read only within its
 *     struct_size (it lives in a heap block of exactly its size: ASan reports any read past
 *     it), and gives the same results as with the library of its own header;
 *   - a newer caller is refused by an older library (INVALID_ARGUMENT naming both sizes) and
 *     served by the library of its header;
 *   - alibi_attention_params_init never writes past the caller's struct.
 *
 * usage: params_abi_test LIB_TODAY LIB_NEWER
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alibi/alibi.h"

#define TOKENS 9
#define HEADS 2
#define DIM 8
#define ELEMENTS (TOKENS * HEADS * DIM)

static int failures = 0;

#define CHECK(cond, ...)                     \
  do {                                       \
    if (!(cond)) {                           \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                   \
      printf("\n");                          \
      ++failures;                            \
    }                                        \
  } while (0)

/* The entry points used, from one build of the library. */
typedef struct {
  const char* path;
  void* handle;
  alibi_status (*context_create)(alibi_device, int, alibi_context_t*);
  void (*context_destroy)(alibi_context_t);
  alibi_status (*mask_create_varlen)(alibi_context_t, int, const int32_t*, const int32_t*, int,
                                     alibi_mask_t*);
  void (*mask_destroy)(alibi_mask_t);
  alibi_status (*tensor_wrap)(alibi_context_t, alibi_dtype, int, const int64_t*, const int64_t*,
                              void*, alibi_tensor_t*);
  void (*tensor_destroy)(alibi_tensor_t);
  alibi_status (*attention_forward)(alibi_context_t, alibi_tensor_t, alibi_tensor_t,
                                    alibi_tensor_t, alibi_mask_t,
                                    const alibi_attention_params*, alibi_tensor_t,
                                    alibi_tensor_t);
  const char* (*last_error_message)(void);
  void (*params_init_v2)(alibi_attention_params*, size_t);
  void (*params_init_first_version)(alibi_attention_params*);
} Library;

static void* symbol(const Library* lib, const char* name) {
  void* address = dlsym(lib->handle, name);
  if (!address) {
    printf("FAIL: %s has no %s\n", lib->path, name);
    exit(1);
  }
  return address;
}

static Library load(const char* path) {
  Library lib;
  memset(&lib, 0, sizeof lib);
  lib.path = path;
  lib.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib.handle) {
    printf("FAIL: cannot load %s: %s\n", path, dlerror());
    exit(1);
  }
  *(void**)&lib.context_create = symbol(&lib, "alibi_context_create");
  *(void**)&lib.context_destroy = symbol(&lib, "alibi_context_destroy");
  *(void**)&lib.mask_create_varlen = symbol(&lib, "alibi_mask_create_varlen");
  *(void**)&lib.mask_destroy = symbol(&lib, "alibi_mask_destroy");
  *(void**)&lib.tensor_wrap = symbol(&lib, "alibi_tensor_wrap");
  *(void**)&lib.tensor_destroy = symbol(&lib, "alibi_tensor_destroy");
  *(void**)&lib.attention_forward = symbol(&lib, "alibi_attention_forward");
  *(void**)&lib.last_error_message = symbol(&lib, "alibi_last_error_message");
  *(void**)&lib.params_init_v2 = symbol(&lib, "alibi_attention_params_init_v2");
  *(void**)&lib.params_init_first_version = symbol(&lib, "alibi_attention_params_init");
  return lib;
}

/* This caller's params as `lib`'s init fills them, non-default values set, in a heap block of
   exactly the caller's struct. */
static alibi_attention_params* caller_params(const Library* lib) {
  alibi_attention_params* params = malloc(sizeof *params);
  lib->params_init_v2(params, sizeof *params);
  params->softmax_scale = 0.3f;
  params->softcap = 2.0f;
  params->max_bias = 4.0f;
#ifdef ALIBI_NEWER_HEADER
  params->appended_in_a_newer_version = 15;
#endif
  return params;
}

/* Causal attention over one sequence of TOKENS with fixed inputs; out receives the output. */
static alibi_status forward(const Library* lib, const alibi_attention_params* params, float* out) {
  static float q[ELEMENTS], k[ELEMENTS], v[ELEMENTS];
  for (int i = 0; i < ELEMENTS; ++i) {
    q[i] = (float)(i * 37 % 17 - 8) / 8.0f;
    k[i] = (float)(i * 23 % 13 - 6) / 6.0f;
    v[i] = (float)(i * 11 % 19 - 9) / 9.0f;
  }
  const int32_t cu[2] = {0, TOKENS};
  const int64_t shape[3] = {TOKENS, HEADS, DIM};
  alibi_context_t ctx = NULL;
  alibi_mask_t mask = NULL;
  alibi_tensor_t tq = NULL, tk = NULL, tv = NULL, tout = NULL;
  alibi_status status = lib->context_create(ALIBI_DEVICE_CPU, 0, &ctx);
  if (!status) status = lib->mask_create_varlen(ctx, 1, cu, cu, 1, &mask);
  if (!status) status = lib->tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, q, &tq);
  if (!status) status = lib->tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, k, &tk);
  if (!status) status = lib->tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, v, &tv);
  if (!status) status = lib->tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, out, &tout);
  if (!status) status = lib->attention_forward(ctx, tq, tk, tv, mask, params, tout, NULL);
  lib->tensor_destroy(tq);
  lib->tensor_destroy(tk);
  lib->tensor_destroy(tv);
  lib->tensor_destroy(tout);
  lib->mask_destroy(mask);
  lib->context_destroy(ctx);
  return status;
}

/* Neither init writes past this caller's struct: the bytes after it keep their poison. */
static void check_init_stays_inside(const Library* lib) {
  const size_t size = sizeof(alibi_attention_params);
  unsigned char* block = malloc(size + 16);
  memset(block, 0xA5, size + 16);
  lib->params_init_v2((alibi_attention_params*)block, size);
  lib->params_init_first_version((alibi_attention_params*)block);
  for (size_t i = size; i < size + 16; ++i)
    CHECK(block[i] == 0xA5, "%s: init wrote byte %zu past a struct of %zu bytes", lib->path, i,
          size);
  free(block);
}

static void check_served(const Library* lib, const alibi_attention_params* params, float* out) {
  const alibi_status status = forward(lib, params, out);
  CHECK(status == ALIBI_STATUS_SUCCESS, "%s refused a struct of %zu bytes: %s", lib->path,
        params->struct_size, lib->last_error_message());
}

/* This caller's params, as lib's init fills them, served by lib. */
static void served_by(const Library* lib, float* out) {
  alibi_attention_params* params = caller_params(lib);
  check_served(lib, params, out);
  free(params);
}

#ifndef ALIBI_NEWER_HEADER
static void older_caller(const Library* today, const Library* newer) {
  float mine[ELEMENTS], served_by_newer[ELEMENTS], defaults[ELEMENTS];
  served_by(today, mine);
  served_by(newer, served_by_newer);
  CHECK(memcmp(mine, served_by_newer, sizeof mine) == 0,
        "the newer library read this caller's params differently");
  check_served(today, NULL, defaults);
  CHECK(memcmp(mine, defaults, sizeof mine) != 0, "the params made no difference");
  printf("older caller (struct of %zu bytes): served alike by both libraries\n",
         sizeof(alibi_attention_params));
}
#else
static void newer_caller(const Library* today, const Library* newer) {
  float mine[ELEMENTS], as_older[ELEMENTS];
  alibi_attention_params* params = caller_params(today);
  const alibi_status status = forward(today, params, mine);
  const size_t older_size = offsetof(alibi_attention_params, appended_in_a_newer_version);
  char mine_named[32], older_named[32];
  snprintf(mine_named, sizeof mine_named, "struct_size = %zu", sizeof *params);
  snprintf(older_named, sizeof older_named, "(%zu bytes", older_size);
  const char* message = today->last_error_message();
  CHECK(status == ALIBI_STATUS_INVALID_ARGUMENT, "the older library took a newer struct: %d",
        (int)status);
  CHECK(strstr(message, mine_named) && strstr(message, older_named),
        "the message does not name both sizes: %s", message);
  printf("older library: %s\n", message);
  params->struct_size = older_size;  /* what an older header's struct holds */
  check_served(today, params, as_older);
  free(params);
  served_by(newer, mine);
  CHECK(memcmp(mine, as_older, sizeof mine) == 0,
        "the newer library's result differs from the older one's on the shared fields");
  printf("newer caller (struct of %zu bytes): refused by the older library, served by its own\n",
         sizeof(alibi_attention_params));
}
#endif

int main(int argc, char** argv) {
  if (argc != 3) {
    printf("usage: %s LIB_TODAY LIB_NEWER\n", argv[0]);
    return 2;
  }
  const Library today = load(argv[1]), newer = load(argv[2]);
  check_init_stays_inside(&today);
  check_init_stays_inside(&newer);
#ifdef ALIBI_NEWER_HEADER
  newer_caller(&today, &newer);
#else
  older_caller(&today, &newer);
#endif
  printf("%s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
