/* The engine's CUDA provider: the same model and the same shape inference
 * as the CPU, run on a GPU through cuDNN, cuBLAS and the provider's own
 * kernels, each input shape set captured once as a CUDA graph. */
#ifndef GPUSLICE_ENGINE_CUDA_INT_H
#define GPUSLICE_ENGINE_CUDA_INT_H

#include <stddef.h>

#include "engine/engine_int.h"
#include "gpu/cublas_shim.h"
#include "gpu/cuda_shim.h"
#include "gpu/cudnn_shim.h"

typedef struct gs__cuda_session_s gs__cuda_session_t;

/* One input shape set as session.c planned it: every value's shape, and
 * the offset of every node output inside arena_bytes of activations. */
typedef struct {
  const gs__tensor_t *shapes;
  const size_t *offset;
  size_t arena_bytes;
} gs__plan_view_t;

/* The GPU libraries, loaded once per process (NULL paths: the defaults).
 * GS_ENODEV when a library, the driver or a GPU is missing, or when this
 * gpuslice was built without GPU kernels; the message names what. */
typedef struct {
  gs__cuda_t cuda;
  gs__cudnn_t cudnn;
  gs__cublas_t cublas;
  gs__cublaslt_t cublaslt;
} gs__cuda_libs_t;
int gs__cuda_libs(const gs__cuda_libs_t **out, gs_error_t *err);

/* Checks that every node can run on the GPU (an op or attribute it cannot
 * run fails naming the node), uploads the weights in the provider's layout
 * and precision, and makes the stream and library handles. */
int gs__cuda_session_create(gs__cuda_session_t **out, const gs_model_t *model,
                            const gs_session_options_t *opts, gs_error_t *err);
void gs__cuda_session_destroy(gs__cuda_session_t *cs);

/* An output bound to device memory for one run (gs_session_bind_output):
 * ptr 0 for none. */
typedef struct {
  CUdeviceptr ptr;
  size_t bytes;
} gs__cuda_out_bind_t;

/* Runs the model on in (model input order) for the plan's shapes: the
 * first run of a shape set chooses the convolution algorithms and captures
 * a CUDA graph, later runs replay it. An input in device memory (mem
 * GS_MEM_DEVICE) is copied device to device into place before the launch;
 * an output bound in bind (n_outputs entries, or NULL) that can hold it
 * is copied there device to device after it. outputs[o].data is set to
 * that memory (mem DEVICE) or to host memory the session owns, valid
 * until its next run. A shape set run with another mix of device and host
 * tensors captures a graph of its own. */
int gs__cuda_session_run(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                         const gs_tensor_t **in,
                         const gs__cuda_out_bind_t *bind, gs_tensor_t *outputs,
                         gs_error_t *err);

/* Per-node device time of one eager (uncaptured) run of the last shape
 * set, in ms, into ms[n_nodes]; for profiling only. */
int gs__cuda_session_profile(gs__cuda_session_t *cs,
                             const gs__plan_view_t *plan,
                             const gs_tensor_t **in, float *ms,
                             gs_error_t *err);

/* Lays out the shape set of plan and in and grows the session's memory
 * and staging to it, with no conv choices and no capture: graphs captured
 * later for it or smaller sets keep their addresses. */
int gs__cuda_session_reserve(gs__cuda_session_t *cs,
                             const gs__plan_view_t *plan,
                             const gs_tensor_t **in, gs_error_t *err);
/* Replays the graph of the plan's shape set iters times back to back
 * (inputs as last staged) and gives the device time of all, in ms: what
 * the GPU sustains without the host copies; for benchmarks. */
int gs__cuda_session_replay(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                            const gs_tensor_t **in, int iters, float *ms,
                            gs_error_t *err);
/* Input i's pinned staging, at least bytes (gs_session_input_buffer). */
int gs__cuda_session_input_buffer(gs__cuda_session_t *cs, size_t i,
                                  size_t bytes, void **out, gs_error_t *err);
int gs__session_gpu_replay(gs_session_t *s, const gs_tensor_t *inputs,
                           size_t n_inputs, int iters, float *ms,
                           gs_error_t *err);

/* gs__cuda_session_profile through a session (session.c): plans the
 * inputs, then times each node; ms has gs_model_node_count entries. */
int gs__session_gpu_profile(gs_session_t *s, const gs_tensor_t *inputs,
                            size_t n_inputs, float *ms, gs_error_t *err);

/* What each conv of the most recently run shape set runs as (cuDNN's
 * fused call, the unfused call and the epilogue kernel, cuBLASLt) and each
 * candidate's time at plan: a summary line "convs: N fused, M
 * conv+epilogue, K cuBLASLt, P plain; ...", then a line per conv;
 * truncated to cap. GS_EINVAL before the first run. */
int gs__cuda_session_conv_report(const gs__cuda_session_t *cs, char *buf,
                                 size_t cap, gs_error_t *err);
int gs__session_gpu_conv_report(const gs_session_t *s, char *buf, size_t cap,
                                gs_error_t *err);

/* Where a CUDA session's time went, in ms: "libraries A, context B,
 * cuDNN and cuBLAS C, weights D; runs E (layout F, conv choices G,
 * captures H)"; "" for a CPU session. */
void gs__cuda_session_timing(const gs__cuda_session_t *cs, char *buf,
                             size_t cap);

/* The device address and size of a CUDA session's weights, 0 for a CPU
 * session: equal addresses are one shared copy (engine_bench_gpu share). */
uintptr_t gs__cuda_session_weights(const gs__cuda_session_t *cs, size_t *bytes);
unsigned gs__cuda_session_captures(const gs__cuda_session_t *cs);
unsigned gs__cuda_session_uncached(const gs__cuda_session_t *cs);
uintptr_t gs__session_gpu_weights(const gs_session_t *s, size_t *bytes);
/* How many graphs a CUDA session has captured (a shape set captured again
 * counts again); 0 for a CPU session. */
unsigned gs__session_gpu_captures(const gs_session_t *s);

/* The window geometry the pooling kernels take (cuda_kernels.cu's
 * pool_geom, field for field): NHWC x [n,h,w,c] to y [n,oh,ow,c], begin
 * pads ph/pw and end pads ph_end/pw_end (asymmetric as ONNX resolves them:
 * explicit pads, SAME_UPPER, SAME_LOWER, ceil_mode). */
typedef struct {
  int n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  int count_include_pad, ph_end, pw_end;
} gs__cuda_pool_geom_t;

/* Node n's (MaxPool, AveragePool) geometry on input x (the plan's NCHW
 * shape) with output y; fails naming the node when it cannot run. */
int gs__cuda_pool_geom(const gs__node_t *n, const gs__tensor_t *x,
                       const gs__tensor_t *y, gs__cuda_pool_geom_t *g,
                       gs_error_t *err);

/* Softmax node n on x as (outer, len, inner): softmax over len elements
 * spaced inner apart (opset 13: the axis alone; before: dims[axis:] as one
 * row, inner 1), as the CPU provider computes it. */
void gs__cuda_softmax_dims(const gs__node_t *n, const gs__tensor_t *x,
                           int *outer, int *len, int *inner);

/* The embedded kernels (cuda_kernels.cu, via cmake/embed_file.cmake). */
extern const unsigned char gs__cuda_fatbin[];
extern const size_t gs__cuda_fatbin_size;

#endif
