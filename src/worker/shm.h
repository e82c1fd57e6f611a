/* KServe's shared-memory extensions in the worker: a registry of system
 * (POSIX shm) and CUDA (IPC handle) regions that clients register by name,
 * and the hooks that let an infer read its inputs from and write its
 * outputs to those regions instead of the request and response bodies. */
#ifndef GPUSLICE_WORKER_SHM_H
#define GPUSLICE_WORKER_SHM_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuslice/error.h"
#include "worker/worker_int.h"

typedef enum { GS__SHM_SYSTEM = 0, GS__SHM_CUDA = 1 } gs__shm_kind_t;

#define GS__SHM_MAX_REGIONS 1024
#define GS__SHM_NAME_MAX 128 /* region names and system keys, with the NUL */
#define GS__SHM_CUDA_HANDLE_BYTES 64 /* sizeof(cudaIpcMemHandle_t) */

typedef struct gs__shm_registry_s gs__shm_registry_t;
struct gs__shm_cuda_s; /* the CUDA driver, opened at the first CUDA region */

/* One registered region; refs: 1 while registered, plus one per request
 * holding it (under the registry's lock). */
typedef struct gs__shm_region_s {
  gs__shm_registry_t *reg;
  gs__shm_kind_t kind;
  char name[GS__SHM_NAME_MAX], key[GS__SHM_NAME_MAX];
  uint64_t offset, byte_size;
  int64_t device_id;
  void *map;               /* system: the mmap, from the page holding offset */
  size_t map_len;          /* system: its length */
  uint8_t *host;           /* system: the region's first byte */
  unsigned long long dptr; /* CUDA: the opened IPC allocation */
  unsigned refs;
  struct gs__shm_region_s *next;
} gs__shm_region_t;

struct gs__shm_registry_s {
  pthread_mutex_t lock;
  gs__shm_region_t *head; /* registered regions, newest first */
  unsigned n;
  struct gs__shm_cuda_s *cuda; /* NULL until a CUDA region is registered */
  /* Tensors in CUDA regions so far, [input 0, output 1][path]: path 0
   * copied through the host, 1 on the device (the engine read or wrote
   * the region itself). Atomic; the worker's /metrics shows them. */
  uint64_t cuda_tensors[2][2];
};

/* ---- the registry (shm.c) ----------------------------------------------
 * Thread-safe: register, unregister and status run on the loop, requests
 * take and drop regions on the pool's threads. A region unregistered while
 * requests use it leaves the registry at once (its name is free, new
 * requests cannot find it) and is unmapped when the last of them is done:
 * an in-flight request never sees its memory vanish. */

gs__shm_registry_t *gs__shm_registry_create(void);
/* Unmaps every region; no request may still hold one. NULL is a no-op. */
void gs__shm_registry_destroy(gs__shm_registry_t *reg);

/* Maps [offset, offset + byte_size) of the POSIX shared-memory object key
 * (shm_open) as region name. Errors: name taken (GS_EEXISTS: Triton's
 * ALREADY_EXISTS, 400 over HTTP), key not found (GS_ENOTFOUND), the object
 * smaller than offset + byte_size (GS_EINVAL). */
int gs__shm_register_system(gs__shm_registry_t *reg, const char *name,
                            const char *key, uint64_t offset,
                            uint64_t byte_size, gs_error_t *err);
/* Opens a cudaIpcMemHandle_t (handle_len must be 64 bytes) on device_id as
 * region name (shm_cuda.c); GS_EUNSUPPORTED naming CUDA without a driver,
 * GS_EINVAL for a byte_size past the end of the client's allocation (as
 * Triton checks it, with cuMemGetAddressRange), GS_EEXISTS as above. */
int gs__shm_register_cuda(gs__shm_registry_t *reg, const char *name,
                          const void *handle, size_t handle_len,
                          int64_t device_id, uint64_t byte_size,
                          gs_error_t *err);
/* Unregisters name (NULL: every region of kind). As in Triton, a name
 * that is not registered is no error, nor is one of the other kind (which
 * stays registered). */
