/* libFuzzer harness for ModelStreamInfer's message path without sockets:
 * the input is a stream's bytes, taken message by message as grpc.c takes
 * them (gs__grpc_stream_next: whole messages, or more needed, or a framing
 * error that ends the stream); each message goes to ModelInfer against an
 * empty repository (nothing may reach inference: an error reply that says
 * why), its sequence parameters are read as the sequence batcher reads
 * them, and the error is wrapped as a ModelStreamInferResponse that must
 * read back as the same text. The input is also read as an HTTP JSON
 * body's sequence parameters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/grpc_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reply's error as a stream response, which must read back. */
static void check_response(const char *text) {
  gs_buf_t out;
  const uint8_t *msg;
  size_t len, used;
  gs_error_t err;
  gs_buf_init(&out, GS_LIMIT_GRPC_MESSAGE);
  if (gs__grpc_stream_response(&out, 1, text, strlen(text)) != GS_OK ||
      gs__grpc_stream_next((const uint8_t *)out.data, out.len,
                           GS__GRPC_MAX_MESSAGE, &msg, &len, &used,
                           &err) != GS__GRPC_OK ||
      used != out.len)
    abort();
  /* ModelStreamInferResponse field 1 (error_message): tag, varint length,
   * the text (the proto here has no ModelStreamInferResponse to unpack). */
  size_t n = 0, at = 1, shift = 0;
  if (len < 2 || msg[0] != 0x0a)
    abort();
  while (at < len && shift < 64) {
    n |= (size_t)(msg[at] & 0x7f) << shift;
    shift += 7;
    if (!(msg[at++] & 0x80))
      break;
  }
  if (n != strlen(text) || len - at != n || memcmp(msg + at, text, n) != 0)
    abort();
  gs_buf_free(&out);
}

static void one_message(gs__repo_t *repo, const uint8_t *msg, size_t len) {
  gs__grpc_reply_t reply;
  gs__infer_job_t job;
  if (gs__grpc_call(repo, GS__GRPC_MODEL_INFER, msg, len, &reply, &job))
    abort(); /* no model is loaded: nothing may reach inference */
  if (reply.status == GS__GRPC_OK || reply.message[0] == '\0')
    abort();
  check_response(reply.message);
  gs__grpc_reply_release(&reply);
  gs__grpc_infer_t gi;
  gs_error_t err = {0};
  if (gs__grpc_infer_read(&gi, msg, len, &err) == GS__GRPC_OK) {
    gs__infer_job_t j = {.grpc = &gi};
    gs__seq_params_t p;
    if (gs__seq_params_read(&p, &j, &err) != GS_OK ||
        (p.id.is_string && strlen(p.id.s) >= sizeof p.id.s))
      abort();
  }
  gs__grpc_infer_release(&gi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static gs__repo_t repo;
  size_t at = 0;
  /* Messages of at most 1 MiB here, so that a long prefix ends the run. */
  while (at < size) {
    const uint8_t *msg;
    size_t len, used;
    gs_error_t err = {0};
    int status = gs__grpc_stream_next(data + at, size - at, 1u << 20, &msg,
                                      &len, &used, &err);
    if (status == GS__GRPC_STREAM_MORE)
      break;
    if (status != GS__GRPC_OK) {
      if (err.msg[0] == '\0')
        abort(); /* an error that ends a stream says why */
      break;
    }
    if (used != GS__GRPC_PREFIX + len || used > size - at)
      abort();
    one_message(&repo, msg, len);
    at += used;
  }
  char *body = malloc(size + 1);
  if (!body)
    return 0;
  memcpy(body, data, size);
  body[size] = '\0';
  gs__infer_job_t job = {
      .req = {.body = body, .body_len = size, .infer_header_len = -1}};
  gs__seq_params_t p;
  gs_error_t err = {0};
  gs__seq_params_read(&p, &job, &err);
  free(body);
  return 0;
}
