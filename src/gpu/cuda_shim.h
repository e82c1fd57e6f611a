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
  CUDA_ERROR_NOT_READY = 600,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_MPS_CONNECTION_FAILED = 805,
  CUDA_ERROR_UNKNOWN = 999
} CUresult;

typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

/* cuStreamCreate flags, cuEventCreate flags, cuStreamBeginCapture modes. */
#define CU_STREAM_NON_BLOCKING 0x1u
#define CU_EVENT_DEFAULT 0x0u
#define CU_EVENT_BLOCKING_SYNC 0x1u
#define CU_EVENT_DISABLE_TIMING 0x2u
typedef enum CUstreamCaptureMode_enum {
  CU_STREAM_CAPTURE_MODE_GLOBAL = 0,
  CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
  CU_STREAM_CAPTURE_MODE_RELAXED = 2
} CUstreamCaptureMode;

typedef struct CUuuid_st {
  char bytes[16];
} CUuuid;

/* Green contexts (CUDA 12.4+): an SM resource, split into groups, turned
 * into a descriptor and a context that runs only on those SMs. */
typedef struct CUgreenCtx_st *CUgreenCtx;
typedef struct CUdevResourceDesc_st *CUdevResourceDesc;
typedef enum CUdevResourceType_enum {
  CU_DEV_RESOURCE_TYPE_INVALID = 0,
  CU_DEV_RESOURCE_TYPE_SM = 1
} CUdevResourceType;
typedef struct CUdevSmResource_st {
  unsigned smCount;
  unsigned minSmPartitionSize;     /* CUDA 13; 0 from older drivers */
  unsigned smCoscheduledAlignment; /* CUDA 13; 0 from older drivers */
} CUdevSmResource;
typedef struct CUdevResource_st {
  CUdevResourceType type;
  unsigned char internal_padding[92];
  union {
    CUdevSmResource sm;
    unsigned char oversize[48];
  };
} CUdevResource;
#define CU_GREEN_CTX_DEFAULT_STREAM 0x1u

typedef enum CUdevice_attribute_enum {
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
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

/* What running kernels needs beyond that (the engine's CUDA provider):
 * resolved by gs__cuda_load_compute, so that the device readout keeps
 * working with drivers (and test fakes) that lack them. */
#define GS__CUDA_COMPUTE_FUNCS(XX)                                             \
  XX(DevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice),                \
     "cuDevicePrimaryCtxRetain", NULL)                                         \
  XX(DevicePrimaryCtxRelease, CUresult, (CUdevice),                            \
     "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")              \
  XX(CtxSetCurrent, CUresult, (CUcontext), "cuCtxSetCurrent", NULL)            \
  XX(MemGetInfo, CUresult, (size_t *, size_t *), "cuMemGetInfo_v2", NULL)      \
  XX(MemAlloc, CUresult, (CUdeviceptr *, size_t), "cuMemAlloc_v2", NULL)       \
  XX(MemFree, CUresult, (CUdeviceptr), "cuMemFree_v2", NULL)                   \
  XX(MemAllocHost, CUresult, (void **, size_t), "cuMemAllocHost_v2", NULL)     \
  XX(MemFreeHost, CUresult, (void *), "cuMemFreeHost", NULL)                   \
  XX(MemcpyHtoD, CUresult, (CUdeviceptr, const void *, size_t),                \
     "cuMemcpyHtoD_v2", NULL)                                                  \
  XX(MemcpyDtoH, CUresult, (void *, CUdeviceptr, size_t), "cuMemcpyDtoH_v2",   \
     NULL)                                                                     \
  XX(MemcpyHtoDAsync, CUresult, (CUdeviceptr, const void *, size_t, CUstream), \
     "cuMemcpyHtoDAsync_v2", NULL)                                             \
  XX(MemcpyDtoHAsync, CUresult, (void *, CUdeviceptr, size_t, CUstream),       \
     "cuMemcpyDtoHAsync_v2", NULL)                                             \
  XX(MemcpyDtoDAsync, CUresult, (CUdeviceptr, CUdeviceptr, size_t, CUstream),  \
     "cuMemcpyDtoDAsync_v2", NULL)                                             \
  XX(MemsetD8Async, CUresult, (CUdeviceptr, unsigned char, size_t, CUstream),  \
     "cuMemsetD8Async", NULL)                                                  \
  XX(StreamCreate, CUresult, (CUstream *, unsigned), "cuStreamCreate", NULL)   \
  XX(StreamDestroy, CUresult, (CUstream), "cuStreamDestroy_v2", NULL)          \
  XX(StreamSynchronize, CUresult, (CUstream), "cuStreamSynchronize", NULL)     \
  XX(StreamQuery, CUresult, (CUstream), "cuStreamQuery", NULL)                 \
  XX(StreamBeginCapture, CUresult, (CUstream, CUstreamCaptureMode),            \
     "cuStreamBeginCapture_v2", NULL)                                          \
  XX(StreamEndCapture, CUresult, (CUstream, CUgraph *), "cuStreamEndCapture",  \
     NULL)                                                                     \
  XX(EventCreate, CUresult, (CUevent *, unsigned), "cuEventCreate", NULL)      \
  XX(EventDestroy, CUresult, (CUevent), "cuEventDestroy_v2", NULL)             \
  XX(EventRecord, CUresult, (CUevent, CUstream), "cuEventRecord", NULL)        \
  XX(EventSynchronize, CUresult, (CUevent), "cuEventSynchronize", NULL)        \
  XX(EventElapsedTime, CUresult, (float *, CUevent, CUevent),                  \
     "cuEventElapsedTime_v2", "cuEventElapsedTime")                            \
  XX(GraphInstantiate, CUresult, (CUgraphExec *, CUgraph, unsigned long long), \
     "cuGraphInstantiateWithFlags", NULL)                                      \
  XX(GraphLaunch, CUresult, (CUgraphExec, CUstream), "cuGraphLaunch", NULL)    \
  XX(GraphExecDestroy, CUresult, (CUgraphExec), "cuGraphExecDestroy", NULL)    \
  XX(GraphDestroy, CUresult, (CUgraph), "cuGraphDestroy", NULL)                \
  XX(ModuleLoadData, CUresult, (CUmodule *, const void *), "cuModuleLoadData", \
     NULL)                                                                     \
  XX(ModuleUnload, CUresult, (CUmodule), "cuModuleUnload", NULL)               \
  XX(ModuleGetFunction, CUresult, (CUfunction *, CUmodule, const char *),      \
     "cuModuleGetFunction", NULL)                                              \
  XX(LaunchKernel, CUresult,                                                   \
     (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,  \
      unsigned, CUstream, void **, void **),                                   \
     "cuLaunchKernel", NULL)

