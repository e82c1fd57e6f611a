/* libFuzzer harness for the shared-memory extensions' parsers: the input's
 * first byte picks system or CUDA (bit 0) and input or output (bit 1), the
 * rest is read as a register request body, as base64, and as a tensor's
 * shared_memory_* parameters; 24 of its bytes also try the region bounds.
 * Every answer must be an error with a message or a value that keeps the
 * parsers' promises (a terminated key, a handle of at most 64 bytes, a
 * range inside the region); no region is ever registered here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/shm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_register(gs__shm_kind_t kind, const char *body, size_t len) {
  gs__shm_register_req_t r;
  gs_error_t err = {0};
  int rc = gs__shm_parse_register(kind, body, len, &r, &err);
  if (rc != GS_OK && !err.msg[0])
    abort();
  if (rc == GS_OK && kind == GS__SHM_SYSTEM &&
      (!r.key[0] || strnlen(r.key, sizeof r.key) == sizeof r.key))
    abort();
  if (rc == GS_OK && kind == GS__SHM_CUDA && r.handle_len > sizeof r.handle)
    abort();
}

static void check_base64(const char *text, size_t len) {
  uint8_t out[96];
  size_t n = 0;
  gs_error_t err = {0};
  int rc = gs__shm_base64_decode(text, len, out, sizeof out, &n, &err);
  if (rc != GS_OK && !err.msg[0])
    abort();
  if (rc == GS_OK && (len % 4 != 0 || n > sizeof out || n > len / 4 * 3 ||
                      n + 2 < len / 4 * 3))
    abort();
}

/* The bytes as a tensor's parameters: no registry holds any region, so a
 * request that names one must fail to resolve with "not found". */
static void check_params(const char *text, size_t len, bool is_input) {
  json_t *params = json_loadb(text, len, 0, NULL);
  gs__infer_request_t req;
  memset(&req, 0, sizeof req);
  gs_error_t err = {0};
  bool used = false;
  int rc = gs__shm_ref_json(&req, is_input, 3, "t", params, &used, &err);
  if (rc != GS_OK && !err.msg[0])
    abort();
  if (rc == GS_OK && used != (req.shm != NULL))
    abort();
  if (rc == GS_OK && used &&
      (gs__shm_resolve(&req, NULL, -1, NULL, &err) != GS_ENOTFOUND ||
       gs__shm_output_wanted(&req, 3) == is_input))
    abort();
  gs__shm_request_release(&req);
  json_decref(params);
}

static void check_bounds(const uint8_t *p) {
  uint64_t v[3];
  memcpy(v, p, sizeof v);
  gs_error_t err = {0};
  int rc = gs__shm_check_bounds("r", v[0], v[1], v[2], "t", &err);
  bool inside = v[1] < v[0] && v[2] <= v[0] - v[1]; /* Triton's */
  if ((rc == GS_OK) != inside || (rc != GS_OK && !err.msg[0]))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  gs__shm_kind_t kind = data[0] & 1 ? GS__SHM_CUDA : GS__SHM_SYSTEM;
  const char *text = (const char *)data + 1;
  check_register(kind, text, size - 1);
  check_base64(text, size - 1);
  check_params(text, size - 1, data[0] & 2);
  if (size >= 25)
    check_bounds(data + 1);
  return 0;
}
