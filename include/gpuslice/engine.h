/* The ONNX execution engine (CPU): load a model with hard limits, read its
 * inputs and outputs as KServe v2 metadata, and run it through a session that
 * plans its memory once per input shape set and reuses the plan. */
#ifndef GPUSLICE_ENGINE_H
#define GPUSLICE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuslice/error.h"

/* Highest tensor rank the engine handles. */
#define GS_TENSOR_MAX_RANK 8

/* Element types, named as KServe v2 names them (gs_dtype_name). BYTES
 * (ONNX's STRING, Triton's TYPE_STRING) has no fixed size: a BYTES tensor's
 * data is its elements in row-major order, each a 4-byte little-endian
 * length and that many bytes (the KServe binary tensor form), and its bytes
 * field is the whole length; gs_dtype_size gives 0 for it. */
#define GS_DTYPE_MAP(XX)                                                       \
  XX(BOOL, 1)                                                                  \
  XX(UINT8, 1)                                                                 \
  XX(UINT16, 2)                                                                \
  XX(UINT32, 4)                                                                \
  XX(UINT64, 8)                                                                \
  XX(INT8, 1)                                                                  \
  XX(INT16, 2)                                                                 \
  XX(INT32, 4)                                                                 \
  XX(INT64, 8)                                                                 \
  XX(FP16, 2)                                                                  \
  XX(FP32, 4)                                                                  \
  XX(FP64, 8)                                                                  \
  XX(BF16, 2)                                                                  \
  XX(BYTES, 0)

typedef enum {
  GS_DTYPE_INVALID = 0,
#define XX(name, _) GS_DTYPE_##name,
  GS_DTYPE_MAP(XX)
#undef XX
      GS_DTYPE_MAX
} gs_dtype_t;

/* "FP32", "INT32", ...; "INVALID" for anything else. */
const char *gs_dtype_name(gs_dtype_t dtype);
/* GS_DTYPE_INVALID when name is not one of the names above. */
gs_dtype_t gs_dtype_from_name(const char *name);
/* Bytes per element; 0 for GS_DTYPE_INVALID and GS_DTYPE_BYTES. */
size_t gs_dtype_size(gs_dtype_t dtype);

/* What a model may contain. Loading fails with GS_ELIMIT, naming the limit,
 * when a file exceeds one; gs_model_limits_default gives generous values. */
typedef struct gs_model_limits_s {
  size_t max_file_bytes; /* the serialized model */
  size_t max_nodes;      /* graph nodes */
  size_t max_values;     /* named tensors: inputs, initializers, node outputs */
  size_t max_tensor_bytes; /* any one initializer or planned tensor */
} gs_model_limits_t;

void gs_model_limits_default(gs_model_limits_t *limits);

/* A graph input or output as KServe model metadata shows it. shape[i] is -1
 * for a variable dimension (a batch dimension N, say); rank is -1 when the
 * model does not declare the tensor's shape at all. */
typedef struct gs_tensor_info_s {
  const char *name;
  gs_dtype_t dtype;
  int rank;
  int64_t shape[GS_TENSOR_MAX_RANK];
} gs_tensor_info_t;

/* A loaded, checked model. Immutable once loaded: several sessions, in
 * several threads, may share one model. */
typedef struct gs_model_s gs_model_t;

/* Loads and checks a model: protobuf structure, opset, every node's op and
 * attributes against the supported op set (an unsupported op is a
 * GS_EUNSUPPORTED error naming the op and the node), types, a topological
 * order. limits may be NULL for the defaults. The caller destroys *out. */
int gs_model_load_file(gs_model_t **out, const char *path,
                       const gs_model_limits_t *limits, gs_error_t *err);
int gs_model_load_buffer(gs_model_t **out, const void *data, size_t size,
                         const gs_model_limits_t *limits, gs_error_t *err);
void gs_model_destroy(gs_model_t *model);

