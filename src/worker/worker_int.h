/* Internals of the inference worker, split by layer so that each can be
 * tested without sockets: the infer codec (KServe v2 JSON and binary
 * tensors), the model repository and the router that turns one request
 * into one response. */
#ifndef GPUSLICE_WORKER_INT_H
#define GPUSLICE_WORKER_INT_H

#include <http_parser.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gpuslice/engine.h"
#include "gpuslice/worker.h"
#include "net/http.h"
#include "worker/pace.h"
#include "worker/sequence.h"

/* The HTTP/1.1 request reader, responses and server connections are the
 * network layer's (net/http.h). */

/* ---- infer codec (infer.c) ------------------------------------------------
 */

/* What a model takes and gives, for the codec. */
typedef struct gs__model_io_s {
  const char *model_name;
  const char *version;
  size_t n_inputs, n_outputs;
  const gs_tensor_info_t *inputs;  /* n_inputs */
  const gs_tensor_info_t *outputs; /* n_outputs */
  /* config.pbtxt's reshapes (reshape.h), by tensor name; NULL: none */
  const struct gs__reshape_s *reshapes;
  size_t n_reshapes;
} gs__model_io_t;

/* Classification labels per model output (classify.c). */
typedef struct gs__labels_s gs__labels_t;

/* A decoded infer request; tensors point into the request body (binary)
 * or into buffers the request owns (JSON). */
typedef struct gs__infer_request_s {
  char *id; /* NULL when absent */
  size_t n_inputs;
  gs_tensor_t inputs[16];
  void *owned[16];
  bool want_output[16];     /* by model output index */
  bool binary_output[16];   /* by model output index */
  bool grpc;                /* came over gRPC: answered as ModelInferResponse */
  uint32_t class_count[16]; /* by model output index; 0: the tensor itself */
  /* For classification, from the model's slot (gs__infer_job_decode): its
   * labels (NULL: none) and whether dim 0 is the batch. */
  const gs__labels_t *labels;
  bool batch_first_dim;
  struct gs__shm_refs_s *shm; /* shared-memory tensors (shm_infer.c); owned */
  /* The request's "timeout" parameter, in microseconds (0: none): what a
   * queue policy with allow_timeout_override may take instead of its own. */
  uint64_t timeout_us;
  /* gs__infer_decode_unaligned: binary data that is not 16-byte aligned
   * stayed where it is; gs__infer_request_align copies it. */
  bool align_later;
} gs__infer_request_t;

#define GS__INFER_MAX_TENSORS 16

/* Tensors as a front end other than HTTP's read them (gRPC's ModelInfer),
 * before they are checked against the model: borrowed, not copied. */
typedef struct gs__infer_input_s {
  const char *name, *datatype;
  const int64_t *shape;
  size_t rank;
  const void *data;
  size_t bytes;
} gs__infer_input_t;

typedef struct gs__infer_tensors_s {
  const char *id; /* NULL when absent */
  size_t n_inputs, n_outputs;
  gs__infer_input_t inputs[GS__INFER_MAX_TENSORS];
  const char *outputs[GS__INFER_MAX_TENSORS];   /* none: every output */
  uint32_t class_counts[GS__INFER_MAX_TENSORS]; /* by outputs[i]; 0: none */
  bool grpc;
} gs__infer_tensors_t;

/* A BYTES tensor's data (count elements, each a 4-byte little-endian length
 * then that many bytes) checked to fill exactly bytes: GS_EINVAL naming the
 * tensor (what: "input", "output") and the element otherwise. */
int gs__bytes_check(const void *data, size_t bytes, size_t count,
                    const char *what, const char *name, gs_error_t *err);

/* in as the infer request for io, checked as gs__infer_decode checks a
 * binary body (every output binary); data stays in place when aligned. */
int gs__infer_decode_tensors(gs__infer_request_t *req, const gs__model_io_t *io,
                             const gs__infer_tensors_t *in, gs_error_t *err);

/* Decodes body (header_len as Inference-Header-Content-Length, -1 when
 * absent). On failure returns the HTTP status (400) and sets err. */
int gs__infer_decode(gs__infer_request_t *req, const gs__model_io_t *io,
                     const char *body, size_t body_len, long long header_len,
                     gs_error_t *err);
