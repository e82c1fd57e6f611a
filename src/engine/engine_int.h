/* Internals of the ONNX engine: the checked graph a model becomes, the op
 * table, and the protobuf reading helpers the loader and the tests share. */
#ifndef GPUSLICE_ENGINE_INT_H
#define GPUSLICE_ENGINE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuslice/engine.h"
#include "onnx.pb-c.h"

/* Opsets whose semantics the op set below implements (ai.onnx domain). */
#define GS__OPSET_MIN 7
#define GS__OPSET_MAX 21

/* Deepest message nesting accepted in a protobuf (a model needs 6). */
#define GS__PB_MAX_DEPTH 32

/* A tensor as the ops see it: a type, a shape and, when known, the data. */
typedef struct gs__tensor_s {
  gs_dtype_t dtype;
  unsigned rank;
  int64_t dims[GS_TENSOR_MAX_RANK];
  size_t count; /* elements */
  void *data;   /* NULL when absent (shape-only, or an omitted input) */
  size_t bytes; /* BYTES only: the serialized length of data (engine.h) */
} gs__tensor_t;

typedef enum {
  GS__VALUE_INPUT, /* a graph input: the caller's buffer */
  GS__VALUE_CONST, /* an initializer: owned by the model */
  GS__VALUE_NODE   /* a node output: lives in the session's arena */
} gs__value_kind_t;

typedef struct {
  char *name;
  gs__value_kind_t kind;
  gs_dtype_t dtype;
  int input_index; /* position among the graph inputs, for INPUT values */
  int producer;    /* node position (topological) for NODE values */
  int last_use;    /* last node position that reads it; n_nodes if output */
  bool needs_data; /* its data is read at plan time (a Reshape target) */
  gs__tensor_t constant; /* CONST values: shape and owned data */
} gs__value_t;

/* Spatial dimensions a Conv or pooling node may have (1-D to 3-D). */
#define GS__MAX_SPATIAL 3

typedef enum {
  GS__PAD_NOTSET, /* explicit pads (default) */
  GS__PAD_SAME_UPPER,
  GS__PAD_SAME_LOWER,
  GS__PAD_VALID
} gs__auto_pad_t;

/* An activation fused into a Conv or Gemm at load (model.c), applied after
 * the bias and the fused residual: y = act(conv(x, w) + b + z). */
typedef enum { GS__ACT_NONE, GS__ACT_RELU, GS__ACT_CLIP } gs__act_t;

/* Attributes, read once at load into the fields the node's op uses. */
typedef struct {
  int64_t axis;
  float alpha, beta;
  bool trans_a, trans_b;
  bool allowzero;
  bool softmax_2d; /* Softmax before opset 13: softmax over dims[axis:] */
  unsigned n_perm;
  int64_t perm[GS_TENSOR_MAX_RANK];
  /* Conv, MaxPool, AveragePool, (Global)pools. n_spatial is the number of
   * spatial dims when the attributes give it (kernel_shape), else 0 until
   * the input's rank says it; arrays not given hold ONNX's defaults
   * (strides and dilations 1, pads 0). pads are [begin..., end...]. */
  unsigned n_spatial;
  int64_t kernel[GS__MAX_SPATIAL];
  int64_t strides[GS__MAX_SPATIAL];
  int64_t dilations[GS__MAX_SPATIAL];
  int64_t pads[2 * GS__MAX_SPATIAL];
  int64_t group;
  gs__auto_pad_t auto_pad;
  bool ceil_mode, count_include_pad;
  float epsilon; /* BatchNormalization */
  /* Fusion done at load (model.c), for Conv (and Gemm): act after the bias;
   * Clip's bounds in act_min/act_max; residual > 0 is the position in
   * gs__node_t.in of a fused Add's other operand (Conv: 3, after X, W, B;
   * an omitted B is -1 there); 0 (never a residual: in[0] is X) when no
   * Add was fused. */
  gs__act_t act;
  float act_min, act_max;
  int residual;
  gs_dtype_t to; /* Cast's target type */
} gs__params_t;

