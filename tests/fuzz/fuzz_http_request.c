/* libFuzzer harness for the worker's HTTP request reader and router, and
 * for the infer decoder: the input is fed in two pieces to the reader, each
 * complete request is routed against an empty repository, and the whole
 * input is also decoded as an infer body for Triton's `simple` model (JSON,
 * binary with its first byte as the JSON header length, and raw), and for
 * a BYTES twin of it, whose decoded strings must hold exactly their
 * elements and encode back as JSON or an error, never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/worker_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const gs_tensor_info_t in[] = {{"INPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
                                      {"INPUT1", GS_DTYPE_INT32, 2, {-1, 16}}};
static const gs_tensor_info_t out[] = {
    {"OUTPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
    {"OUTPUT1", GS_DTYPE_INT32, 2, {-1, 16}}};
static const gs__model_io_t simple = {"simple", "1", 2, 2, in, out, NULL, 0};
static const gs__model_io_t one = {"one", "1", 1, 1, in, out, NULL, 0};
static const gs_tensor_info_t str_in[] = {
    {"INPUT0", GS_DTYPE_BYTES, 2, {-1, 16}},
    {"INPUT1", GS_DTYPE_BYTES, 2, {-1, 16}}};
static const gs_tensor_info_t str_out[] = {
    {"OUTPUT0", GS_DTYPE_BYTES, 2, {-1, 16}},
    {"OUTPUT1", GS_DTYPE_BYTES, 2, {-1, 16}}};
static const gs__model_io_t strings = {"simple_string", "1",     2,    2,
                                       str_in,          str_out, NULL, 0};

/* BYTES inputs decoded: each exactly its shape's elements; the inputs
 * encoded back as JSON outputs (a string that is not UTF-8: an error). */
static void decode_strings(const char *data, size_t size, long long hlen) {
  gs__infer_request_t req;
  gs_error_t err = {0};
  if (gs__infer_decode(&req, &strings, data, size, hlen, &err) == 0) {
    for (size_t i = 0; i < req.n_inputs; i++) {
      size_t count = 1;
      for (unsigned d = 0; d < req.inputs[i].rank; d++)
        count *= (size_t)req.inputs[i].shape[d];
      if (gs__bytes_check(req.inputs[i].data, req.inputs[i].bytes, count,
                          "input", "x", &err) != GS_OK)
        abort();
    }
    gs__http_response_t resp = {.infer_header_len = -1};
    gs_tensor_t outs[2] = {req.inputs[0], req.inputs[1]};
    int rc = gs__infer_encode(&resp, &req, &strings, outs, &err);
    if (rc != GS_OK && rc != GS_EINVAL)
      abort();
    gs__http_response_release(&resp);
  } else if (err.msg[0] == '\0') {
    abort();
  }
  gs__infer_request_release(&req);
}

static void read_requests(const char *data, size_t size) {
  static gs__repo_t repo;
  gs__http_reader_t r;
  gs__http_reader_init(&r, 1u << 20);
  size_t at = 0, split = size / 2;
  for (int rounds = 0; rounds < 64 && !r.error_status; rounds++) {
    size_t end = at < split ? split : size;
    size_t n = gs__http_reader_feed(&r, data + at, end - at);
    at += n;
    if (r.complete) {
      gs__http_response_t resp = {.infer_header_len = -1};
      gs__infer_job_t job;
      if (gs__route(&repo, &r.req, &resp, &job) == 1)
        abort(); /* no model is loaded: nothing may reach inference */
      if (resp.status < 200 || resp.status > 599)
        abort();
      gs__http_response_release(&resp);
      gs__http_reader_next(&r);
    } else if (at == size) {
      gs__http_reader_feed(&r, NULL, 0);
      break;
    }
  }
  gs__http_reader_release(&r);
}

static void decode(const gs__model_io_t *io, const char *data, size_t size,
                   long long hlen) {
  gs__infer_request_t req;
  gs_error_t err = {0};
  int status = gs__infer_decode(&req, io, data, size, hlen, &err);
  if (status != 0 && err.msg[0] == '\0')
    abort();
  for (size_t i = 0; status == 0 && i < req.n_inputs; i++) {
    size_t count = 1;
    for (unsigned d = 0; d < req.inputs[i].rank; d++)
      count *= (size_t)req.inputs[i].shape[d];
    if (count * 4 != req.inputs[i].bytes)
      abort(); /* the data must be exactly what the shape says */
  }
  gs__infer_request_release(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  read_requests((const char *)data, size);
  decode(&simple, (const char *)data, size, -1);
  if (size > 1)
    decode(&simple, (const char *)data + 1, size - 1,
           (long long)(data[0] % size));
  decode(&one, (const char *)data, size, 0);
  decode_strings((const char *)data, size, -1);
  if (size > 1)
    decode_strings((const char *)data + 1, size - 1,
                   (long long)(data[0] % size));
  return 0;
}