int gs__shm_unregister(gs__shm_registry_t *reg, gs__shm_kind_t kind,
                       const char *name, gs_error_t *err);
/* Triton's status array for kind (name NULL: every region of kind); NULL
 * with err set when name is not registered as kind. Caller decrefs. */
json_t *gs__shm_status_json(gs__shm_registry_t *reg, gs__shm_kind_t kind,
                            const char *name, gs_error_t *err);
/* Where a tensor's bytes lie: [offset, offset + bytes) of a region, checked
 * against its size as Triton checks it (the offset inside the region, even
 * for an empty tensor; then the end): GS_EINVAL in Triton's words, naming
 * the region and the tensor. A pure function, for the unit tests and the
 * fuzzers. */
int gs__shm_check_bounds(const char *region, uint64_t region_size,
                         uint64_t offset, uint64_t bytes, const char *tensor,
                         gs_error_t *err);

/* A request's hold on one region: the region stays mapped until dropped. */
gs__shm_region_t *gs__shm_acquire(gs__shm_registry_t *reg, const char *name,
                                  gs_error_t *err);
void gs__shm_drop(gs__shm_region_t *r);
/* CUDA regions (shm_cuda.c): opens r's IPC handle (sets r->dptr), closes
 * it, and drops the driver when the registry goes. */
int gs__shm_cuda_open(struct gs__shm_cuda_s **cuda, gs__shm_region_t *r,
                      const void *handle, gs_error_t *err);
void gs__shm_cuda_close(struct gs__shm_cuda_s *cuda, gs__shm_region_t *r);
void gs__shm_cuda_destroy(struct gs__shm_cuda_s *cuda);
/* Copies between a CUDA region and host memory (shm_cuda.c). */
int gs__shm_cuda_read(gs__shm_region_t *r, uint64_t offset, void *dst,
                      size_t bytes, gs_error_t *err);
int gs__shm_cuda_write(gs__shm_region_t *r, uint64_t offset, const void *src,
                       size_t bytes, gs_error_t *err);

/* ---- the extensions' calls (shm_routes.c) -------------------------------
 */

/* A register request's body (JSON), as Triton's HTTP extension has it:
 * system {"key", "offset", "byte_size"}; CUDA {"raw_handle": {"b64"},
 * "device_id", "byte_size"}. */
typedef struct gs__shm_register_req_s {
  char key[GS__SHM_NAME_MAX];
  uint64_t offset, byte_size;
  int64_t device_id;
  uint8_t handle[GS__SHM_CUDA_HANDLE_BYTES];
  size_t handle_len;
} gs__shm_register_req_t;

int gs__shm_parse_register(gs__shm_kind_t kind, const char *body, size_t len,
                           gs__shm_register_req_t *out, gs_error_t *err);
/* Standard base64 of text (len bytes) into at most cap bytes at out;
 * GS_EINVAL on a bad character, length or padding, GS_ELIMIT past cap. */
int gs__shm_base64_decode(const char *text, size_t len, uint8_t *out,
                          size_t cap, size_t *n, gs_error_t *err);
/* /v2/systemsharedmemory/... and /v2/cudasharedmemory/... (seg[1] is one
 * of them): answers in resp. */
void gs__shm_route(gs__repo_t *repo, const gs__http_request_t *req, char **seg,
                   unsigned n, gs__http_response_t *resp);
/* The six gRPC methods; method is the path's last part (its
 * gs__grpc_method_t is the caller's). false: not a shared-memory method. */
struct gs__grpc_reply_s;
bool gs__shm_grpc_call(gs__repo_t *repo, const char *method, const uint8_t *msg,
                       size_t len, struct gs__grpc_reply_s *reply);

/* ---- a request's shared-memory tensors (shm_infer.c) -------------------
 * The decoders note which inputs and outputs name a region (the _json and
 * _grpc calls, into req->shm); gs__shm_resolve then takes the regions and
 * points the inputs at their bytes, the encoders write the outputs with
 * gs__shm_output_write, and gs__infer_request_release drops everything
 * (gs__shm_request_release). */