size_t gs_model_input_count(const gs_model_t *model);
size_t gs_model_output_count(const gs_model_t *model);
/* NULL when i is out of range; valid as long as the model. */
const gs_tensor_info_t *gs_model_input(const gs_model_t *model, size_t i);
const gs_tensor_info_t *gs_model_output(const gs_model_t *model, size_t i);
/* Whether every session reads input i on the host, so that it must be
 * given in host memory (GS_MEM_HOST): a BYTES input, or one whose data a
 * Reshape reads as its target shape at plan time. false when i is out of
 * range. The worker copies such an input out of a CUDA region. */
bool gs_model_input_host_only(const gs_model_t *model, size_t i);
size_t gs_model_node_count(const gs_model_t *model);

/* The ops the engine runs, by ONNX name ("MatMul", ...), for listings. */
size_t gs_engine_op_count(void);
const char *gs_engine_op_name(size_t i);

/* Threads the CPU provider uses for matrix work: OpenBLAS's and the Conv
 * thread pool's. Process-wide, as OpenBLAS's own setting is: the worker
 * sets it once per instance. n is 1..1024. */
int gs_engine_set_threads(unsigned n, gs_error_t *err);
unsigned gs_engine_threads(void);

/* Where a tensor's bytes lie: host memory (the default, 0), or device
 * memory of a CUDA session's GPU, data then holding a CUdeviceptr (a CUDA
 * shared-memory region the worker opened, say). */
typedef enum { GS_MEM_HOST = 0, GS_MEM_DEVICE = 1 } gs_mem_t;

/* A tensor passed in or handed back. For an input the caller owns data; for
 * an output the session does (or the caller, when it bound the output:
 * gs_session_bind_output). bytes is the element count times
 * gs_dtype_size(dtype); for BYTES, the serialized length (an input's must
 * hold exactly its elements, else the run fails naming the input). */
typedef struct gs_tensor_s {
  const char *name;
  gs_dtype_t dtype;
  unsigned rank;
  int64_t shape[GS_TENSOR_MAX_RANK];
  const void *data;
  size_t bytes;
  gs_mem_t mem;
} gs_tensor_t;

/* Where a session runs its model (Triton's instance_group kind). AUTO takes
 * CUDA when a GPU, its driver and the GPU libraries are usable, else CPU. */
typedef enum {
  GS_PROVIDER_AUTO = 0,
  GS_PROVIDER_CPU,
  GS_PROVIDER_CUDA
} gs_provider_t;

/* The arithmetic a provider uses inside the model; inputs and outputs keep
 * the model's declared types. DEFAULT is FP32 on the CPU, FP16 on a GPU. */
typedef enum {
  GS_PRECISION_DEFAULT = 0,
  GS_PRECISION_FP32,
  GS_PRECISION_FP16
} gs_precision_t;

/* "auto", "cpu", "cuda"; "fp32", "fp16" ("default" for DEFAULT). */
const char *gs_provider_name(gs_provider_t provider);
const char *gs_precision_name(gs_precision_t precision);

/* How a CUDA run's caller waits for its end. */
typedef enum {
  /* cuStreamSynchronize under the context's scheduling flag: the primary
   * context's CU_CTX_SCHED_AUTO spins a core while the process has fewer
   * contexts than cores, which is every worker's case. */
  GS_GPU_WAIT_DRIVER = 0,
  /* Poll the stream (cuStreamQuery), a core spinning: no wake-up. */
  GS_GPU_WAIT_SPIN,
  /* Sleep on a blocking-sync event until the GPU's interrupt wakes the
   * thread: a wake-up's latency, no core held. */
  GS_GPU_WAIT_BLOCK
} gs_gpu_wait_t;

/* "driver", "spin", "block"; gs_gpu_wait_parse: GS_EINVAL naming `what`. */
const char *gs_gpu_wait_name(gs_gpu_wait_t wait);
int gs_gpu_wait_parse(const char *s, const char *what, gs_gpu_wait_t *out,
                      gs_error_t *err);

