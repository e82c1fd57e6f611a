/* The CUDA driver API (libcuda), loaded at run time: the few declarations
 * gpuslice needs and one list of the functions used, which generates both
 * the function-pointer table and the loader. Never include cuda.h and
 * never link libcuda: one binary runs with or without a driver.
 * Declarations follow cuda.h of CUDA 13.0. */
#ifndef GPUSLICE_CUDA_SHIM_H
#define GPUSLICE_CUDA_SHIM_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuslice/error.h"

/* ---- types (cuda.h) ---------------------------------------------------- */

typedef enum cudaError_enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_NOT_INITIALIZED = 3,
  CUDA_ERROR_NO_DEVICE = 100,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_MPS_CONNECTION_FAILED = 805,
  CUDA_ERROR_UNKNOWN = 999
} CUresult;

typedef int CUdevice;

typedef struct CUuuid_st {
  char bytes[16];
} CUuuid;

typedef enum CUdevice_attribute_enum {
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
} CUdevice_attribute;

/* ---- the functions gpuslice calls --------------------------------------
 * XX(field, return type, parameters, symbol, older symbol): the loader
 * tries `symbol`, then `older symbol` (same signature); every function is
 * required and a missing one fails the load, naming `symbol`. */
#define GS__CUDA_FUNCS(XX)                                                     \
  XX(Init, CUresult, (unsigned), "cuInit", NULL)                               \
  XX(DriverGetVersion, CUresult, (int *), "cuDriverGetVersion", NULL)          \
  XX(DeviceGetCount, CUresult, (int *), "cuDeviceGetCount", NULL)              \
  XX(DeviceGet, CUresult, (CUdevice *, int), "cuDeviceGet", NULL)              \
  XX(DeviceGetAttribute, CUresult, (int *, CUdevice_attribute, CUdevice),      \
     "cuDeviceGetAttribute", NULL)                                             \
  XX(DeviceGetName, CUresult, (char *, int, CUdevice), "cuDeviceGetName",      \
     NULL)                                                                     \
  XX(DeviceTotalMem, CUresult, (size_t *, CUdevice), "cuDeviceTotalMem_v2",    \
     NULL)                                                                     \
  XX(DeviceGetUuid, CUresult, (CUuuid *, CUdevice), "cuDeviceGetUuid_v2",      \
     "cuDeviceGetUuid")                                                        \
  XX(GetErrorString, CUresult, (CUresult, const char **), "cuGetErrorString",  \
     NULL)

/* The loaded library. Fields are the functions, named without "cu". */
typedef struct gs__cuda_s {
  void *dl;
  char path[1024];
  int driver_version; /* cuDriverGetVersion: 13000 is CUDA 13.0 */
#define GS__CUDA_FIELD(field, ret, params, sym, old) ret(*field) params;
  GS__CUDA_FUNCS(GS__CUDA_FIELD)
#undef GS__CUDA_FIELD
} gs__cuda_t;

#define GS__CUDA_DEFAULT_LIBRARY "libcuda.so.1"

/* dlopens path (NULL: libcuda.so.1), resolves every function and calls
 * cuInit(0). A missing library fails with GS_ENODEV ("CUDA driver not
 * found: dlopen ...: <dlerror>"), a missing function with GS_EUNSUPPORTED
 * naming it, a failed cuInit with GS_EDRIVER (GS_ENODEV for "no device").
 * On failure nothing stays loaded. Release with gs__cuda_close(). */
int gs__cuda_open(gs__cuda_t *cuda, const char *path, gs_error_t *err);
void gs__cuda_close(gs__cuda_t *cuda);

/* cuGetErrorString(rc), never NULL. */
const char *gs__cuda_strerror(const gs__cuda_t *cuda, CUresult rc);

/* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as NVML names the GPU. */
void gs__cuda_uuid_format(const CUuuid *uuid, char *buf, size_t size);

/* One GPU as CUDA sees it. */
typedef struct gs__cuda_gpu_s {
  char uuid[48]; /* gs__cuda_uuid_format */
  char name[96];
  unsigned sms;
  unsigned long long memory_bytes;
} gs__cuda_gpu_t;

/* The GPUs CUDA sees, at most max (*n counts those written). */
int gs__cuda_list(const gs__cuda_t *cuda, gs__cuda_gpu_t *out, unsigned max,
                  unsigned *n, gs_error_t *err);

#endif
