/* The CUDA provider's session, shared by its load side (cuda_provider.c)
 * and its run side (cuda_graph.c). */
#ifndef GPUSLICE_ENGINE_CUDA_SESSION_INT_H
#define GPUSLICE_ENGINE_CUDA_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "engine/cuda_int.h"

/* The provider's kernels (cuda_kernels.cu), each in _f32 and _f16. */
enum {
  GS__K_IN_NHWC,
  GS__K_OUT_NCHW,
  GS__K_FROM_F32,
  GS__K_TO_F32,
  GS__K_BINARY,
  GS__K_UNARY,
  GS__K_MAXPOOL,
  GS__K_AVGPOOL,
  GS__K_GAP,
  GS__K_SOFTMAX,
  GS__K_MAXPOOL8, /* FP16 only */
  GS__K_CONV_EPI, /* y = act(y + bias + z) after a cudnnConvolutionForward */
  GS__K_CONV_EPI_VEC, /* the same, 16 bytes a thread (c % 8 / c % 4, aligned) */
  GS__K_BINARY_I32,   /* INT32 only, whatever the precision */
  GS__K_COUNT
};

/* How an initializer is uploaded: not at all, as is, as conv weights. */
enum { GS__FORM_NONE, GS__FORM_PLAIN, GS__FORM_CONV_W };

#define GS__BLAS_WS_BYTES ((size_t)32 << 20)
#define GS__DNN_WS_BYTES ((size_t)128 << 20)

/* How a conv runs, chosen at plan as the fastest on its shape: cuDNN's
 * fused act(conv + z + bias) call; cudnnConvolutionForward (any algorithm,
 * tensor cores in FP16) then the provider's epilogue kernel; one cuBLASLt
 * matmul (1x1 convs); or, when none of those could be timed, the plain
 * convolution then bias, residual and activation as elementwise kernels. */
enum {
  GS__CONV_FUSED,
  GS__CONV_EPI,
  GS__CONV_LT,
  GS__CONV_PLAIN,
  GS__CONV_KINDS
};

/* One conv node's cuDNN state for one shape set. */
typedef struct {
  cudnnTensorDescriptor_t x, y, b;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t c;
  cudnnActivationDescriptor_t a;
  int kind;                       /* GS__CONV_* */
  cudnnConvolutionFwdAlgo_t algo; /* FUSED, EPI, PLAIN: the algorithm, */
  size_t ws;                      /* its workspace bytes */
  cudnnMathType_t math;           /* and math type (set on c) */
  /* Each candidate's best time at plan (ms of three calls; INFINITY when
   * it did not run or could not be timed) and whether it ran at all. */
  float ms[GS__CONV_PLAIN];
  bool ran[GS__CONV_PLAIN];
  int cand_algo[GS__CONV_PLAIN]; /* FUSED, EPI: the fastest algorithm */
  /* A 1x1 stride-1 conv as one cuBLASLt matmul with a bias (+ReLU)
   * epilogue and the residual as beta * C. */
  cublasLtMatmulDesc_t md;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t lt_algo;
  size_t lt_ws;
} gs__cuda_conv_t;

/* One input shape set: where its tensors live and its captured graph. */
typedef struct {
  int64_t (*in_dims)[GS_TENSOR_MAX_RANK]; /* per input; the cache key */
  unsigned *in_rank;
  size_t *in_raw, *in_conv; /* per input: offsets in the activation block */
  /* Per input: the type the caller gives (FP32, or FP16 for an FP32 input:
   * part of the cache key), its bytes, and where FP16 data lands before it
   * is widened into in_raw (-1 for FP32). */
  gs_dtype_t *in_dtype;
  size_t *in_bytes, *in_half;
  size_t *out_dev; /* per output: FP32 copy's offset, or -1 */
  /* Per input: read from device memory (copied device to device into
   * place before the launch, no HtoD in the graph); per output: written
   * to bound device memory after it (no DtoH). Part of the cache key. */
  bool *in_dev, *out_bound;
  size_t *pin_out_off;
  size_t act_bytes, pin_out_bytes, dnn_ws_off;
  gs__cuda_conv_t *conv; /* per node */
  CUgraphExec exec;
  unsigned long long used;
} gs__cuda_graph_t;

/* Inputs are copied from pinned staging inside the graph, whatever their
 * size. Measured on an H100 (docs/BENCHMARKS.md), ResNet-50 batch 64 end
 * to end: in the graph 6.97 ms, chunked before the launch (each chunk's
 * DMA overlapping the next chunk's memcpy into staging) 8.83 ms, straight
 * from pageable memory 9.18 ms. Overlap comes from several sessions (one
 * stream each) instead. */