/* A field left 0 takes its default. */
typedef struct gs_session_options_s {
  size_t max_plan_bytes;     /* memory planned for one input shape set */
  unsigned max_cached_plans; /* plans kept for shape sets seen before */
  gs_provider_t provider;
  gs_precision_t precision;
  int device; /* CUDA device ordinal among the visible ones */
  /* CUDA: run on a green context over SMs [sm_first, sm_first + sm_count)
   * of the process's split of the GPU (sm_count 0: the whole GPU); both
   * multiples of the GPU's green-context group (8 SMs on Hopper). The CPU
   * provider ignores them. */
  unsigned sm_first, sm_count;
  /* CUDA: how a run's end is waited for. The CPU provider ignores it. */
  gs_gpu_wait_t gpu_wait;
} gs_session_options_t;

/* max_plan_bytes 1 GiB, max_cached_plans 16 (at most 1024). */
void gs_session_options_default(gs_session_options_t *opts);

/* Runs one model; not thread-safe (one session per thread). A CUDA
 * session makes its GPU's primary context current in every call, so any
 * thread may call it (one at a time). */
typedef struct gs_session_s gs_session_t;

/* opts may be NULL for the defaults. The model must outlive the session;
 * the caller destroys *out. */
int gs_session_create(gs_session_t **out, const gs_model_t *model,
                      const gs_session_options_t *opts, gs_error_t *err);
void gs_session_destroy(gs_session_t *session);

/* The provider and precision a session runs with (AUTO and DEFAULT
 * resolved: CUDA + FP16, or CPU + FP32). */
gs_provider_t gs_session_provider(const gs_session_t *session);
gs_precision_t gs_session_precision(const gs_session_t *session);

/* Process-wide: the directory where CUDA sessions keep the conv choices
 * they timed, one file per GPU model and software (read at a device's first
 * plan, rewritten after a plan that timed new ones), so that a restarted
 * process plans without timing again. NULL or "" (the default): none. */
int gs_engine_set_conv_cache(const char *dir, gs_error_t *err);

/* What this process finds of the CUDA provider's needs: 0 with a line such
 * as "cuda: driver 13000, cuDNN 91900, cuBLAS libcublas.so.13, kernels
 * 384192 bytes", else the error that makes AUTO choose the CPU. */
int gs_engine_cuda_describe(char *buf, size_t size, gs_error_t *err);

/* Opens the CUDA libraries and GPU device's primary context ahead of the
 * first session there, so that a caller can do it while it reads a model
 * (a restarted worker: both are hundreds of ms); sessions made meanwhile
 * take that context. Each GS_OK holds the context until a matching
 * gs_engine_cuda_close (the last holder gone, it is destroyed: a model
 * that ended up on the CPU keeps no GPU memory). Safe from any thread; the
 * error otherwise is the one a session would get (no driver, no device). */
int gs_engine_cuda_open(int device, gs_error_t *err);
void gs_engine_cuda_close(int device);

/* Infers every tensor's shape and plans memory for this input set, or picks
 * the plan made before for the same shapes. Only shapes, types and sizes of
 * inputs are read, plus the data of inputs that a Reshape takes as its
 * target shape. Inputs are matched by name, or by position when every name
 * is NULL; each model input must be given once. A batch is an input whose
 * leading dimension is N. gs_session_run plans by itself; this call is for
 * planning ahead and for reading output shapes before a run. */
int gs_session_plan(gs_session_t *session, const gs_tensor_t *inputs,
                    size_t n_inputs, gs_error_t *err);

/* Plans (as above) and, on a CUDA session, lays out these shapes on the
 * GPU and grows the session's device memory and staging to them, without
 * choosing conv algorithms or capturing: shape sets planned later that fit
 * in it (the same or smaller batches) keep the graphs captured before
 * them, where growing would make those capture again. For planning the
 * small batches first and the large ones later. The CPU provider plans
 * only. */