/* The geometry of one Conv or pooling node on one input shape: output
 * spatial dims and the pads actually applied (auto_pad resolved). */
typedef struct {
  unsigned n_spatial;
  int64_t batch, in_channels, out_channels, group;
  int64_t in[GS__MAX_SPATIAL], out[GS__MAX_SPATIAL];
  int64_t kernel[GS__MAX_SPATIAL], strides[GS__MAX_SPATIAL],
      dilations[GS__MAX_SPATIAL], pads[2 * GS__MAX_SPATIAL];
} gs__conv_geom_t;

struct gs__node_s;
/* Fills g for node n (Conv, MaxPool, AveragePool) from its input x (NCHW...)
 * and, for Conv, its weight w (M x C/group x k...); w is NULL for pools.
 * Fails naming the node when the shapes do not fit the attributes. Shared by
 * the CPU kernels, shape inference and the GPU provider, so every provider
 * computes the same output shape. */
int gs__conv_geometry(const struct gs__node_s *n, const struct gs__tensor_s *x,
                      const struct gs__tensor_s *w, gs__conv_geom_t *g,
                      gs_error_t *err);

typedef enum {
  GS__OP_MATMUL,
  GS__OP_GEMM,
  GS__OP_ADD,
  GS__OP_SUB,
  GS__OP_MUL,
  GS__OP_DIV,
  GS__OP_RELU,
  GS__OP_SIGMOID,
  GS__OP_TANH,
  GS__OP_SOFTMAX,
  GS__OP_RESHAPE,
  GS__OP_FLATTEN,
  GS__OP_IDENTITY,
  GS__OP_CONCAT,
  GS__OP_TRANSPOSE,
  GS__OP_CONV,
  GS__OP_BATCHNORM,
  GS__OP_MAXPOOL,
  GS__OP_AVGPOOL,
  GS__OP_GLOBALAVGPOOL,
  GS__OP_CLIP,
  GS__OP_CAST
} gs__op_code_t;

typedef struct gs__op_s gs__op_t;

typedef struct gs__node_s {
  char *name;        /* "" when the model gives none */
  unsigned position; /* index in the model file, for messages */
  const gs__op_t *op;
  unsigned n_in;
  int *in; /* value indexes; -1 for an omitted optional input */
  int out; /* every supported op has exactly one output */
  gs__params_t p;
  /* The CPU kernels' copy of a constant W packed for their GEMM
   * (kernels_conv.c), NULL when none; the model owns it. Other providers
   * ignore it. */
  float *cpu_weights;
} gs__node_t;

struct gs__op_s {
  const char *name;
  gs__op_code_t code;
  unsigned min_in, max_in;
  const char *const *attrs; /* attribute names it accepts, NULL-ended */
  int data_input;           /* input read at plan time, -1 for none */
  /* At load: reads attributes into n->p, checks input types, gives the
   * output type. in[i] is GS_DTYPE_INVALID for an omitted input. */
  int (*check)(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
               const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err);
  /* At plan: the output shape from the input shapes (and data_input). */
  int (*shape)(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
               gs_error_t *err);
  int (*run)(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
             gs_error_t *err);
  /* At plan, NULL for none: bytes of scratch run needs (an im2col buffer)
   * for these input and output shapes. The session plans it in its arena,
   * alive during the node only, and passes it to run as in[n->n_in]: a
   * UINT8 tensor of rank 1 whose count is the bytes (64-byte aligned). */
  size_t (*scratch)(const gs__node_t *n, const gs__tensor_t *in,
                    const gs__tensor_t *out);
};

struct gs_model_s {
  gs_model_limits_t limits;
  int opset;
  gs__value_t *values;
  size_t n_values;
  gs__node_t *nodes; /* in topological order */
  size_t n_nodes;
  unsigned max_node_inputs;
  int *inputs; /* value index of each graph input */
  size_t n_inputs;
  int *outputs; /* value index of each graph output */
  size_t n_outputs;
  gs_tensor_info_t *input_info;
  gs_tensor_info_t *output_info;
  /* Of the file's bytes (model_digest.c; 0, 0 when no key could be
   * drawn): models loaded from equal files, such as each green instance's
   * copy of one repository, share their GPU weights (cuda_provider.c). */
  uint64_t digest[2];
};