/* Green contexts: resolved by gs__cuda_green_load into a table of their
 * own, only when a session asks for an SM partition, so that drivers older
 * than CUDA 12.4 keep running everything else. */
#define GS__CUDA_GREEN_FUNCS(XX)                                               \
  XX(DeviceGetDevResource, CUresult,                                           \
     (CUdevice, CUdevResource *, CUdevResourceType), "cuDeviceGetDevResource", \
     NULL)                                                                     \
  XX(DevSmResourceSplitByCount, CUresult,                                      \
     (CUdevResource *, unsigned *, const CUdevResource *, CUdevResource *,     \
      unsigned, unsigned),                                                     \
     "cuDevSmResourceSplitByCount", NULL)                                      \
  XX(DevResourceGenerateDesc, CUresult,                                        \
     (CUdevResourceDesc *, CUdevResource *, unsigned),                         \
     "cuDevResourceGenerateDesc", NULL)                                        \
  XX(GreenCtxCreate, CUresult,                                                 \
     (CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned),                    \
     "cuGreenCtxCreate", NULL)                                                 \
  XX(GreenCtxDestroy, CUresult, (CUgreenCtx), "cuGreenCtxDestroy", NULL)       \
  XX(CtxFromGreenCtx, CUresult, (CUcontext *, CUgreenCtx),                     \
     "cuCtxFromGreenCtx", NULL)                                                \
  XX(GreenCtxStreamCreate, CUresult, (CUstream *, CUgreenCtx, unsigned, int),  \
     "cuGreenCtxStreamCreate", NULL)

/* CUDA IPC (the worker's CUDA shared memory): another process's
 * allocation opened from its cudaIpcMemHandle_t (the driver's
 * CUipcMemHandle, 64 bytes), with what copying to and from it needs, and
 * the client's side (gpuslice perf --shared-memory cuda: an allocation
 * and its handle); an opened allocation's size checks a region's
 * byte_size at register (cuMemGetAddressRange), as Triton does.
 * Resolved apart (gs__cuda_ipc_load), so that drivers and test fakes
 * without them keep everything else working. */