/* gs__infer_decode, but binary data that is not 16-byte aligned stays in
 * the body (no copy: one into a batch or a session's staging follows);
 * a reader of whole elements calls gs__infer_request_align first. */
int gs__infer_decode_unaligned(gs__infer_request_t *req,
                               const gs__model_io_t *io, const char *body,
                               size_t body_len, long long header_len,
                               gs_error_t *err);
void gs__infer_request_release(gs__infer_request_t *req);
/* Copies each input left misaligned (align_later) into an aligned buffer
 * the request owns, for a reader of whole elements (the engine's run). */
int gs__infer_request_align(gs__infer_request_t *req, gs_error_t *err);
/* Encodes outputs (model order, n_outputs of them) for req. */
int gs__infer_encode(gs__http_response_t *resp, const gs__infer_request_t *req,
                     const gs__model_io_t *io, const gs_tensor_t *outputs,
                     gs_error_t *err);

/* ---- model repository (repo.c) --------------------------------------------
 */

typedef struct gs__stat_s {
  uint64_t count, ns;
} gs__stat_t;

/* Triton's batch_stats: executions of one batch size. */
typedef struct gs__batch_stat_s {
  uint64_t batch_size;
  gs__stat_t compute_input, compute_infer, compute_output;
} gs__batch_stat_t;

typedef struct gs__model_stats_s {
  gs__stat_t success, fail, queue, compute_input, compute_infer, compute_output;
  uint64_t inference_count, execution_count, last_inference_ms;
  /* The queue policy's: requests refused for a full queue, and requests
   * whose timeout passed in the queue (answered, or moved back). */
  uint64_t queue_full, queue_timeout;
  gs__batch_stat_t *batch; /* n_batch, by batch size; owned */
  size_t n_batch;
} gs__model_stats_t;

#define GS__MAX_PREFERRED_BATCH 16

/* dynamic_batching's default_queue_policy (Triton's ModelQueuePolicy). */
typedef struct gs__queue_policy_s {
  uint32_t max_queue_size;     /* requests queued at most; 0: no bound */
  uint64_t default_timeout_us; /* time in the queue at most; 0: no limit */
  bool allow_timeout_override; /* a request's smaller "timeout" wins */
  bool delay; /* timeout_action DELAY: run after the others; else REJECT */
} gs__queue_policy_t;

/* config.json's dynamic_batching. */
typedef struct gs__batching_s {
  bool enabled;
  uint64_t max_queue_delay_us;
  unsigned n_preferred;
  unsigned preferred[GS__MAX_PREFERRED_BATCH];
  gs__queue_policy_t policy;
} gs__batching_t;

/* config.json's instance_group (Triton's): where the model's sessions run
 * (KIND_GPU: the CUDA provider, KIND_CPU, or absent / KIND_AUTO: the GPU
 * when the instance has a usable one), on which GPU, and gpuslice's own
 * "precision" ("fp16", "fp32"; default: FP16 on a GPU). */
typedef struct gs__placement_s {
  gs_provider_t provider;
  gs_precision_t precision;
  int device;
  /* instance_group count: executions of the model at once (the dynamic
   * batcher's batches in flight; sessions made at load). 1..64. */
  unsigned count;
  /* config.json's "input": [{"name", "data_type": "TYPE_FP16"}]: FP32
   * model inputs that clients send as FP16 (the engine widens them). */
  unsigned n_fp16;
  char fp16_inputs[GS__INFER_MAX_TENSORS][128];
  unsigned sm_first, sm_count; /* the worker's green-context SMs */
  gs_gpu_wait_t gpu_wait;      /* the worker's (repo_control.c) */
  /* gpuslice's "warmup": true/false; absent (-1): on for CUDA sessions. */
  int warmup;
  /* The worker's plan_before_ready (0: every size before ready) and its
   * note callback, for what a warm model plans after it is ready. */
  unsigned plan_before_ready;
  void (*note)(void *ctx, const char *line);
  void *note_ctx;
  /* The repository's wake (a device failure met by the planning thread
   * reaches the loop at once); NULL: none. */
  struct gs__loop_wake_s *wake;
} gs__placement_t;

/* How a thread that is not the loop's (a slot's planning thread) wakes the
 * loop: async is set (under lock) while the loop's handle is open, so a
 * wake after the loop closed is dropped, not sent to a closed handle. */