/* The op table (ops.c). NULL when the op is not supported. */
const gs__op_t *gs__op_find(const char *name);
/* "MatMul, Gemm, ..." for messages. */
const char *gs__op_list(void);

/* "node 'fc1' (Gemm)" or "node #3 (Gemm)", for messages. */
const char *gs__node_label(const gs__node_t *n, char *buf, size_t size);

/* Element count of dims, failing (false) on a negative dimension or when
 * the product of the nonzero dimensions passes max_bytes for elements of
 * esize bytes (so that no loop over a part of the shape runs long). */
bool gs__count(const int64_t *dims, unsigned rank, size_t esize,
               size_t max_bytes, size_t *count);

/* "[2,3,4]", for messages. */
const char *gs__dims_str(const int64_t *dims, unsigned rank, char *buf,
                         size_t size);

/* axis in [-rank, rank + extra) as a position in [0, rank + extra), or -1
 * when out of range. */
int gs__axis(int64_t axis, unsigned rank, unsigned extra);

/* Helpers the op files share (ops.c). */
const Onnx__AttributeProto *gs__attr_find(const Onnx__NodeProto *np,
                                          const char *name);
int gs__attr_int(const gs__node_t *n, const Onnx__NodeProto *np,
                 const char *name, int64_t def, int64_t *v, gs_error_t *err);
int gs__attr_float(const gs__node_t *n, const Onnx__NodeProto *np,
                   const char *name, float def, float *v, gs_error_t *err);
/* Every present input among the first n_check has a type from allowed
 * (GS_DTYPE_INVALID-ended; NULL allows any) and all agree. */
int gs__check_types(const gs__node_t *n, const gs_dtype_t *in, unsigned n_check,
                    const gs_dtype_t *allowed, gs_error_t *err);
int gs__omitted_input(const gs__node_t *n, unsigned k, gs_error_t *err);
/* "<node>: <what> [dims of a] and [dims of b]" as GS_EINVAL; b may be NULL. */
int gs__shape_error(const gs__node_t *n, const gs__tensor_t *a,
                    const gs__tensor_t *b, const char *what, gs_error_t *err);

/* The CNN ops' load checks and shapes (ops_cnn.c), for the op table. */
int gs__check_conv(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err);
int gs__check_pool(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err);
int gs__check_globalpool(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
                         const gs_dtype_t *in, gs_dtype_t *out,
                         gs_error_t *err);
int gs__check_batchnorm(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
                        const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err);
int gs__check_clip(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err);
int gs__shape_conv(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err);
int gs__shape_pool(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err);
int gs__shape_globalpool(const gs__node_t *n, const gs__tensor_t *in,
                         gs__tensor_t *out, gs_error_t *err);
int gs__shape_batchnorm(const gs__node_t *n, const gs__tensor_t *in,
                        gs__tensor_t *out, gs_error_t *err);
int gs__shape_clip(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err);
size_t gs__scratch_conv(const gs__node_t *n, const gs__tensor_t *in,
                        const gs__tensor_t *out);

/* Load-time graph passes (model_fuse.c), run by the loader after the graph
 * is built: BatchNormalization folded into the Conv before it; Add (a
 * same-shape residual) and Relu or Clip fused into a Conv, Relu into a
 * Gemm (see gs__params_t). Removed nodes and the values only they used
 * leave the graph; folded weights are new constants the model owns. */
int gs__fuse_graph(gs_model_t *m, gs_error_t *err);

/* Packs the constant weights of the Conv nodes the CPU's own GEMM runs
 * (kernels_conv.c), once at load, into gs__node_t.cpu_weights. */
int gs__conv_prepack(gs_model_t *m, gs_error_t *err);

