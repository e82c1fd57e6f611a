/* Internals of the inference worker, split by layer so that each can be
 * tested without sockets: the HTTP/1.1 request reader (bytes in, requests
 * out), the infer codec (KServe v2 JSON and binary tensors), the model
 * repository and the router that turns one request into one response. */
#ifndef GPUSLICE_WORKER_INT_H
#define GPUSLICE_WORKER_INT_H

#include <http_parser.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gpuslice/engine.h"
#include "gpuslice/worker.h"

/* ---- HTTP request reader (http.c) ---------------------------------------- */

typedef struct gs__http_request_s {
  enum http_method method;
  char *url; /* NUL-terminated, owned */
  size_t url_len;
  char *body; /* owned; body_len bytes plus a NUL */
  size_t body_len, body_cap;
  long long infer_header_len; /* Inference-Header-Content-Length; -1 absent */
  bool keep_alive;
} gs__http_request_t;

typedef struct gs__http_reader_s {
  http_parser parser;
  size_t max_body;
  size_t header_bytes;
  gs__http_request_t req;
  char field[40]; /* the header name being read, lower case, truncated */
  size_t field_len;
  char value[24]; /* the value of a header we read, truncated */
  size_t value_len;
  bool value_wanted, value_too_long;
  int header_kind;      /* which header field/value is being read */
  bool in_value;        /* last callback was a header value */
  bool expect_continue; /* the client waits for "100 Continue" */
  bool complete;        /* req holds a whole request; call _next */
  int error_status;     /* 400, 413, 414 or 431 once the stream is unusable */
  const char *error_msg;
} gs__http_reader_t;

void gs__http_reader_init(gs__http_reader_t *r, size_t max_body);
void gs__http_reader_release(gs__http_reader_t *r);
/* Feeds bytes (len 0 = the peer closed). Returns how many were consumed:
 * it stops after a complete request (r->complete) or an error
 * (r->error_status set; the connection must be answered and closed). */
size_t gs__http_reader_feed(gs__http_reader_t *r, const char *data, size_t len);
/* Frees the request read and gets ready for the next one. */
void gs__http_reader_next(gs__http_reader_t *r);

/* A response: status, body, and for binary tensor data the JSON header's
 * length (-1 when the body is all JSON or empty). */
typedef struct gs__http_response_s {
  int status;
  char *body; /* owned (malloc) */
  size_t body_len;
  long long infer_header_len;
  const char *content_type;
} gs__http_response_t;

void gs__http_response_release(gs__http_response_t *resp);
/* {"error": msg} with the status. */
void gs__http_response_error(gs__http_response_t *resp, int status,
                             const char *msg);
/* Takes json (decref'd). */
void gs__http_response_json(gs__http_response_t *resp, int status,
                            json_t *json);
/* The status line and headers, NUL-terminated in buf. */
int gs__http_response_head(const gs__http_response_t *resp, bool keep_alive,
                           char *buf, size_t size);
const char *gs__http_reason(int status);

/* ---- infer codec (infer.c) ------------------------------------------------
 */

/* What a model takes and gives, for the codec. */
typedef struct gs__model_io_s {
  const char *model_name;
  const char *version;
  size_t n_inputs, n_outputs;
  const gs_tensor_info_t *inputs;  /* n_inputs */
  const gs_tensor_info_t *outputs; /* n_outputs */
} gs__model_io_t;

/* A decoded infer request; tensors point into the request body (binary)
 * or into buffers the request owns (JSON). */
typedef struct gs__infer_request_s {
  char *id; /* NULL when absent */
  size_t n_inputs;
  gs_tensor_t inputs[16];
  void *owned[16];
  bool want_output[16];   /* by model output index */
  bool binary_output[16]; /* by model output index */
} gs__infer_request_t;

#define GS__INFER_MAX_TENSORS 16

/* Decodes body (header_len as Inference-Header-Content-Length, -1 when
 * absent). On failure returns the HTTP status (400) and sets err. */
int gs__infer_decode(gs__infer_request_t *req, const gs__model_io_t *io,
                     const char *body, size_t body_len, long long header_len,
                     gs_error_t *err);