typedef struct gs__loop_wake_s {
  pthread_mutex_t lock;
  bool
      lock_ready; /* initialized (gs__repo_open_opts; gs__repo_close ends it) */
  uv_async_t *async;
} gs__loop_wake_t;

/* Sends w's async when it is set; any thread. */
void gs__loop_wake(gs__loop_wake_t *w);

/* The most batch sizes a model is planned for at load: powers of two below
 * max_batch_size (at most 20 of them), the preferred sizes and the max. */
#define GS__MAX_PLANNED_SIZES (20 + GS__MAX_PREFERRED_BATCH + 1)

/* One load of a model: shared by the requests that use it, freed with the
 * last of them (refs changes on the loop thread only). */
typedef struct gs__model_slot_s {
  gs_model_t *model;
  char name[128], version[24]; /* copies: the entry may reload meanwhile */
  unsigned max_batch_size;
  gs__batching_t batching;
  uint64_t memory_budget_bytes; /* engine memory per plan; 0: default */
  gs__placement_t placement;    /* asked for in config.json */
  gs_provider_t provider;       /* what the first session got (AUTO resolved) */
  gs_precision_t precision;
  gs__model_io_t io;
  gs__labels_t *labels; /* config.pbtxt's label files (owned); NULL: none */
  int input_format[GS__INFER_MAX_TENSORS]; /* per io input, Triton's enum */
  unsigned refs;
  pthread_mutex_t lock; /* guards idle */
  gs_session_t *idle[64];
  unsigned n_idle;
  /* Warm (CUDA, or "warmup": true): the n_sessions sessions made at load
   * are the only ones, each planned (on a GPU, captured) for the sizes;
   * a request that finds none idle waits on idle_cond for one, so that
   * nothing is planned, captured or made on the request path. */
  bool warm;
  pthread_cond_t idle_cond;
  /* Requests waiting on idle_cond, and how many sessions were put back
   * (both under lock): the planning after ready takes a session only
   * when no request waits, or when one ran since its own last step, so
   * that requests and planning steps alternate (gs__slot_take). */
  unsigned n_getting;
  uint64_t n_puts, late_mark;
  unsigned n_sessions;
  size_t n_sizes; /* 0: the shapes vary, each plans at its first run */
  uint64_t sizes[GS__MAX_PLANNED_SIZES]; /* descending */
  /* The first n_late sizes (the largest, past placement.plan_before_ready)
   * plan after the model is ready, on late_thread, smallest first, one
   * session at a time (warm.c). Meanwhile the dynamic batcher forms
   * batches of at most batch_cap rows: the largest size every session has
   * planned (0: no cap; atomic). late_cond wakes late_thread when a
   * session is put back; late_stop (under lock) ends it. */
  size_t n_late;
  uint64_t batch_cap;
  /* convs of the largest size that had no cached choice at load (cuDNN
   * would time them): every size was then planned before ready */
  unsigned uncached_convs;
  pthread_t late_thread;
  bool late_started, late_stop, late_waiting;
  pthread_cond_t late_cond;
  /* A run on it failed in the driver: its device's context is gone, so no
   * request runs on it again; they are answered 503 with this (under
   * lock; the waiters on idle_cond are woken). */
  bool device_failed;
  char device_error[256];
  uint64_t first_session_ns; /* the load until its first session was made */
  char load_note[640]; /* "N sessions, batch sizes {..} planned in T ms" */
} gs__model_slot_t;

typedef enum {
  GS__MODEL_UNAVAILABLE = 0,
  GS__MODEL_READY,
  GS__MODEL_UNLOADED
} gs__model_state_t;

struct gs__infer_job_s;