/* Algorithm timing at plan: four groups of one warm-up and three timed
 * calls, the fastest group counts (a GPU still raising its clocks, or a
 * neighbour, should not decide). */
#define GS__TIME_REPS 16

/* Where a session's time went: its making, then its runs (the first run of
 * a shape set plans it: layout, conv choices, capture). */
typedef enum {
  GS__CT_LIBS,        /* the CUDA libraries, opened once a process */
  GS__CT_CONTEXT,     /* the context (green or primary), stream and events */
  GS__CT_HANDLES,     /* cuDNN, cuBLAS(Lt), the workspace, the kernels */
  GS__CT_WEIGHTS,     /* laid out and uploaded, or the shared copy taken */
  GS__CT_RUNS,        /* every run, what follows included */
  GS__CT_LAYOUT,      /* plans: layout and memory */
  GS__CT_CONVS,       /* plans: each conv's algorithm (cached or timed) */
  GS__CT_CONV_CHECKS, /* of those: a cached choice's one eager call */
  GS__CT_CAPTURE,     /* plans: capture and instantiate */
  GS__CT_N
} gs__cuda_time_t;

static inline uint64_t gs__cuda_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct gs__cuda_session_s {
  const gs__cuda_libs_t *l;
  const gs_model_t *m;
  int device, sms;
  bool fp16;
  CUdevice dev;
  CUcontext ctx;
  bool ctx_held;
  unsigned sm_first, sm_count;    /* asked for; sm_count 0: no green context */
  struct gs__cuda_green_s *green; /* cuda_green.c, when sm_count */
  gs_gpu_wait_t wait;             /* how a run's end is waited for */
  CUstream stream;
  CUevent ev[2]; /* timing conv algorithms at plan */
  CUevent done;  /* GS_GPU_WAIT_BLOCK: a blocking-sync event after a run */
  CUmodule module;
  CUfunction fn[GS__K_COUNT][2];
  cudnnHandle_t dnn;
  cublasHandle_t blas;
  cublasLtHandle_t lt;
  CUdeviceptr blas_ws;
  /* Per value: NHWC feature map, initializer form and offset in weights,
   * conv weights' padded input channels, a graph input's padded channels,
   * and (during a plan or capture) the device address. */
  bool *nhwc;
  unsigned char *form;
  size_t *woff;
  int64_t *wpad, *cpad;
  CUdeviceptr *ptr;
  CUdeviceptr weights;
  size_t weights_bytes;
  /* The activation block and pinned staging, shared by every shape set
   * (sized for the largest; growing them makes the other graphs capture
   * again). Input staging is one pinned buffer per input, which callers
   * may fill in place (gs_session_input_buffer). */
  CUdeviceptr act;
  size_t act_cap;
  void **pin_in, *pin_out;
  size_t *pin_in_cap, pin_out_cap;
  gs__cuda_graph_t *graphs;
  unsigned n_graphs, max_graphs;
  unsigned long long tick;
  uint64_t t_ns[GS__CT_N]; /* summed over the session's life */
  unsigned captures;       /* graphs captured, again ones included */
  unsigned uncached;       /* the last reserve's convs without a choice */
};

int gs__cuda_fail(gs__cuda_session_t *cs, CUresult r, const char *call,
                  gs_error_t *err);
int gs__cuda_alloc(gs__cuda_session_t *cs, CUdeviceptr *p, size_t bytes,
                   const char *what, gs_error_t *err);
/* Kernel k in the session's precision over n elements (grid-stride). */
int gs__cuda_launch(gs__cuda_session_t *cs, int k, long n, void **args,
                    gs_error_t *err);
void gs__cuda_graph_release(gs__cuda_session_t *cs, gs__cuda_graph_t *g);
/* Grows input i's pinned staging to at least bytes (graphs that captured
 * the old buffer capture again at their next run). */
int gs__cuda_stage_reserve(gs__cuda_session_t *cs, size_t i, size_t bytes,
                           gs_error_t *err);

/* cuda_conv_cache.c: how a conv of one shape runs, chosen once per
 * process. The key is every input to the choice (device, SMs, precision,
 * shapes, padding, strides, dilations, groups, epilogue), zero-filled
 * before it is set so that keys compare as bytes. */