int gs_session_reserve(gs_session_t *session, const gs_tensor_t *inputs,
                       size_t n_inputs, gs_error_t *err);
/* After gs_session_reserve: how many of that shape set's convolutions have
 * no choice in the process's conv cache (gs_engine_set_conv_cache's file
 * read): planning it would time cuDNN's algorithms for them. 0 for a CPU
 * session. */
unsigned gs_session_uncached_convs(const gs_session_t *session);

/* Plans (as above) and runs the model on the inputs. An input the model
 * declares FP32 may be given as FP16 instead (half the bytes to move): a
 * CUDA session converts it on the GPU, the CPU provider on the host before
 * the first node; outputs keep the model's types. A CUDA session takes an
 * input in device memory of its GPU (mem GS_MEM_DEVICE) with one
 * device-to-device copy on its stream and no host staging; the CPU
 * provider refuses one (GS_EUNSUPPORTED), as does a CUDA session for an
 * input whose data a Reshape reads as its shape (planning reads it on the
 * host) and for a BYTES input. */
int gs_session_run(gs_session_t *session, const gs_tensor_t *inputs,
                   size_t n_inputs, gs_error_t *err);

/* A host buffer of at least bytes for input i (model order) that the
 * caller fills and then passes, as returned, as that input's data to
 * gs_session_run or gs_session_plan: the run reads it in place. On a CUDA
 * session it is the input's pinned staging, DMA'd to the GPU without the
 * host copy a run makes of other input memory; on the CPU an ordinary
 * buffer the kernels read where it lies. The session owns it: it stays
 * valid, contents kept, until a later call for input i asks for more
 * bytes (which may move it) or the session is destroyed; it must not be
 * written while a run of the session is in progress. Growing a CUDA
 * session's staging makes the shape sets captured before it capture again
 * (algorithms kept): ask for the largest batch first. */
int gs_session_input_buffer(gs_session_t *session, size_t i, size_t bytes,
                            void **out, gs_error_t *err);

/* The CUDA device a session runs on (the ordinal of gs_session_options_t),
 * whose memory its runs take as GS_MEM_DEVICE; -1 on the CPU provider. */
int gs_session_device(const gs_session_t *session);

/* Binds output i of the next gs_session_run (that one run only) to device
 * memory of the session's GPU, bytes long at data (a CUdeviceptr): the run
 * copies the output there on the GPU, device to device, instead of to the
 * host, and gs_session_output gives it there (mem GS_MEM_DEVICE). When the
 * output turns out larger than bytes the binding is not used and the
 * output is in host memory as usual (mem GS_MEM_HOST): the caller checks
 * mem. GS_EUNSUPPORTED on the CPU provider, GS_EINVAL for an i out of
 * range or a NULL data. */
int gs_session_bind_output(gs_session_t *session, size_t i, void *data,
                           size_t bytes, gs_error_t *err);

/* Output i of the last plan or run, in model output order: name, type and
 * shape after gs_session_plan, data too after gs_session_run (a BYTES
 * output's bytes, 0 after a plan, too: its buffer is sized by the run,
 * whatever the plan). NULL when i is
 * out of range or nothing was planned. Valid until the next plan, run or
 * destroy on this session. */
const gs_tensor_t *gs_session_output(const gs_session_t *session, size_t i);

/* Bytes of intermediate memory the current plan uses (0 before a plan). */
size_t gs_session_planned_bytes(const gs_session_t *session);

/* Where the session's time went so far, in ms, for a log: on a GPU
 * "libraries A, context B, cuDNN and cuBLAS C, weights D; runs E (layout F,
 * conv choices G, captures H)", the runs' part summed over every run (the
 * first run of a shape set plans it); "" on the CPU. */
void gs_session_timing(const gs_session_t *session, char *buf, size_t cap);

#endif
