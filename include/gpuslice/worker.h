/* The inference worker: serves a Triton-layout model repository over HTTP/1.1
 * and gRPC (HTTP/2) with the KServe v2 (Open Inference Protocol) API,
 * running inference on libuv's thread pool. One worker per instance. */
#ifndef GPUSLICE_WORKER_H
#define GPUSLICE_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuslice/error.h"

#define GS_WORKER_VERSION "0.1.0"

/* Triton's --model-control-mode. */
typedef enum {
  GS_MODEL_CONTROL_NONE = 0, /* every model loads at start; load and
                                unload requests are refused */
  GS_MODEL_CONTROL_POLL,     /* as NONE, and the repository is rescanned
                                every poll_secs: new and changed models
                                (re)load, removed ones unload */
  GS_MODEL_CONTROL_EXPLICIT  /* load_models load at start; load and unload
                                requests are served */
} gs_model_control_t;

typedef enum {
  GS_WORKER_GPU_WAIT_AUTO = 0,
  GS_WORKER_GPU_WAIT_DRIVER,
  GS_WORKER_GPU_WAIT_SPIN,
  GS_WORKER_GPU_WAIT_BLOCK
} gs_worker_gpu_wait_t;

/* Their names (--gpu-wait, serve.yaml's gpu_wait), an initializer. */
#define GS_WORKER_GPU_WAIT_NAMES                                               \
  {                                                                            \
    [GS_WORKER_GPU_WAIT_AUTO] = "auto",                                        \
    [GS_WORKER_GPU_WAIT_DRIVER] = "driver",                                    \
    [GS_WORKER_GPU_WAIT_SPIN] = "spin", [GS_WORKER_GPU_WAIT_BLOCK] = "block"   \
  }

typedef struct gs_worker_options_s {
  const char *model_repository; /* DIR/NAME/VERSION/model.onnx */
  const char *host;             /* NULL: "127.0.0.1" */
  unsigned port;                /* 0: any free port (gs_worker_port) */
  size_t max_body_bytes;        /* 0: 64 MiB; a larger body is answered 413 */
  bool grpc;                    /* also serve KServe v2 gRPC (HTTP/2) */
  unsigned grpc_port;           /* with grpc: 0 = any free port */
  bool metrics;          /* also serve GET /metrics alone on metrics_port */
  unsigned metrics_port; /* with metrics: 0 = any free port */
  /* CUDA sessions on a green context over these SMs (gs_session_options_t
   * sm_first/sm_count); sm_count 0: the whole GPU. */
  unsigned sm_first, sm_count;
  gs_model_control_t model_control;
  /* EXPLICIT: the models loaded at start ("*": all; none: none). */
  const char *const *load_models;
  size_t n_load_models;
  unsigned poll_secs; /* POLL: seconds between scans; 0: 15 (Triton's) */
  /* The name GET /v2 and ServerMetadata give (NULL: "gpuslice"); Triton's
   * health examples want "triton". Letters, digits, "_.-", under 64. */
  const char *server_name;
  /* Latency for a core: > 0 runs inference on the worker's own threads
   * (as many as UV_THREADPOOL_SIZE says), each spinning on its queue for
   * this many microseconds after a job before it sleeps; the loop thread
   * spins (uv_run NOWAIT) while a job is in flight and this long after
   * the last one; CUDA sessions poll their stream when gpu_wait is AUTO.
   * 0: libuv's pool and sleeping threads, CUDA runs waited for as gpu_wait
   * says (AUTO: the driver's, which spins). At most
   * GS_WORKER_MAX_BUSY_POLL_US. */
  unsigned busy_poll_us;
  /* How CUDA sessions wait for a run's end: AUTO (0) spins with
   * busy_poll_us, else leaves it to the driver; the others as engine.h's
   * gs_gpu_wait_t says. */
  gs_worker_gpu_wait_t gpu_wait;
  /* At most this many inferences a second start (a request of batch 64
   * counts 64); requests past it wait their turn, first come first
   * served. It holds a noisy instance to a share of what the instances
   * share (soft instances: the GPU's L2 and memory bandwidth). 0: none;
   * at most GS_WORKER_MAX_RATE_LIMIT. */
  unsigned rate_limit;
  /* When the device fails under a request (GS_EDRIVER: a CUDA error such as
   * an MPS server's fatal fault, which no later call in this process gets
   * past), drain and make gs_worker_run return (gs_worker_device_failure
   * then says why): for a supervisor that restarts the worker at once, rather
   * than after its health checks have failed long enough. false: the
   * model becomes unavailable and the worker stays up. */
  bool exit_on_device_failure;
  /* A warm model (CUDA sessions) plans the batch sizes up to this many
   * rows before it is ready and the larger ones after, on a thread of its
   * own, one session at a time; until a size is planned on every session
   * the dynamic and sequence batchers form smaller batches (a client's
   * own larger batch plans on its request). The plans of large batches
   * cost as much of a restart as the small ones' (each conv's first call
   * on a context). 0: every size before ready. */
  unsigned plan_before_ready;
  /* Called, from any thread, with a line worth logging that comes after
   * gs_worker_create (a model's sizes planned after ready); NULL: none. */
  void (*note)(void *ctx, const char *line);
  void *note_ctx;
} gs_worker_options_t;