typedef struct CUipcMemHandle_st {
  char reserved[64];
} CUipcMemHandle;
#define CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS 0x1u
#define GS__CUDA_IPC_FUNCS(XX)                                                 \
  XX(IpcOpenMemHandle, CUresult, (CUdeviceptr *, CUipcMemHandle, unsigned),    \
     "cuIpcOpenMemHandle_v2", "cuIpcOpenMemHandle")                            \
  XX(IpcCloseMemHandle, CUresult, (CUdeviceptr), "cuIpcCloseMemHandle", NULL)  \
  XX(DevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice),                \
     "cuDevicePrimaryCtxRetain", NULL)                                         \
  XX(DevicePrimaryCtxRelease, CUresult, (CUdevice),                            \
     "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")              \
  XX(CtxSetCurrent, CUresult, (CUcontext), "cuCtxSetCurrent", NULL)            \
  XX(MemcpyHtoD, CUresult, (CUdeviceptr, const void *, size_t),                \
     "cuMemcpyHtoD_v2", NULL)                                                  \
  XX(MemcpyDtoH, CUresult, (void *, CUdeviceptr, size_t), "cuMemcpyDtoH_v2",   \
     NULL)                                                                     \
  XX(MemAlloc, CUresult, (CUdeviceptr *, size_t), "cuMemAlloc_v2", NULL)       \
  XX(MemFree, CUresult, (CUdeviceptr), "cuMemFree_v2", NULL)                   \
  XX(IpcGetMemHandle, CUresult, (CUipcMemHandle *, CUdeviceptr),               \
     "cuIpcGetMemHandle", NULL)                                                \
  XX(MemGetAddressRange, CUresult, (CUdeviceptr *, size_t *, CUdeviceptr),     \
     "cuMemGetAddressRange_v2", NULL)

/* The loaded library. Fields are the functions, named without "cu". */
typedef struct gs__cuda_s {
  void *dl;
  char path[1024];
  int driver_version; /* cuDriverGetVersion: 13000 is CUDA 13.0 */
#define GS__CUDA_FIELD(field, ret, params, sym, old) ret(*field) params;
  GS__CUDA_FUNCS(GS__CUDA_FIELD)
  GS__CUDA_COMPUTE_FUNCS(GS__CUDA_FIELD)
#undef GS__CUDA_FIELD
  bool compute; /* gs__cuda_load_compute succeeded */
} gs__cuda_t;

#define GS__CUDA_DEFAULT_LIBRARY "libcuda.so.1"

/* dlopens path (NULL: libcuda.so.1), resolves every function and calls
 * cuInit(0). A missing library fails with GS_ENODEV ("CUDA driver not
 * found: dlopen ...: <dlerror>"), a missing function with GS_EUNSUPPORTED
 * naming it, a failed cuInit with GS_EDRIVER (GS_ENODEV for "no device").
 * On failure nothing stays loaded. Release with gs__cuda_close(). */
int gs__cuda_open(gs__cuda_t *cuda, const char *path, gs_error_t *err);
void gs__cuda_close(gs__cuda_t *cuda);

/* Resolves GS__CUDA_COMPUTE_FUNCS on an open driver; a missing function
 * fails with GS_EUNSUPPORTED naming it (and leaves compute false). */
int gs__cuda_load_compute(gs__cuda_t *cuda, gs_error_t *err);

/* The green-context functions of an open driver. */
typedef struct gs__cuda_green_fns_s {
#define GS__CUDA_FIELD(field, ret, params, sym, old) ret(*field) params;
  GS__CUDA_GREEN_FUNCS(GS__CUDA_FIELD)
#undef GS__CUDA_FIELD
} gs__cuda_green_fns_t;

/* Resolves GS__CUDA_GREEN_FUNCS from cuda's library into *out; a missing
 * one fails with GS_EDRIVER naming it and the driver it needs (an error
 * that never makes a session fall back to the CPU unnoticed). */
int gs__cuda_green_load(const gs__cuda_t *cuda, gs__cuda_green_fns_t *out,
                        gs_error_t *err);

/* The IPC functions of an open driver. */
typedef struct gs__cuda_ipc_fns_s {
#define GS__CUDA_FIELD(field, ret, params, sym, old) ret(*field) params;
  GS__CUDA_IPC_FUNCS(GS__CUDA_FIELD)
#undef GS__CUDA_FIELD
} gs__cuda_ipc_fns_t;

/* Resolves GS__CUDA_IPC_FUNCS from cuda's library into *out; a missing one
 * fails with GS_EUNSUPPORTED naming it. */
int gs__cuda_ipc_load(const gs__cuda_t *cuda, gs__cuda_ipc_fns_t *out,
                      gs_error_t *err);

/* The granularity green contexts split a GPU's SMs at: the smallest
 * multiple of `alignment` that is at least `min_partition` (both 0, as
 * drivers before CUDA 13 report: 8, the CUDA docs' figure for compute
 * capability 9.0+, also a legal size on older GPUs). */
unsigned gs__cuda_green_unit(unsigned min_partition, unsigned alignment);

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