typedef struct gs__model_entry_s {
  char name[128];
  char version[24];
  gs__model_state_t state;
  char reason[512];
  unsigned max_batch_size;
  gs__batching_t batching;
  uint64_t memory_budget_bytes; /* engine memory per plan; 0: default */
  gs__placement_t placement;
  gs__model_slot_t *slot; /* NULL unless READY */
  gs__model_stats_t stats;
  /* The dynamic batcher's queue (batch.c), on the loop thread: decoded
   * requests waiting for a batch, oldest first, each holding its slot;
   * those the queue policy's DELAY moved back follow queue_fresh_tail
   * (NULL: there are only those). queue_expiry_ns: the first timeout of
   * the others (0: none). */
  struct gs__infer_job_s *queue_head, *queue_tail, *queue_fresh_tail;
  size_t queue_len;
  uint64_t queue_expiry_ns;
  uv_timer_t timer; /* fires at the oldest request's queue delay, or at
                       queue_expiry_ns when that comes first */
  bool timer_ready;
  bool draining;      /* the worker is stopping: requests run without waiting */
  unsigned in_flight; /* batches running (at most placement.count) */
  /* Unbatched requests of a warm model (a fixed set of sessions): at most
   * one running per session, the rest wait here on the loop thread, so
   * that none holds a pool thread while it waits for a session (the pool
   * is the process's, shared with other models and, under green
   * isolation, other instances). */
  struct gs__infer_job_s *single_head, *single_tail;
  unsigned single_running;
  /* config.pbtxt's sequence_batching, and its live sequences (sequence
   * run.c, on the loop thread; made at the first request). */
  gs__seq_config_t sequence;
  struct gs__seq_model_s *seq;
} gs__model_entry_t;

#define GS__REPO_MAX_MODELS 64

/* A model directory as the poll last saw it (repo_control.c). */
typedef struct gs__repo_seen_s {
  char name[128];
  uint64_t stamp; /* of its config and version files */
} gs__repo_seen_t;

/* models[] holds one entry per (name, version) loaded or tried; entries
 * are never removed (jobs point at them), an unloaded one is reused. */
typedef struct gs__repo_s {
  char dir[4096];
  unsigned sm_first, sm_count; /* every model's (gs_worker_options_t) */
  gs_gpu_wait_t gpu_wait;      /* every CUDA session's wait */
  unsigned plan_before_ready;  /* and the note callback: the worker's */
  void (*note)(void *ctx, const char *line);
  void *note_ctx;
  unsigned n;
  gs__model_entry_t models[GS__REPO_MAX_MODELS];
  gs_model_control_t mode;
  unsigned n_seen;
  gs__repo_seen_t seen[GS__REPO_MAX_MODELS];
  /* Shared-memory regions (shm.c): made at the first shared-memory call,
   * freed by whoever closes the repository (gs__shm_registry_destroy). */
  struct gs__shm_registry_s *shm;
  char server_name[64]; /* GET /v2's "name" (--server-name) */
  gs__pacer_t pace;     /* --rate-limit (its jobs are this loop's) */
  /* Called on the loop thread when a model's device failed (NULL: none;
   * the worker's exit_on_device_failure). */
  void (*device_failed)(void *ctx, const char *why);
  void *device_failed_ctx;
  /* Set by the worker while its loop runs: wakes it to call
   * gs__repo_find_failed (every slot's placement points here). */
  gs__loop_wake_t wake;
} gs__repo_t;

/* Finds every model directory under dir and loads it; a model that fails
 * is kept, UNAVAILABLE, with its reason. Fails only if dir is unreadable. */
int gs__repo_open(gs__repo_t *repo, const char *dir, gs_error_t *err);
/* gs__repo_open with every model's sessions on SMs [sm_first, +sm_count). */
int gs__repo_open_sms(gs__repo_t *repo, const char *dir, unsigned sm_first,
                      unsigned sm_count, gs_error_t *err);
void gs__repo_close(gs__repo_t *repo);
/* The highest READY version of name, else any entry of name (not ready,
 * with its reason), else NULL. */
gs__model_entry_t *gs__repo_find(gs__repo_t *repo, const char *name);
/* (Re)loads name from disk, adding it if new. */
int gs__repo_load(gs__repo_t *repo, const char *name, gs_error_t *err);
void gs__repo_unload(gs__repo_t *repo, gs__model_entry_t *m);

/* ---- versions and model control (repo_versions.c, repo_control.c) ------ */

struct gs__model_config_s;
/* The entry of name's version (a decimal number), or NULL. */
gs__model_entry_t *gs__repo_find_version(gs__repo_t *repo, const char *name,
                                         const char *version);
struct gs__infer_job_s;
/* The model a request names (name's newest READY version, or version),
 * ready to serve; NULL with *status (404: no such model or version;
 * not_ready_status: not ready) and err's message. With job, the job starts
 * on it: cleared, holding a reference on the model's slot. */
