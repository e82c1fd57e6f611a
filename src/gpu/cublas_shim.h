/* cuBLAS (libcublas.so.13), loaded at run time: the one GEMM call the
 * engine's CUDA provider makes, from the project's own declarations (never
 * cublas_v2.h, never linked). Declarations follow cublas_api.h of CUDA 13. */
#ifndef GPUSLICE_CUBLAS_SHIM_H
#define GPUSLICE_CUBLAS_SHIM_H

#include "gpu/cuda_shim.h"
#include "gpuslice/error.h"

typedef int cublasStatus_t; /* CUBLAS_STATUS_SUCCESS is 0 */
#define CUBLAS_STATUS_SUCCESS 0
typedef struct cublasContext *cublasHandle_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_PEDANTIC_MATH = 2
} cublasMath_t;

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

/* As gs__cudnn_open, for cuBLAS (NULL: libcublas.so.13). */
int gs__cublas_open(gs__cublas_t *cublas, const char *path, gs_error_t *err);
void gs__cublas_close(gs__cublas_t *cublas);
const char *gs__cublas_strerror(const gs__cublas_t *cublas,
                                cublasStatus_t status);

#endif
