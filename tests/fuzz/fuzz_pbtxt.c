/* libFuzzer harness for config.pbtxt (libprotobuf's TextFormat behind the
 * C shim, then the protobuf-c reader): any bytes either fail with a message
 * or give a config within the worker's limits, which then checks against
 * Triton's `simple` model without crashing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_limits(const gs__model_config_t *cfg) {
  const gs__batching_t *b = &cfg->batching;
  bool ok = cfg->max_batch_size <= 1u << 20 &&
            b->n_preferred <= GS__MAX_PREFERRED_BATCH &&
            cfg->n_inputs <= GS__INFER_MAX_TENSORS &&
            cfg->n_outputs <= GS__INFER_MAX_TENSORS &&
            cfg->n_versions <= GS__CONFIG_MAX_VERSIONS &&
            cfg->placement.count <= 64 && (!b->enabled || cfg->max_batch_size);
  /* a queue policy is dynamic_batching's */
  ok = ok && (b->enabled ||
              (!b->policy.max_queue_size && !b->policy.default_timeout_us &&
               !b->policy.allow_timeout_override));
  for (unsigned i = 0; ok && i < b->n_preferred; i++)
    ok = b->preferred[i] >= 1 && b->preferred[i] <= cfg->max_batch_size;
  for (size_t i = 0; ok && i < cfg->n_inputs; i++)
    ok = cfg->inputs[i].rank <= GS_TENSOR_MAX_RANK && cfg->inputs[i].name[0];
  if (!ok) {
    fprintf(stderr, "a config outside the worker's limits was accepted\n");
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gs__model_config_t cfg;
  gs_error_t err;
  if (gs__model_config_parse_pbtxt(&cfg, "simple", "fuzz.pbtxt",
                                   (const char *)data, size, &err) != GS_OK) {
    if (!err.msg[0])
      abort(); /* every failure says why */
    return 0;
  }
  check_limits(&cfg);
  gs_tensor_info_t in[2] = {{"INPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
                            {"INPUT1", GS_DTYPE_INT32, 2, {-1, 16}}};
  gs_tensor_info_t out[2] = {{"OUTPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
                             {"OUTPUT1", GS_DTYPE_INT32, -1, {0}}};
  if (gs__model_config_apply(&cfg, "fuzz.pbtxt", in, 2, out, 2, &err) ==
          GS_OK &&
      (in[0].rank > GS_TENSOR_MAX_RANK || out[1].rank > GS_TENSOR_MAX_RANK))
    abort();
  long long versions[] = {1, 2, 3}, v[3];
  size_t nv = 0;
  if (gs__model_config_pick_versions(&cfg, versions, 3, v, 3, &nv, "fuzz.pbtxt",
                                     &err) == GS_OK &&
      (nv < 1 || nv > 3 || v[0] < 1 || v[0] > 3))
    abort();
  return 0;
}
