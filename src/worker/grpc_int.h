/* Internals of the worker's gRPC side (KServe v2 GRPCInferenceService):
 * the message framing and the calls (grpc_call.c: each method becomes one
 * request to the HTTP router and its answer becomes the method's message,
 * so both protocols share one router and one infer path), and the HTTP/2
 * transport on the worker's libuv loop (grpc.c). */
#ifndef GPUSLICE_GRPC_INT_H
#define GPUSLICE_GRPC_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "worker/worker_int.h"

/* gRPC status codes the worker answers with. */
enum {
  GS__GRPC_OK = 0,
  GS__GRPC_INVALID_ARGUMENT = 3,
  GS__GRPC_NOT_FOUND = 5,
  GS__GRPC_RESOURCE_EXHAUSTED = 8,
  GS__GRPC_UNIMPLEMENTED = 12,
  GS__GRPC_INTERNAL = 13,
  GS__GRPC_UNAVAILABLE = 14
};

#define GS__GRPC_MAX_MESSAGE (64u << 20)
#define GS__GRPC_MAX_STREAMS 128u

typedef enum {
  GS__GRPC_SERVER_LIVE = 0,
  GS__GRPC_SERVER_READY,
  GS__GRPC_MODEL_READY,
  GS__GRPC_SERVER_METADATA,
  GS__GRPC_MODEL_METADATA,
  GS__GRPC_MODEL_INFER,
  GS__GRPC_MODEL_CONFIG,
  GS__GRPC_MODEL_STATISTICS,
  GS__GRPC_UNKNOWN_METHOD
} gs__grpc_method_t;

/* The method a :path names ("/inference.GRPCInferenceService/ModelInfer"). */
gs__grpc_method_t gs__grpc_method(const char *path);

/* Reads the one length-prefixed message (flag byte, 4-byte big-endian
 * length) that must fill buf exactly. Returns GS__GRPC_OK with *msg and
 * *msg_len set, or a gRPC status with err set: INVALID_ARGUMENT for a
 * truncated or trailing frame, UNIMPLEMENTED for a compressed one,
 * RESOURCE_EXHAUSTED above max. */
int gs__grpc_frame_read(const uint8_t *buf, size_t len, size_t max,
                        const uint8_t **msg, size_t *msg_len, gs_error_t *err);

/* One call's answer: a framed message (status OK) or a status and message
 * for the trailers. */
typedef struct gs__grpc_reply_s {
  int status;
  char message[1024];
  uint8_t *body; /* owned (malloc): prefix + message; NULL unless OK */
  size_t body_len;
} gs__grpc_reply_t;

void gs__grpc_reply_release(gs__grpc_reply_t *reply);
/* The gRPC status for an HTTP status of the router. */
int gs__grpc_status_of_http(int http_status);
/* grpc-message's percent-encoding of text into out (NUL-terminated,
 * truncated to size). */
void gs__grpc_percent_encode(const char *text, char *out, size_t size);

/* ModelInfer's message as the router's HTTP request: the binary tensor
 * extension, raw_input_contents or typed contents as the binary data, every
 * output asked for as binary. Returns GS__GRPC_OK with req filled (the
 * caller releases url and body) or a gRPC status with err set. */
int gs__grpc_infer_request(const uint8_t *msg, size_t len,
                           gs__http_request_t *req, gs_error_t *err);
/* The router's answer to an infer as the ModelInferResponse, into reply. */
void gs__grpc_infer_reply(const gs__http_response_t *resp,
                          gs__grpc_reply_t *reply);

/* Answers one call (msg is the message, unframed): returns 0 with reply
 * filled, or 1 for an infer on a ready model with job filled as gs__route
 * fills it: run it as HTTP's jobs run, then gs__grpc_infer_reply on
 * job->resp. */
int gs__grpc_call(gs__repo_t *repo, gs__grpc_method_t method,
                  const uint8_t *msg, size_t len, gs__grpc_reply_t *reply,
                  gs__infer_job_t *job);

/* ---- HTTP/2 transport (grpc.c) -------------------------------------------
 */

typedef struct gs__grpc_server_s gs__grpc_server_t;

/* Listens on host:port (0: any free port) on loop; *out is destroyed with
 * gs__grpc_destroy. */
int gs__grpc_listen(gs__grpc_server_t **out, uv_loop_t *loop, gs__repo_t *repo,
                    const char *host, unsigned port, gs_error_t *err);
unsigned gs__grpc_port(const gs__grpc_server_t *g);
/* Closes the listener and every connection; the loop must then run until
 * in-flight infers finish, before gs__grpc_destroy. */
void gs__grpc_close(gs__grpc_server_t *g);
void gs__grpc_destroy(gs__grpc_server_t *g);

#endif