/* Reads the shared_memory_* parameters of an input (is_input) or requested
 * output k of req from params (a JSON object or NULL). *used: they name a
 * region. Errors: a region without a byte size or the other way round,
 * values of the wrong type. */
int gs__shm_ref_json(gs__infer_request_t *req, bool is_input, size_t k,
                     const char *tensor, json_t *params, bool *used,
                     gs_error_t *err);
/* HTTP's input jin (req's next input, t, of count elements): when its
 * parameters name a region, notes it and sizes t for gs__shm_resolve;
 * "data" or binary_data_size beside them is an error. */
int gs__shm_input_json(gs__infer_request_t *req, gs_tensor_t *t, json_t *jin,
                       size_t count, bool *used, gs_error_t *err);
/* A gRPC ModelInferRequest's shared-memory tensors (msg: the unpacked
 * Inference__ModelInferRequest, void to keep protobuf out of this header):
 * _input_bytes says whether input i names a region and its byte size (its
 * data comes from there); _align_raw spreads raw_input_contents, which
 * tritonclient sends only for the inputs not in shared memory, to one per
 * input; _refs notes every region in req after it is decoded. */
bool gs__shm_grpc_input_bytes(const void *msg, size_t i, size_t *bytes);
int gs__shm_grpc_align_raw(void *msg, gs_error_t *err);
int gs__shm_grpc_refs(gs__infer_request_t *req, const void *msg,
                      const gs__model_io_t *io, gs_error_t *err);

/* Where an input in a region is read from (a pure function, for the unit
 * tests): a system region's in place when its bytes are 16-byte aligned; a
 * CUDA region's on the GPU when the region is on session_device (the CUDA
 * device of the session the request will run on; -1: a CPU session, or a
 * batch concatenated on the host) and the engine reads the input there
 * (host_only false: not BYTES, not a Reshape's shape, as
 * gs_model_input_host_only says); anything else is copied to the host
 * (device to host for a CUDA region). */
typedef enum {
  GS__SHM_IN_PLACE,  /* the engine reads the region's host mapping */
  GS__SHM_ON_DEVICE, /* mem GS_MEM_DEVICE at the region's device address */
  GS__SHM_HOST_COPY  /* copied into a host buffer the request owns */
} gs__shm_path_t;
gs__shm_path_t gs__shm_input_path(gs__shm_kind_t kind, bool aligned,
                                  int64_t region_device, int session_device,
                                  bool host_only);

/* Takes every region req names and points each shared-memory input at its
 * bytes, on the path gs__shm_input_path gives (model: the model the
 * request runs, whose gs_model_input_host_only inputs never stay on the
 * GPU; NULL only where device is -1). The input's bytes must equal its
 * byte size. */
int gs__shm_resolve(gs__infer_request_t *req, gs__shm_registry_t *reg,
                    int device, const gs_model_t *model, gs_error_t *err);
/* Copies the inputs gs__shm_resolve left on the GPU to the host (a run
 * padded to a planned batch concatenates on the host). */
int gs__shm_to_host(gs__infer_request_t *req, gs_error_t *err);
/* Binds every requested output whose region is a CUDA region on device
 * (gs_session_device of s) to the region, so that the run writes it there
 * on the GPU (gs_session_bind_output); the others are written from the
 * host by gs__shm_output_write. */
int gs__shm_bind_outputs(const gs__infer_request_t *req, gs_session_t *s,
                         int device, gs_error_t *err);
bool gs__shm_output_wanted(const gs__infer_request_t *req, size_t k);
/* Writes output k (model order) into its region; GS_EINVAL when the
 * region's byte size cannot hold it. An output the run already wrote there
 * (mem GS_MEM_DEVICE at the region's address) is left as it is. */
int gs__shm_output_write(const gs__infer_request_t *req, size_t k,
                         const gs_tensor_t *t, gs_error_t *err);
void gs__shm_request_release(gs__infer_request_t *req);

#endif
