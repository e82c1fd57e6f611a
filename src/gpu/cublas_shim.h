/* cuBLAS (libcublas.so.13), loaded at run time: the one GEMM call the
 * engine's CUDA provider makes, from the project's own declarations (never
 * cublas_v2.h, never linked). Declarations follow cublas_api.h of CUDA 13. */
#ifndef GPUSLICE_CUBLAS_SHIM_H
#define GPUSLICE_CUBLAS_SHIM_H

#include <stdint.h>

#include "gpu/cuda_shim.h"
#include "gpuslice/error.h"

typedef int cublasStatus_t; /* CUBLAS_STATUS_SUCCESS is 0 */
#define CUBLAS_STATUS_SUCCESS 0
typedef struct cublasContext *cublasHandle_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 } cublasMath_t;

#define GS__CUBLAS_FUNCS(XX)                                                   \
  XX(Create, cublasStatus_t, (cublasHandle_t *), "cublasCreate_v2")            \
  XX(Destroy, cublasStatus_t, (cublasHandle_t), "cublasDestroy_v2")            \
  XX(SetStream, cublasStatus_t, (cublasHandle_t, CUstream),                    \
     "cublasSetStream_v2")                                                     \
  XX(SetWorkspace, cublasStatus_t, (cublasHandle_t, void *, size_t),           \
     "cublasSetWorkspace_v2")                                                  \
  XX(SetMathMode, cublasStatus_t, (cublasHandle_t, cublasMath_t),              \
     "cublasSetMathMode")                                                      \
  XX(GetStatusString, const char *, (cublasStatus_t), "cublasGetStatusString") \
  XX(GemmEx, cublasStatus_t,                                                   \
     (cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,     \
      const void *, const void *, cudaDataType_t, int, const void *,           \
      cudaDataType_t, int, const void *, void *, cudaDataType_t, int,          \
      cublasComputeType_t, cublasGemmAlgo_t),                                  \
     "cublasGemmEx")

typedef struct gs__cublas_s {
  void *dl;
  char path[256];
#define GS__CUBLAS_FIELD(field, ret, params, sym) ret(*field) params;
  GS__CUBLAS_FUNCS(GS__CUBLAS_FIELD)
#undef GS__CUBLAS_FIELD
} gs__cublas_t;

#define GS__CUBLAS_DEFAULT_LIBRARY "libcublas.so.13"

/* cuBLASLt (libcublasLt.so.13): the matmul with a fused epilogue that the
 * provider runs NHWC 1x1 convolutions as. Declarations follow cublasLt.h. */
typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct {
  uint64_t data[32];
} * cublasLtMatmulDesc_t;
typedef struct {
  uint64_t data[8];
} * cublasLtMatrixLayout_t;
typedef struct {
  uint64_t data[8];
} * cublasLtMatmulPreference_t;
typedef struct {
  uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;
enum {
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1
};
enum {
  CUBLASLT_EPILOGUE_DEFAULT = 1,
  CUBLASLT_EPILOGUE_RELU = 2,
  CUBLASLT_EPILOGUE_BIAS = 4,
  CUBLASLT_EPILOGUE_RELU_BIAS = 6
};

#define GS__CUBLASLT_FUNCS(XX)                                                 \
  XX(Create, cublasStatus_t, (cublasLtHandle_t *), "cublasLtCreate")           \
  XX(GetVersion, size_t, (void), "cublasLtGetVersion")                         \
  XX(Destroy, cublasStatus_t, (cublasLtHandle_t), "cublasLtDestroy")           \
  XX(MatmulDescCreate, cublasStatus_t,                                         \
     (cublasLtMatmulDesc_t *, cublasComputeType_t, cudaDataType_t),            \
     "cublasLtMatmulDescCreate")                                               \
  XX(MatmulDescDestroy, cublasStatus_t, (cublasLtMatmulDesc_t),                \
     "cublasLtMatmulDescDestroy")                                              \
  XX(MatmulDescSetAttribute, cublasStatus_t,                                   \
     (cublasLtMatmulDesc_t, int, const void *, size_t),                        \
     "cublasLtMatmulDescSetAttribute")                                         \
  XX(MatrixLayoutCreate, cublasStatus_t,                                       \
     (cublasLtMatrixLayout_t *, cudaDataType_t, uint64_t, uint64_t, int64_t),  \
     "cublasLtMatrixLayoutCreate")                                             \
  XX(MatrixLayoutDestroy, cublasStatus_t, (cublasLtMatrixLayout_t),            \
     "cublasLtMatrixLayoutDestroy")                                            \
  XX(MatmulPreferenceCreate, cublasStatus_t, (cublasLtMatmulPreference_t *),   \
     "cublasLtMatmulPreferenceCreate")                                         \
  XX(MatmulPreferenceDestroy, cublasStatus_t, (cublasLtMatmulPreference_t),    \
     "cublasLtMatmulPreferenceDestroy")                                        \
  XX(MatmulPreferenceSetAttribute, cublasStatus_t,                             \
     (cublasLtMatmulPreference_t, int, const void *, size_t),                  \
     "cublasLtMatmulPreferenceSetAttribute")                                   \
  XX(MatmulAlgoGetHeuristic, cublasStatus_t,                                   \
     (cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,          \
      cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,  \
      cublasLtMatmulPreference_t, int, cublasLtMatmulHeuristicResult_t *,      \
      int *),                                                                  \
     "cublasLtMatmulAlgoGetHeuristic")                                         \
  XX(Matmul, cublasStatus_t,                                                   \
     (cublasLtHandle_t, cublasLtMatmulDesc_t, const void *, const void *,      \
      cublasLtMatrixLayout_t, const void *, cublasLtMatrixLayout_t,            \
      const void *, const void *, cublasLtMatrixLayout_t, void *,              \
      cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t *, void *, size_t,    \
      CUstream),                                                               \
     "cublasLtMatmul")

typedef struct gs__cublaslt_s {
  void *dl;
  char path[256];
#define GS__CUBLASLT_FIELD(field, ret, params, sym) ret(*field) params;
  GS__CUBLASLT_FUNCS(GS__CUBLASLT_FIELD)
#undef GS__CUBLASLT_FIELD
} gs__cublaslt_t;

#define GS__CUBLASLT_DEFAULT_LIBRARY "libcublasLt.so.13"

/* As gs__cudnn_open, for cuBLASLt (NULL: libcublasLt.so.13). */
int gs__cublaslt_open(gs__cublaslt_t *lt, const char *path, gs_error_t *err);
void gs__cublaslt_close(gs__cublaslt_t *lt);

/* As gs__cudnn_open, for cuBLAS (NULL: libcublas.so.13). */
int gs__cublas_open(gs__cublas_t *cublas, const char *path, gs_error_t *err);
void gs__cublas_close(gs__cublas_t *cublas);
const char *gs__cublas_strerror(const gs__cublas_t *cublas,
                                cublasStatus_t status);

#endif