#define GS_WORKER_MAX_BUSY_POLL_US 1000000u
#define GS_WORKER_MAX_RATE_LIMIT 100000000u

typedef struct gs_worker_s gs_worker_t;

/* Loads the repository and binds the socket. A model that fails to load does
 * not fail this call: it is listed as not ready (gs_worker_model). Inference
 * threads are libuv's pool, sized by UV_THREADPOOL_SIZE, which the tool
 * sets. The caller destroys *out. */
int gs_worker_create(gs_worker_t **out, const gs_worker_options_t *opts,
                     gs_error_t *err);
/* Serves until gs_worker_stop. */
int gs_worker_run(gs_worker_t *w, gs_error_t *err);
/* Async-signal-safe and thread-safe: makes gs_worker_run return. */
void gs_worker_stop(gs_worker_t *w);
/* Thread-safe: stops accepting, lets each HTTP connection get the answer
 * to the request it has in flight (with Connection: close) and each gRPC
 * connection the answers to its calls (after a GOAWAY), then makes
 * gs_worker_run return; after timeout_ms it returns whatever is left
 * (calls still in flight then fail at gs_worker_destroy). */
void gs_worker_drain(gs_worker_t *w, unsigned timeout_ms);
void gs_worker_destroy(gs_worker_t *w);
/* Why exit_on_device_failure stopped w (read after gs_worker_run returns;
 * the model's reason, naming the failed call); NULL when it did not. */
const char *gs_worker_device_failure(const gs_worker_t *w);

unsigned gs_worker_port(const gs_worker_t *w);
/* The gRPC port; 0 when gRPC is off. */
unsigned gs_worker_grpc_port(const gs_worker_t *w);
/* The metrics-only port (as Triton's 8002); 0 when off. /metrics is on the
 * HTTP port too. */
unsigned gs_worker_metrics_port(const gs_worker_t *w);
size_t gs_worker_model_count(const gs_worker_t *w);
/* Model i's name and whether it is ready; reason says why not ("" when
 * ready). false when i is out of range. Strings live as long as w. */
bool gs_worker_model(const gs_worker_t *w, size_t i, const char **name,
                     bool *ready, const char **reason);
/* Model i's version ("" when none was reached); a model serves one entry
 * per loaded version. Valid as long as w. */
const char *gs_worker_model_version(const gs_worker_t *w, size_t i);
/* What loading ready model i prepared, for a log line: "N sessions, batch
 * sizes {1,2,4} planned in T ms" for a model planned at load (on a GPU),
 * "" otherwise. Valid until the model reloads. */
const char *gs_worker_model_load_note(const gs_worker_t *w, size_t i);

#endif
