/* libFuzzer harness for the worker's gRPC message decoding: the input is
 * read as a framed message, then given unframed to every method against an
 * empty repository (no call may reach inference), and read as a
 * ModelInferRequest, then decoded into the infer request for a two-input
 * model. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const gs_tensor_info_t in[] = {{"INPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
                                      {"INPUT1", GS_DTYPE_INT32, 2, {-1, 16}}};
static const gs_tensor_info_t out[] = {
    {"OUTPUT0", GS_DTYPE_INT32, 2, {-1, 16}}};
static const gs__model_io_t simple = {"simple", "1", 2, 1, in, out, NULL, 0};

static void check_reply(const gs__grpc_reply_t *reply) {
  const uint8_t *msg;
  size_t len;
  gs_error_t err;
  if (reply->status == GS__GRPC_OK
          ? gs__grpc_frame_read(reply->body, reply->body_len,
                                GS__GRPC_MAX_MESSAGE, &msg, &len, &err) != 0
          : reply->body != NULL || reply->message[0] == '\0')
    abort(); /* a message that unframes, or an error that says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static gs__repo_t repo;
  const uint8_t *msg = data;
  size_t len = size;
  gs_error_t err = {0};
  if (gs__grpc_frame_read(data, size, 1u << 20, &msg, &len, &err) != 0) {
    msg = data;
    len = size;
  }
  for (int m = 0; m <= GS__GRPC_UNKNOWN_METHOD; m++) {
    gs__grpc_reply_t reply;
    gs__infer_job_t job;
    if (gs__grpc_call(&repo, (gs__grpc_method_t)m, msg, len, &reply, &job))
      abort(); /* no model is loaded: nothing may reach inference */
    check_reply(&reply);
    gs__grpc_reply_release(&reply);
  }
  gs__grpc_infer_t gi;
  if (gs__grpc_infer_read(&gi, msg, len, &err) == 0) {
    gs__infer_request_t ir;
    if (!gi.m || !gs__grpc_name_safe(gi.m->model_name, false))
      abort(); /* read succeeds only for a name the repository can hold */
    gs__grpc_infer_decode(&ir, &simple, &gi, &err);
    gs__infer_request_release(&ir); /* what it holds, even on failure */
  } else if (err.msg[0] == '\0') {
    abort();
  }
  gs__grpc_infer_release(&gi);
  return 0;
}