gs__model_entry_t *gs__repo_ready(gs__repo_t *repo, const char *name,
                                  const char *version, int not_ready_status,
                                  struct gs__infer_job_s *job, int *status,
                                  gs_error_t *err);
/* Loads the versions of name that its version_policy selects, with the
 * configuration override (Triton's ModelConfig as JSON; NULL: the model
 * directory's), as one change: every version loads or none replaces what
 * serves (a failed reload leaves the old versions serving). Versions no
 * longer selected unload. Errors start "failed to load 'NAME'";
 * GS_ENOTFOUND: no such model directory. */
int gs__repo_load_config(gs__repo_t *repo, const char *name,
                         const char *override, size_t override_len,
                         gs_error_t *err);
/* Every version of name out of service ("unloaded"). */
void gs__repo_unload_name(gs__repo_t *repo, const char *name);
/* ["1", "3"]: name's READY versions, ascending. */
json_t *gs__repo_versions_json(const gs__repo_t *repo, const char *name);
/* Triton's repository index: every entry, and every model directory
 * without one (name only); ready: READY entries only. */
json_t *gs__repo_index_json(const gs__repo_t *repo, bool ready);
/* Opens dir and loads what opts's model control mode says. */
int gs__repo_open_opts(gs__repo_t *repo, const gs_worker_options_t *opts,
                       gs_error_t *err);
/* Poll mode's rescan: loads new and changed model directories, unloads
 * removed ones. */
void gs__repo_poll(gs__repo_t *repo);
typedef enum { GS__POLL_LOAD = 1, GS__POLL_UNLOAD } gs__poll_op_t;
typedef struct gs__poll_action_s {
  char name[128];
  gs__poll_op_t op;
} gs__poll_action_t;
/* What turns the models seen before (old) into the ones seen now: LOAD
 * for a new or changed stamp, UNLOAD for a name gone; at most cap. */
size_t gs__repo_poll_diff(const gs__repo_seen_t *old, size_t n_old,
                          const gs__repo_seen_t *now, size_t n_now,
                          gs__poll_action_t *out, size_t cap);
/* A hash of model_dir's config files and version files (names, sizes,
 * modification times): changes when any of them does. */
uint64_t gs__repo_stamp(const char *model_dir);
/* Shared by the repository's files (repo.c, repo_config.c). */
bool gs__repo_valid_name(const char *name);
int gs__repo_read_config(gs__model_entry_t *m, const char *model_dir,
                         const char *override, size_t override_len,
                         struct gs__model_config_s *cfg, bool *found,
                         gs_error_t *err);
/* config_name: where cfg came from, for messages (NULL: config.pbtxt). */
int gs__repo_slot_create(gs__model_entry_t *m, const char *path,
                         const struct gs__model_config_s *cfg, bool found,
                         const char *config_name, gs_error_t *err);
int gs__repo_check_batch_dims(const gs__model_entry_t *m, gs_error_t *err);
/* The model's device failed while serving: the model becomes UNAVAILABLE
 * with why as its reason (the worker's readiness follows), so a router
 * ejects this worker and a supervisor restarts it; a CUDA context that
 * faulted stays unusable for the life of the process. repo (may be NULL)
 * hears of it through its device_failed callback. */
void gs__repo_device_failed(gs__repo_t *repo, gs__model_entry_t *m,
                            const gs__model_slot_t *slot, const char *why);
/* On the loop: every READY model whose slot's device failed outside a run
 * (the planning after ready) is taken out as gs__repo_device_failed. */
void gs__repo_find_failed(gs__repo_t *repo);
/* Test hook (gs__test_hooks.device_fail_file): true, with err set as the
 * engine would (GS_EDRIVER), for the one run that removes the file. */
bool gs__test_device_fault(gs_error_t *err);
void gs__slot_unref(gs__model_slot_t *slot);
/* A session of slot for this thread's use, returned with _put (jobs.c). */
/* A session to run on: an idle one (a warm slot waits for one), else a new
 * one; NULL with GS_ENODEV once the slot's device failed. */
gs_session_t *gs__slot_get(gs__model_slot_t *slot, gs_error_t *err);
/* Marks the slot's device failed (its first reason kept): every request
 * that has not yet started is answered 503 with it. */
