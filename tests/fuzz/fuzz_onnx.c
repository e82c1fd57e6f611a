/* libFuzzer harness for the ONNX loader, the planner and the kernels: an
 * input either fails to load with a message, or loads, plans and runs
 * (twice, the second on the cached plan) on small filled inputs, under
 * small limits so that no input can make it run long. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuslice/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT_ELEMS 4096

/* Variable dims become 2; -1, 0, 1 repeat through the data, so that
 * Reshape targets and divisors take their interesting values. */
static void *fill_input(const gs_tensor_info_t *info, gs_tensor_t *t) {
  size_t count = 1, es = gs_dtype_size(info->dtype);
  memset(t, 0, sizeof *t);
  t->name = info->name;
  t->dtype = info->dtype;
  t->rank = info->rank < 0 ? 1 : (unsigned)info->rank;
  for (unsigned d = 0; d < t->rank; d++) {
    t->shape[d] = info->rank < 0 || info->shape[d] < 0 ? 2 : info->shape[d];
    if (t->shape[d] > MAX_INPUT_ELEMS)
      return NULL;
    count *= (size_t)t->shape[d];
    if (count > MAX_INPUT_ELEMS)
      return NULL;
  }
  uint8_t *buf = calloc(count + 1, es);
  if (!buf)
    return NULL;
  for (size_t i = 0; i < count; i++) {
    int v = (int)(i % 3) - 1;
    if (info->dtype == GS_DTYPE_FP32) {
      float f = (float)v;
      memcpy(buf + i * es, &f, es);
    } else if (info->dtype == GS_DTYPE_INT64) {
      int64_t x = v;
      memcpy(buf + i * es, &x, es);
    } else if (info->dtype == GS_DTYPE_INT32) {
      int32_t x = v;
      memcpy(buf + i * es, &x, es);
    } else {
      buf[i * es] = (uint8_t)v;
    }
  }
  t->data = buf;
  t->bytes = count * es;
  return buf;
}

static void run_model(const gs_model_t *m) {
  gs_session_options_t opts = {.max_plan_bytes = 16u << 20,
                               .max_cached_plans = 2};
  gs_session_t *s = NULL;
  gs_error_t err;
  size_t n = gs_model_input_count(m);
  gs_tensor_t *in = calloc(n + 1, sizeof *in);
  void **bufs = calloc(n + 1, sizeof *bufs);
  bool ok = in && bufs && gs_session_create(&s, m, &opts, &err) == GS_OK;
  for (size_t i = 0; ok && i < n; i++)
    ok = (bufs[i] = fill_input(gs_model_input(m, i), &in[i])) != NULL;
  for (int round = 0; ok && round < 2; round++) {
    int rc = gs_session_run(s, in, n, &err);
    if (rc != GS_OK && err.msg[0] == '\0') {
      fprintf(stderr, "run failed (%s) with no message\n", gs_err_name(rc));
      abort();
    }
    for (size_t o = 0; rc == GS_OK && o < gs_model_output_count(m); o++) {
      const gs_tensor_t *t = gs_session_output(s, o);
      if (!t || (t->bytes && !t->data))
        abort();
    }
  }
  for (size_t i = 0; bufs && i < n; i++)
    free(bufs[i]);
  free(bufs);
  free(in);
  gs_session_destroy(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool once;
  if (!once) {
    gs_engine_set_threads(1, NULL);
    once = true;
  }
  gs_model_limits_t lim = {.max_file_bytes = 1u << 20,
                           .max_nodes = 64,
                           .max_values = 512,
                           .max_tensor_bytes = 1u << 20};
  gs_model_t *m = NULL;
  gs_error_t err;
  int rc = gs_model_load_buffer(&m, data, size, &lim, &err);
  if (rc != GS_OK) {
    if (err.msg[0] == '\0' || m) {
      fprintf(stderr, "load failed (%s) with no message\n", gs_err_name(rc));
      abort();
    }
    return 0;
  }
  run_model(m);
  gs_model_destroy(m);
  return 0;
}