void gs__infer_request_release(gs__infer_request_t *req);
/* Encodes outputs (model order, n_outputs of them) for req. */
int gs__infer_encode(gs__http_response_t *resp, const gs__infer_request_t *req,
                     const gs__model_io_t *io, const gs_tensor_t *outputs,
                     gs_error_t *err);

/* ---- model repository (repo.c) --------------------------------------------
 */

typedef struct gs__stat_s {
  uint64_t count, ns;
} gs__stat_t;

typedef struct gs__model_stats_s {
  gs__stat_t success, fail, queue, compute_input, compute_infer, compute_output;
  uint64_t inference_count, execution_count, last_inference_ms;
} gs__model_stats_t;

/* One load of a model: shared by the requests that use it, freed with the
 * last of them (refs changes on the loop thread only). */
typedef struct gs__model_slot_s {
  gs_model_t *model;
  char name[128], version[24]; /* copies: the entry may reload meanwhile */
  unsigned max_batch_size;
  gs__model_io_t io;
  unsigned refs;
  pthread_mutex_t lock; /* guards idle */
  gs_session_t *idle[64];
  unsigned n_idle;
} gs__model_slot_t;

typedef enum {
  GS__MODEL_UNAVAILABLE = 0,
  GS__MODEL_READY,
  GS__MODEL_UNLOADED
} gs__model_state_t;

typedef struct gs__model_entry_s {
  char name[128];
  char version[24];
  gs__model_state_t state;
  char reason[512];
  unsigned max_batch_size;
  gs__model_slot_t *slot; /* NULL unless READY */
  gs__model_stats_t stats;
} gs__model_entry_t;

#define GS__REPO_MAX_MODELS 64

typedef struct gs__repo_s {
  char dir[4096];
  unsigned n;
  gs__model_entry_t models[GS__REPO_MAX_MODELS];
} gs__repo_t;

/* Finds every model directory under dir and loads it; a model that fails
 * is kept, UNAVAILABLE, with its reason. Fails only if dir is unreadable. */
int gs__repo_open(gs__repo_t *repo, const char *dir, gs_error_t *err);
void gs__repo_close(gs__repo_t *repo);
gs__model_entry_t *gs__repo_find(gs__repo_t *repo, const char *name);
/* (Re)loads name from disk, adding it if new. */
int gs__repo_load(gs__repo_t *repo, const char *name, gs_error_t *err);
void gs__repo_unload(gs__repo_t *repo, gs__model_entry_t *m);
void gs__slot_unref(gs__model_slot_t *slot);
/* A session of slot for this thread's use, returned with _put. */
gs_session_t *gs__slot_get(gs__model_slot_t *slot, gs_error_t *err);
void gs__slot_put(gs__model_slot_t *slot, gs_session_t *s);

json_t *gs__model_metadata_json(const gs__model_entry_t *m);
json_t *gs__model_config_json(const gs__model_entry_t *m);
json_t *gs__model_stats_json(const gs__model_entry_t *m);

/* ---- router (router.c) ----------------------------------------------------
 */

/* An infer the router hands to a thread: the request moves into it. */
typedef struct gs__infer_job_s {
  gs__model_entry_t *entry;
  gs__model_slot_t *slot; /* a reference */
  gs__http_request_t req;
  uint64_t t_received, t_started, t_input_done, t_infer_done, t_done;
  gs__http_response_t resp;
  uint64_t batch; /* requests in the batch: dim 0 when max_batch_size > 0 */
  bool ok;
} gs__infer_job_t;

/* Answers req in resp and returns 0, or, for an infer on a ready model,
 * fills job (taking req's buffers) and returns 1: run gs__infer_job_run off
 * the loop, then gs__infer_job_finish on it. */
int gs__route(gs__repo_t *repo, gs__http_request_t *req,
              gs__http_response_t *resp, gs__infer_job_t *job);
void gs__infer_job_run(gs__infer_job_t *job);
/* Records stats, drops the slot reference; resp stays for the caller. */
void gs__infer_job_finish(gs__infer_job_t *job);
uint64_t gs__now_ns(void);
/* Prometheus text of every model's counters. */
char *gs__metrics_text(const gs__repo_t *repo, size_t *len);

#endif