void gs__slot_fail(gs__model_slot_t *slot, const char *why);
/* True, with err as gs__slot_get's, once the slot's device failed. */
bool gs__slot_failed(gs__model_slot_t *slot, gs_error_t *err);
void gs__slot_put(gs__model_slot_t *slot, gs_session_t *s);
/* Takes session s out of a warm slot's pool once it is idle (waiting on
 * late_cond); false, with err, once the device failed or late_stop is set
 * (GS_EBUSY: the slot is being destroyed). */
bool gs__slot_take(gs__model_slot_t *slot, gs_session_t *s, gs_error_t *err);
/* The most rows the dynamic batcher puts in one batch now: max_batch_size,
 * or less while larger sizes are still to plan. */
uint64_t gs__slot_batch_max(const gs__model_slot_t *slot);
/* Stops and joins a slot's late planning, if it runs (slot_destroy). */
void gs__slot_late_join(gs__model_slot_t *slot);
/* A new session of slot's model with the slot's options. */
int gs__slot_session_create(gs__model_slot_t *slot, gs_session_t **out,
                            gs_error_t *err);
/* Makes the warm slot's sessions (first, and up to instance_group count in
 * all), runs each once at every planned size and pools them (warm.c);
 * sets load_note. The pool holds what was made, even on failure. */
int gs__slot_warm(gs__model_slot_t *slot, gs_session_t *first, gs_error_t *err);
/* The batch sizes a warm slot plans at load, largest first: with
 * max_batch_size > 0 every size gs__batch_padded_rows can give (powers of
 * two below the max, the preferred sizes, the max), else the model's one
 * fixed shape (one size, 0: no batch dimension). 0 when an input has a variable
 * dimension other than the batch: no shape can be planned ahead. */
size_t gs__slot_planned_sizes(const gs__model_slot_t *slot, uint64_t *sizes,
                              size_t cap);

json_t *gs__model_metadata_json(const gs__model_entry_t *m);
json_t *gs__model_config_json(const gs__model_entry_t *m);
json_t *gs__model_stats_json(const gs__model_entry_t *m);

/* ---- routes (router.c), infer jobs (jobs.c), metrics (metrics.c) ----------
 */

/* An infer the router hands to a thread: the request moves into it. */
typedef struct gs__infer_job_s {
  gs__model_entry_t *entry;
  gs__model_slot_t *slot; /* a reference */
  gs__http_request_t req;
  uint64_t t_received, t_started, t_input_done, t_infer_done, t_done;
  uint64_t decode_ns; /* batched: decoding, before the queue */
  gs__http_response_t resp;
  uint64_t batch; /* requests in the batch: dim 0 when max_batch_size > 0 */
  bool ok;
  bool batched; /* ran in a dynamic batch: the batch counts the execution */
  /* The engine's device failed under it (GS_EDRIVER: a CUDA error such as
   * a fault that ends every client of an MPS server): gs__infer_job_finish
   * takes the model out of service with this message. */
  bool device_failed;
  char device_error[256];
  /* A gRPC ModelInfer: its message, decoded instead of req's body (the
   * gRPC server frees it once the job is done). */
  struct gs__grpc_infer_s *grpc;
  /* For gs__infer_submit. */
  gs__infer_request_t ir; /* decoded, while queued for a batch */
  void (*done)(struct gs__infer_job_s *job);
  void *data; /* the caller's */
  /* the repository's shared-memory regions, for gs__shm_resolve */
  struct gs__shm_registry_s *shm;
  struct gs__repo_s *repo; /* the entry's, for gs__repo_device_failed */
  struct gs__infer_job_s *next;
  uint64_t deadline_ns; /* queued: when its queue delay runs out */
  uint64_t timeout_ns;  /* queued: when its queue policy timeout passes */
  /* The worker's rate limit (NULL: none) and the rows it charged this job
   * at its start (pace.h). */
  struct gs__pacer_s *pacer;
  uint64_t paced_rows;
  /* Whether the client is gone (NULL: never asked): a request waiting for
   * its turn is then dropped unrun. */
  bool (*gone)(const struct gs__infer_job_s *job);
  uv_work_t work;
} gs__infer_job_t;

/* Appends job to the FIFO head..tail (the batcher's, the unbatched
 * requests', the rate limit's). */
