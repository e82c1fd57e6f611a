/* cuDNN (libcudnn.so.9), loaded at run time: the legacy convolution API the
 * engine's CUDA provider uses, from the project's own declarations (never
 * cudnn.h, never linked). One list generates the table and the loader.
 * Declarations follow cudnn_graph_v9.h, cudnn_ops_v9.h, cudnn_cnn_v9.h. */
#ifndef GPUSLICE_CUDNN_SHIM_H
#define GPUSLICE_CUDNN_SHIM_H

#include <stddef.h>

#include "gpu/cuda_shim.h"
#include "gpuslice/error.h"

typedef int cudnnStatus_t; /* CUDNN_STATUS_SUCCESS is 0 */
#define CUDNN_STATUS_SUCCESS 0
typedef struct cudnnContext *cudnnHandle_t;
typedef struct cudnnTensorStruct *cudnnTensorDescriptor_t;
typedef struct cudnnFilterStruct *cudnnFilterDescriptor_t;
typedef struct cudnnConvolutionStruct *cudnnConvolutionDescriptor_t;
typedef struct cudnnActivationStruct *cudnnActivationDescriptor_t;

typedef enum { CUDNN_DATA_FLOAT = 0, CUDNN_DATA_HALF = 2 } cudnnDataType_t;
typedef enum {
  CUDNN_TENSOR_NCHW = 0,
  CUDNN_TENSOR_NHWC = 1
} cudnnTensorFormat_t;
typedef enum {
  CUDNN_DEFAULT_MATH = 0,
  CUDNN_TENSOR_OP_MATH = 1,
  CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
  CUDNN_FMA_MATH = 3
} cudnnMathType_t;
typedef enum {
  CUDNN_CONVOLUTION = 0,
  CUDNN_CROSS_CORRELATION = 1
} cudnnConvolutionMode_t;
typedef enum {
  CUDNN_ACTIVATION_RELU = 1,
  CUDNN_ACTIVATION_CLIPPED_RELU = 3,
  CUDNN_ACTIVATION_IDENTITY = 5
} cudnnActivationMode_t;
typedef enum { CUDNN_NOT_PROPAGATE_NAN = 0 } cudnnNanPropagation_t;
typedef int cudnnConvolutionFwdAlgo_t;
#define CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM 1

typedef struct {
  cudnnConvolutionFwdAlgo_t algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  int determinism;
  cudnnMathType_t mathType;
  int reserved[3];
} cudnnConvolutionFwdAlgoPerf_t;