/* Kernels (kernels_*.c), one per op, as gs__op_t.run. */
int gs__run_binary(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err);
int gs__run_unary(const gs__node_t *n, const gs__tensor_t *in,
                  gs__tensor_t *out, gs_error_t *err);
int gs__run_softmax(const gs__node_t *n, const gs__tensor_t *in,
                    gs__tensor_t *out, gs_error_t *err);
int gs__run_matmul(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err);
int gs__run_gemm(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err);
int gs__run_copy(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err);
int gs__run_concat(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err);
int gs__run_transpose(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err);
int gs__run_conv(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err);
int gs__run_batchnorm(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err);
int gs__run_clip(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err);
int gs__run_maxpool(const gs__node_t *n, const gs__tensor_t *in,
                    gs__tensor_t *out, gs_error_t *err);
int gs__run_avgpool(const gs__node_t *n, const gs__tensor_t *in,
                    gs__tensor_t *out, gs_error_t *err);
int gs__run_globalavgpool(const gs__node_t *n, const gs__tensor_t *in,
                          gs__tensor_t *out, gs_error_t *err);
/* y = act(y) over count floats, for a node's fused activation. */
void gs__apply_act(const gs__params_t *p, float *y, size_t count);

/* BYTES tensors and element conversions (kernels_cast.c). */

/* Longest decimal form Cast writes for one number ("%.17g" of a double). */
#define GS__NUM_STR_MAX 32

/* Checks that data holds exactly count BYTES elements (4-byte little-endian
 * length, then the bytes) in size bytes; false with the element index where
 * it goes wrong in *bad (count when the data is longer than its elements). */
bool gs__bytes_valid(const void *data, size_t size, size_t count, size_t *bad);

/* IEEE binary16 and bfloat16 to float (exact), and float to them rounding
 * to nearest even (NaN stays NaN). */
float gs__half_to_float(uint16_t h);
uint16_t gs__float_to_half(float f);
float gs__bf16_to_float(uint16_t b);
uint16_t gs__float_to_bf16(float f);

int gs__check_cast(gs__node_t *n, const Onnx__NodeProto *proto, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err);
int gs__run_cast(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err);

/* Protobuf reading (onnx_read.c). */

/* An allocator that fails once a parse has allocated budget bytes, so that
 * a small file cannot make protobuf-c allocate without bound. */
typedef struct {
  ProtobufCAllocator allocator;
  size_t used, budget;
} gs__pb_budget_t;

/* Checks the wire format (well formed, nesting at most GS__PB_MAX_DEPTH)
 * and unpacks it with a budgeted allocator. The caller frees *out with
 * protobuf_c_message_free_unpacked(*out, &budget->allocator). */
int gs__pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                  size_t size, gs__pb_budget_t *budget, ProtobufCMessage **out,
                  gs_error_t *err);

/* The engine's type for an ONNX TensorProto.DataType, or GS_DTYPE_INVALID. */
gs_dtype_t gs__dtype_from_onnx(int32_t onnx_type);
/* ONNX's own name of a data type ("STRING"), for messages. */
const char *gs__onnx_type_name(int32_t onnx_type);

/* Converts a TensorProto into t, which then owns its data (free(t->data)).
 * Takes raw_data out of tp rather than copying it. */
int gs__tensor_from_proto(gs__tensor_t *t, Onnx__TensorProto *tp,
                          size_t max_bytes, gs_error_t *err);

/* Decodes a serialized TensorProto (an input_0.pb of a node test). The
 * caller frees t->data and *name. */
int gs__tensor_decode(gs__tensor_t *t, char **name, const void *data,
                      size_t size, size_t max_bytes, gs_error_t *err);

/* Reads a whole file of at most max_bytes; the caller frees *data. */
int gs__read_file(const char *path, size_t max_bytes, uint8_t **data,
                  size_t *size, gs_error_t *err);

/* A graph input or output's declared type and shape. */
int gs__info_from_value(gs_tensor_info_t *info, const Onnx__ValueInfoProto *v,
                        gs_error_t *err);

#endif