static inline void gs__job_append(gs__infer_job_t **head,
                                  gs__infer_job_t **tail,
                                  gs__infer_job_t *job) {
  job->next = NULL;
  if (*tail)
    (*tail)->next = job;
  else
    *head = job;
  *tail = job;
}

/* Answers req in resp and returns 0, or, for an infer on a ready model,
 * fills job (taking req's buffers) and returns 1: run gs__infer_job_run off
 * the loop, then gs__infer_job_finish on it. */
int gs__route(gs__repo_t *repo, gs__http_request_t *req,
              gs__http_response_t *resp, gs__infer_job_t *job);
/* The worker's HTTP listener's handler (ctx: a gs__route_ctx_t): answers
 * at once, or submits the infer gs__route made (connections hold a job in
 * their user bytes). */
typedef struct gs__route_ctx_s {
  uv_loop_t *loop;
  gs__repo_t *repo;
} gs__route_ctx_t;
void gs__route_http(void *ctx, gs__http_conn_t *c, gs__http_request_t *req);
void gs__infer_job_run(gs__infer_job_t *job);
/* Records stats, drops the slot reference; resp stays for the caller. */
void gs__infer_job_finish(gs__infer_job_t *job);
/* On a thread of the pool: records a run error of the engine in job. */
void gs__infer_job_note_error(gs__infer_job_t *job, const gs_error_t *err);
/* The status of a decode of job->req into job->ir (0, 400 or 500, with err),
 * checking the batch dimension against the model's max_batch_size; sets
 * job->batch. */
int gs__infer_job_decode(gs__infer_job_t *job, int device, gs_error_t *err);
/* The CUDA device of the slot's sessions, -1 on the CPU: a request's CUDA
 * shared-memory tensors on it stay on the GPU (device of
 * gs__infer_job_decode; -1 for a batch, concatenated on the host). */
int gs__slot_device(const gs__model_slot_t *slot);
/* Adds one executed batch of size rows to the model's batch_stats. */
void gs__batch_stats_add(gs__model_stats_t *st, uint64_t rows,
                         uint64_t input_ns, uint64_t infer_ns,
                         uint64_t output_ns);
uint64_t gs__now_ns(void);
/* Prometheus text of every model's counters. */
char *gs__metrics_text(const gs__repo_t *repo, size_t *len);

/* ---- dynamic batcher (batch.c) ---------------------------------------------
 */

/* "cannot queue the inference of model 'M': why" for gs__infer_submit's
 * (or gs__queue_work's) libuv error rc, in buf. */
const char *gs__infer_queue_msg(const gs__infer_job_t *job, int rc, char *buf,
                                size_t size);
/* Runs a job that gs__route filled, on loop's thread pool, and calls
 * job->done on the loop thread when job->resp holds the answer (jobs.c). A
 * model with dynamic_batching has its requests decoded, queued and run in
 * batches; the others run one by one. Nonzero (a libuv error) when the job
 * could not be queued: done is not called. */
int gs__infer_submit(uv_loop_t *loop, gs__infer_job_t *job,
                     void (*done)(gs__infer_job_t *job));
/* gs__infer_submit past the rate limit (job->done set): starts job now. */
int gs__infer_start(uv_loop_t *loop, gs__infer_job_t *job);
/* gs__infer_submit for a model with dynamic_batching (job->done set). */
int gs__batch_submit(uv_loop_t *loop, gs__infer_job_t *job);
/* Starts every queued request now, and later ones without queueing: the
 * worker is shutting down. */
void gs__batcher_flush(gs__repo_t *repo);
/* How long a request may wait in the queue under policy p (microseconds,
 * 0: no limit), given the request's own "timeout" (0: none). */
uint64_t gs__queue_timeout_us(const gs__queue_policy_t *p, uint64_t requested);
/* batch.c's queue on the loop thread (exposed for tests): _add puts job
 * behind the fresh requests, ahead of those DELAY moved back (the caller
 * counts queue_len); _expire takes out the fresh requests whose timeout
 * passed by now: DELAY's go behind every other, REJECT's come back
 * through next (queue_len counted down) to be answered; _take takes the
 * first n (queue_len counted down). */
