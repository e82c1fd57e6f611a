/* Internals of the worker's gRPC side (KServe v2 GRPCInferenceService): the
 * calls (grpc_call.c: the metadata methods become one request to the HTTP
 * router and its JSON answer the method's message), ModelInfer's codec
 * (grpc_infer.c: the message decodes into the infer request HTTP's decode
 * into, and the outputs encode straight into a ModelInferResponse), and the
 * server on the worker's libuv loop (grpc.c, on net/h2's pump). */
#ifndef GPUSLICE_GRPC_INT_H
#define GPUSLICE_GRPC_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/grpc.h"
#include "worker/worker_int.h"

typedef enum {
  GS__GRPC_SERVER_LIVE = 0,
  GS__GRPC_SERVER_READY,
  GS__GRPC_MODEL_READY,
  GS__GRPC_SERVER_METADATA,
  GS__GRPC_MODEL_METADATA,
  GS__GRPC_MODEL_INFER,
  GS__GRPC_MODEL_CONFIG,
  GS__GRPC_MODEL_STATISTICS,
  GS__GRPC_REPOSITORY_INDEX,
  GS__GRPC_REPOSITORY_MODEL_LOAD,
  GS__GRPC_REPOSITORY_MODEL_UNLOAD,
  /* the shared-memory extensions (shm_routes.c) */
  GS__GRPC_SYSTEM_SHM_STATUS,
  GS__GRPC_SYSTEM_SHM_REGISTER,
  GS__GRPC_SYSTEM_SHM_UNREGISTER,
  GS__GRPC_CUDA_SHM_STATUS,
  GS__GRPC_CUDA_SHM_REGISTER,
  GS__GRPC_CUDA_SHM_UNREGISTER,
  GS__GRPC_MODEL_STREAM_INFER, /* grpc.c's streams: each message an infer */
  GS__GRPC_UNKNOWN_METHOD
} gs__grpc_method_t;

/* The method a :path names ("/inference.GRPCInferenceService/ModelInfer"). */
gs__grpc_method_t gs__grpc_method(const char *path);

/* One call's answer: a framed message (status OK) or a status and message
 * for the trailers. */
typedef struct gs__grpc_reply_s {
  int status;
  char message[1024];
  uint8_t *body; /* owned (malloc): prefix + message; NULL unless OK */
  size_t body_len;
} gs__grpc_reply_t;

void gs__grpc_reply_release(gs__grpc_reply_t *reply);
/* The reply as a status and message (no body). */
void gs__grpc_reply_error(gs__grpc_reply_t *reply, int status, const char *msg);
struct ProtobufCMessage; /* protobuf-c.h */
/* m packed behind the 5-byte prefix as the reply. */
void gs__grpc_reply_message(gs__grpc_reply_t *reply,
                            const struct ProtobufCMessage *m);
/* The router's error response ({"error": msg}) as the reply. */
void gs__grpc_reply_http_error(gs__grpc_reply_t *reply,
                               const gs__http_response_t *resp);
/* The HTTP config document root as a ModelConfigResponse reply, every
 * field the proto also has (grpc_config.c); root stays the caller's. */
void gs__grpc_model_config(json_t *root, gs__grpc_reply_t *reply);
/* Whether s is a name the repository can hold and a path may carry
 * (letters, digits, '_', '.', '-'; not starting with '.'); grpc_infer.c. */
bool gs__grpc_name_safe(const char *s, bool may_be_empty);
/* Whether name and version are ones the repository can hold; false with
 * reply NOT_FOUND ("Request for unknown model") when not (grpc_infer.c). */
bool gs__grpc_model_name_ok(const char *name, const char *version,
                            gs__grpc_reply_t *reply);
/* /v2/models/NAME[/versions/VERSION]SUFFIX into url, or false as
 * gs__grpc_model_name_ok (grpc_infer.c). */
bool gs__grpc_model_url(char *url, size_t size, const char *name,
                        const char *version, const char *suffix,
                        gs__grpc_reply_t *reply);

/* ---- ModelInfer (grpc_infer.c) --------------------------------------------
 */

struct Inference__ModelInferRequest;

/* A ModelInferRequest read on the loop: the message unpacked, each input's
 * bytes (raw_input_contents, or typed contents converted into owned), and
 * the router's URL for the model it names. */
typedef struct gs__grpc_infer_s {
  struct Inference__ModelInferRequest *m;
  const uint8_t *data[GS__INFER_MAX_TENSORS];
  size_t bytes[GS__INFER_MAX_TENSORS];
  uint8_t *owned[GS__INFER_MAX_TENSORS];
} gs__grpc_infer_t;

/* Unpacks and checks what needs no model (one way of sending each input,
 * bytes matching shape and datatype, a name the repository can hold).
 * Returns GS__GRPC_OK, or a gRPC status with err set; release gi either
 * way. */