typedef struct {
  int64_t v[48];
} gs__cuda_conv_key_t;
typedef struct {
  int kind;
  cudnnConvolutionFwdAlgo_t algo;
  size_t ws;
  cudnnMathType_t math;
  float ms[GS__CONV_PLAIN];
  bool ran[GS__CONV_PLAIN];
  int cand_algo[GS__CONV_PLAIN];
  cublasLtMatmulAlgo_t lt_algo; /* plain data: any handle of the process */
  size_t lt_ws;
} gs__cuda_conv_choice_t;
bool gs__cuda_conv_cache_get(const gs__cuda_conv_key_t *key,
                             gs__cuda_conv_choice_t *out);
void gs__cuda_conv_cache_put(const gs__cuda_conv_key_t *key,
                             const gs__cuda_conv_choice_t *choice);
size_t gs__cuda_conv_cache_size(void);
void gs__cuda_conv_cache_clear(void); /* tests */
/* With gs_engine_set_conv_cache's directory: reads the file of session cs's
 * GPU model and software once per device and process (a missing or
 * mismatched file is logged and ignored); the choices taken (0 when there
 * is no file yet), or -1 for a file ignored. */
int gs__cuda_conv_cache_open(const gs__cuda_session_t *cs);
/* The same, for a device's identity (ident: GPU and software; the record
 * sizes are filled in here). */
struct gs__ccf_ident_s;
int gs__cuda_conv_cache_attach(int device, const struct gs__ccf_ident_s *ident);
/* Saves device's choices to its file when a plan timed any since the last
 * save (merged with the file's, atomically); GS_OK when nothing to do. */
int gs__cuda_conv_cache_flush(int device, gs_error_t *err);
/* The key of conv node i on the plan's shapes in session cs. */
void gs__cuda_conv_key(const gs__cuda_session_t *cs,
                       const gs__plan_view_t *plan, size_t i,
                       gs__cuda_conv_key_t *key);

/* cuda_conv.c: conv node i's descriptors and way to run (GS__CONV_*) for
 * the plan's shapes: the process's earlier choice for its key, else timed
 * on the real buffers (cs->ptr bound) and kept for the next session. */
int gs__cuda_conv_prepare(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                          gs__cuda_graph_t *g, size_t i, gs_error_t *err);
/* Frees c's cuBLASLt descriptors and leaves them NULL. */
void gs__cuda_conv_lt_release(const gs__cuda_session_t *cs, gs__cuda_conv_t *c);
/* The fastest candidate that ran (ties and untimed ones go
 * to the earlier of FUSED, EPI, LT), GS__CONV_PLAIN when none ran. */
int gs__cuda_conv_pick(const float ms[GS__CONV_PLAIN],
                       const bool ran[GS__CONV_PLAIN]);
/* The workspace bytes the chosen way of c uses (inside GS__DNN_WS_BYTES). */
size_t gs__cuda_conv_ws(const gs__cuda_conv_t *c);
/* Node n's cuBLASLt matmul (GS__CONV_LT), on the session's stream. */
cublasStatus_t gs__cuda_conv_lt_run(gs__cuda_session_t *cs, const gs__node_t *n,
                                    const gs__cuda_conv_t *c,
                                    const cublasLtMatmulAlgo_t *algo,
                                    size_t ws_bytes, CUdeviceptr ws);
/* The epilogue kernel over conv node n's output y (GS__CONV_EPI): y =
 * act(y + bias + residual) in one pass. */
int gs__cuda_conv_epilogue(gs__cuda_session_t *cs, const gs__node_t *n,
                           const gs__tensor_t *y, gs_error_t *err);
/* What each conv of graph g runs as: a summary line "convs: N fused, M
 * conv+epilogue, K cuBLASLt, P plain; workspace W bytes at most", then a
 * line per conv with its candidates' times; truncated to cap. */
void gs__cuda_conv_report(const gs_model_t *m, const gs__cuda_graph_t *g,
                          char *buf, size_t cap);

/* cuda_ops.c: node i's work issued on the session's stream (also while it
 * is being captured). */
int gs__cuda_issue_node(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                        const gs__cuda_graph_t *g, size_t i, gs_error_t *err);
/* cuda_ops.c, shared with cuda_conv.c: a node the provider refuses, a
 * failed cuDNN call (both naming the node), and value v's device address. */
int gs__cuda_node_fail(const gs__node_t *n, const char *why, gs_error_t *err);
int gs__cuda_dnn_fail(gs__cuda_session_t *cs, const gs__node_t *n,
                      cudnnStatus_t s, const char *call, gs_error_t *err);
void *gs__cuda_dp(const gs__cuda_session_t *cs, int v);

#endif