void gs__queue_add(gs__model_entry_t *m, gs__infer_job_t *job);
gs__infer_job_t *gs__queue_expire(gs__model_entry_t *m, uint64_t now);
gs__infer_job_t *gs__queue_take(gs__model_entry_t *m, size_t n);
/* ---- sequence batcher (sequence_run.c) ----------------------------------- */
/* gs__infer_submit for a model with sequence_batching. */
int gs__seq_submit(uv_loop_t *loop, gs__infer_job_t *job,
                   void (*done)(gs__infer_job_t *job));
/* The sequence parameters of job's request (HTTP's JSON "parameters", or
 * the gRPC message's map): sequence_id (uint64 or string; 0 or "" is no
 * id), sequence_start, sequence_end. GS_OK, or GS_EINVAL for a body that is
 * not JSON. */
int gs__seq_params_read(gs__seq_params_t *p, const gs__infer_job_t *job,
                        gs_error_t *err);
/* Answers the requests of sequences still waiting for a slot: the worker
 * is shutting down. */
void gs__seq_flush(gs__model_entry_t *m);
/* A sequence model's metadata (config false) or config JSON as Triton
 * shows them: without the control and state tensors the batcher gives,
 * the config with its sequence_batching. */
void gs__seq_json(const gs__model_entry_t *m, json_t *j, bool config);
/* Frees m's sequences (after the loop has closed). */
void gs__seq_model_destroy(gs__model_entry_t *m);

/* Batch assembly, without the loop. Two decoded requests can share a batch
 * when every input has the same rank and the same non-batch dimensions. */
bool gs__batch_compatible(const gs__infer_request_t *a,
                          const gs__infer_request_t *b,
                          const gs__model_io_t *io);
/* How many of the n queued requests (oldest first, rows[i] batch rows each,
 * compatible[i]: request i can join request 0) the next batch takes, and
 * whether it should start now: it is full (max_batch_size rows, or a
 * preferred size), the next request cannot join, or due (the oldest waited
 * its queue delay). 0 when it should wait. */
size_t gs__batch_pick(const uint64_t *rows, const bool *compatible, size_t n,
                      unsigned max_batch_size, const gs__batching_t *cfg,
                      bool due, uint64_t *batch_rows);
/* The batch size a batch of rows runs as: on the GPU (slot->provider
 * CUDA or slot->warm, max_batch_size > 0) the smallest of the sizes it keeps
 * CUDA graphs for (powers of two, the preferred sizes, max_batch_size) that
 * holds rows, so that a few graphs serve every batch; elsewhere rows. */
uint64_t gs__batch_padded_rows(const gs__model_slot_t *slot, uint64_t rows);
/* Grows each of the n batched inputs from rows to padded rows (zeros);
 * bufs[i] is out[i].data, reallocated. */
int gs__batch_pad(gs_tensor_t *out, void **bufs, size_t n, uint64_t rows,
                  uint64_t padded, gs_error_t *err);
/* A gs__batch_buf_fn for gs__batch_concat_to: ctx is a gs_session_t, the
 * buffer its input buffer (on a GPU its pinned staging). */
void *gs__batch_session_buf(void *ctx, size_t k, size_t bytes, gs_error_t *err);
/* Concatenates the n requests' inputs along dim 0 into out (model input
 * order); bufs[i] holds out[i].data, which the caller frees. */
int gs__batch_concat(gs_tensor_t *out, void **bufs,
                     const gs__infer_request_t *const *reqs, size_t n,
                     const gs__model_io_t *io, gs_error_t *err);
/* Where gs__batch_concat_to writes input k's bytes (NULL with err set:
 * the batch fails). */
typedef void *(*gs__batch_buf_fn)(void *ctx, size_t k, size_t bytes,
                                  gs_error_t *err);
/* gs__batch_concat into buffers buf_for gives, each grown with zero rows to
 * padded rows when padded is larger (gs__batch_pad's result, one copy). */
int gs__batch_concat_to(gs_tensor_t *out, gs__batch_buf_fn buf_for, void *ctx,
                        const gs__infer_request_t *const *reqs, size_t n,
                        const gs__model_io_t *io, uint64_t padded,
                        gs_error_t *err);
/* Rows [row, row + rows) of each of the n batch outputs, as views into
 * them; every output's dim 0 must be total_rows. */
int gs__batch_split(gs_tensor_t *slices, const gs_tensor_t *outputs, size_t n,
                    uint64_t row, uint64_t rows, uint64_t total_rows,
                    gs_error_t *err);

#endif