#define GS__CUDNN_FUNCS(XX)                                                    \
  XX(GetVersion, size_t, (void), "cudnnGetVersion")                            \
  XX(GetErrorString, const char *, (cudnnStatus_t), "cudnnGetErrorString")     \
  XX(Create, cudnnStatus_t, (cudnnHandle_t *), "cudnnCreate")                  \
  XX(Destroy, cudnnStatus_t, (cudnnHandle_t), "cudnnDestroy")                  \
  XX(SetStream, cudnnStatus_t, (cudnnHandle_t, CUstream), "cudnnSetStream")    \
  XX(CreateTensorDescriptor, cudnnStatus_t, (cudnnTensorDescriptor_t *),       \
     "cudnnCreateTensorDescriptor")                                            \
  XX(SetTensor4dDescriptor, cudnnStatus_t,                                     \
     (cudnnTensorDescriptor_t, cudnnTensorFormat_t, cudnnDataType_t, int, int, \
      int, int),                                                               \
     "cudnnSetTensor4dDescriptor")                                             \
  XX(DestroyTensorDescriptor, cudnnStatus_t, (cudnnTensorDescriptor_t),        \
     "cudnnDestroyTensorDescriptor")                                           \
  XX(CreateFilterDescriptor, cudnnStatus_t, (cudnnFilterDescriptor_t *),       \
     "cudnnCreateFilterDescriptor")                                            \
  XX(SetFilter4dDescriptor, cudnnStatus_t,                                     \
     (cudnnFilterDescriptor_t, cudnnDataType_t, cudnnTensorFormat_t, int, int, \
      int, int),                                                               \
     "cudnnSetFilter4dDescriptor")                                             \
  XX(DestroyFilterDescriptor, cudnnStatus_t, (cudnnFilterDescriptor_t),        \
     "cudnnDestroyFilterDescriptor")                                           \
  XX(CreateConvolutionDescriptor, cudnnStatus_t,                               \
     (cudnnConvolutionDescriptor_t *), "cudnnCreateConvolutionDescriptor")     \
  XX(SetConvolution2dDescriptor, cudnnStatus_t,                                \
     (cudnnConvolutionDescriptor_t, int, int, int, int, int, int,              \
      cudnnConvolutionMode_t, cudnnDataType_t),                                \
     "cudnnSetConvolution2dDescriptor")                                        \
  XX(SetConvolutionMathType, cudnnStatus_t,                                    \
     (cudnnConvolutionDescriptor_t, cudnnMathType_t),                          \
     "cudnnSetConvolutionMathType")                                            \
  XX(SetConvolutionGroupCount, cudnnStatus_t,                                  \
     (cudnnConvolutionDescriptor_t, int), "cudnnSetConvolutionGroupCount")     \
  XX(DestroyConvolutionDescriptor, cudnnStatus_t,                              \
     (cudnnConvolutionDescriptor_t), "cudnnDestroyConvolutionDescriptor")      \
  XX(CreateActivationDescriptor, cudnnStatus_t,                                \
     (cudnnActivationDescriptor_t *), "cudnnCreateActivationDescriptor")       \
  XX(SetActivationDescriptor, cudnnStatus_t,                                   \
     (cudnnActivationDescriptor_t, cudnnActivationMode_t,                      \
      cudnnNanPropagation_t, double),                                          \
     "cudnnSetActivationDescriptor")                                           \
  XX(DestroyActivationDescriptor, cudnnStatus_t,                               \
     (cudnnActivationDescriptor_t), "cudnnDestroyActivationDescriptor")        \
  XX(GetConvolutionForwardWorkspaceSize, cudnnStatus_t,                        \
     (cudnnHandle_t, cudnnTensorDescriptor_t, cudnnFilterDescriptor_t,         \
      cudnnConvolutionDescriptor_t, cudnnTensorDescriptor_t,                   \
      cudnnConvolutionFwdAlgo_t, size_t *),                                    \
     "cudnnGetConvolutionForwardWorkspaceSize")                                \
  XX(FindConvolutionForwardAlgorithmEx, cudnnStatus_t,                         \
     (cudnnHandle_t, cudnnTensorDescriptor_t, const void *,                    \
      cudnnFilterDescriptor_t, const void *, cudnnConvolutionDescriptor_t,     \
      cudnnTensorDescriptor_t, void *, int, int *,                             \
      cudnnConvolutionFwdAlgoPerf_t *, void *, size_t),                        \
     "cudnnFindConvolutionForwardAlgorithmEx")                                 \
  XX(ConvolutionForward, cudnnStatus_t,                                        \
     (cudnnHandle_t, const void *, cudnnTensorDescriptor_t, const void *,      \
      cudnnFilterDescriptor_t, const void *, cudnnConvolutionDescriptor_t,     \
      cudnnConvolutionFwdAlgo_t, void *, size_t, const void *,                 \
      cudnnTensorDescriptor_t, void *),                                        \
     "cudnnConvolutionForward")                                                \
  XX(ConvolutionBiasActivationForward, cudnnStatus_t,                          \
     (cudnnHandle_t, const void *, cudnnTensorDescriptor_t, const void *,      \
      cudnnFilterDescriptor_t, const void *, cudnnConvolutionDescriptor_t,     \
      cudnnConvolutionFwdAlgo_t, void *, size_t, const void *,                 \
      cudnnTensorDescriptor_t, const void *, cudnnTensorDescriptor_t,          \
      const void *, cudnnActivationDescriptor_t, cudnnTensorDescriptor_t,      \
      void *),                                                                 \
     "cudnnConvolutionBiasActivationForward")

typedef struct gs__cudnn_s {
  void *dl;
  char path[256];
  size_t version; /* cudnnGetVersion: 91900 is 9.19.0 */
#define GS__CUDNN_FIELD(field, ret, params, sym) ret(*field) params;
  GS__CUDNN_FUNCS(GS__CUDNN_FIELD)
#undef GS__CUDNN_FIELD
} gs__cudnn_t;

#define GS__CUDNN_DEFAULT_LIBRARY "libcudnn.so.9"

/* dlopens path (NULL: libcudnn.so.9) and resolves every function: a
 * missing library is GS_ENODEV naming it, a missing function
 * GS_EUNSUPPORTED naming it. On failure nothing stays loaded. */
int gs__cudnn_open(gs__cudnn_t *cudnn, const char *path, gs_error_t *err);
void gs__cudnn_close(gs__cudnn_t *cudnn);
/* cudnnGetErrorString(status), never NULL. */
const char *gs__cudnn_strerror(const gs__cudnn_t *cudnn, cudnnStatus_t status);

#endif