int gs__grpc_infer_read(gs__grpc_infer_t *gi, const uint8_t *msg, size_t len,
                        gs_error_t *err);
void gs__grpc_infer_release(gs__grpc_infer_t *gi);
/* Releases and frees a gs__grpc_infer_t of gs__grpc_call's (NULL: nothing). */
void gs__grpc_infer_destroy(gs__grpc_infer_t *gi);
/* gi's tensors as the infer request for io, checked as HTTP's are (the
 * tensors point into gi, which must outlive req). 0, or 400/500 with err. */
int gs__grpc_infer_decode(gs__infer_request_t *req, const gs__model_io_t *io,
                          const gs__grpc_infer_t *gi, gs_error_t *err);
/* The outputs req asks for as a framed ModelInferResponse in resp (status
 * 200, content type application/grpc). */
int gs__grpc_infer_encode(gs__http_response_t *resp,
                          const gs__infer_request_t *req,
                          const gs__model_io_t *io, const gs_tensor_t *outputs,
                          gs_error_t *err);
/* A finished infer job's answer as the reply: the message encoded above, or
 * the router's error ({"error": msg}) as a status. Takes resp's body. */
void gs__grpc_infer_reply(gs__http_response_t *resp, gs__grpc_reply_t *reply);

/* ModelInfer's message read, the model it names found ready: returns 1
 * with job filled as gs__route fills an HTTP infer's and job->grpc the
 * message read (free it with gs__grpc_infer_destroy once the job is done),
 * or 0 with reply set (the errors HTTP's infer gives, as gRPC statuses). */
int gs__grpc_infer_job(gs__repo_t *repo, const uint8_t *msg, size_t len,
                       gs__grpc_reply_t *reply, gs__infer_job_t *job);

/* ---- the calls on the server (grpc_infer.c, grpc.c) ----------------------
 */

#define GS__GRPC_INFER_PATH "/inference.GRPCInferenceService/ModelInfer"

struct gs_grpc_call_s;
struct gs_grpc_srv_s;

struct gs__grpc_server_s {
  uv_loop_t *loop;
  gs__repo_t *repo;
  struct gs_grpc_srv_s *srv;
  unsigned port; /* kept once the server is closed */
};

/* A call's state (the layer's call_state). */
typedef struct gs__grpc_wcall_s {
  gs__grpc_reply_t reply;
  gs__infer_job_t job;
  unsigned pending; /* ModelStreamInfer: its infers running */
} gs__grpc_wcall_t;

/* The layer's handler of ModelInfer: the job started (gs__grpc_infer_job,
 * gs__infer_submit) and answered when done, or the error answered now. */
void gs__grpc_on_infer(struct gs_grpc_call_s *call, const uint8_t *msg,
                       size_t len);
/* Submits the job in w (filled by gs__grpc_infer_job); false when it
 * cannot be queued (the error answered). */
bool gs__grpc_infer_submit(struct gs_grpc_call_s *call, gs__grpc_wcall_t *w);
/* A unary reply: its message, or its status and message. */
void gs__grpc_respond(struct gs_grpc_call_s *call, gs__grpc_reply_t *reply);

/* ---- calls (grpc_call.c) --------------------------------------------------
 */

/* Answers one call (msg is the message, unframed): returns 0 with reply
 * filled, or 1 for an infer on a ready model with job filled as gs__route
 * fills it and job->grpc the message read (free it with
 * gs__grpc_infer_destroy once the job is done): run it as HTTP's jobs run,
 * then gs__grpc_infer_reply on job->resp. */
int gs__grpc_call(gs__repo_t *repo, gs__grpc_method_t method,
                  const uint8_t *msg, size_t len, gs__grpc_reply_t *reply,
                  gs__infer_job_t *job);

/* ---- ModelStreamInfer's messages (grpc_stream.c) ---------------------------
 */

/* (gs__grpc_stream_next, which takes a stream's messages, is net/grpc.h's) */
/* Appends a framed ModelStreamInferResponse holding field 1
 * (error_message) or 2 (infer_response: an encoded ModelInferResponse) of
 * len bytes. GS_OK, GS_ELIMIT (over 64 MiB) or out's error. */
int gs__grpc_stream_response(gs_buf_t *out, unsigned field, const void *data,
                             size_t len);

/* ---- the server (grpc.c) --------------------------------------------------
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
/* Stops taking connections and sends each a GOAWAY: calls begun finish.
 * gs__grpc_conns: the connections still open (0 once the drain is over). */
void gs__grpc_drain(gs__grpc_server_t *g);
size_t gs__grpc_conns(const gs__grpc_server_t *g);
void gs__grpc_destroy(gs__grpc_server_t *g);

#endif
