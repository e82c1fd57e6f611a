/* NVML, loaded at run time: the few declarations gpuslice needs and one
 * list of the functions used, which generates both the function-pointer
 * table and the loader. Never include nvml.h and never link libnvidia-ml:
 * one binary runs with or without a driver. Declarations follow nvml.h of
 * NVML 12.2 (CUDA 12.2.140); the v3 profile structs and the profile
 * indices up to 0x10 follow NVML 12.9 / 13.0 (driver R575-R580). A struct
 * keeps its layout once released; nvml_shim.c checks the sizes. */
#ifndef GPUSLICE_NVML_SHIM_H
#define GPUSLICE_NVML_SHIM_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuslice/error.h"

/* ---- types (nvml.h) ---------------------------------------------------- */

typedef enum nvmlReturn_enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_NO_PERMISSION = 4,
  NVML_ERROR_NOT_FOUND = 6,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_TIMEOUT = 10,
  NVML_ERROR_FUNCTION_NOT_FOUND = 13,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_ERROR_RESET_REQUIRED = 16,
  NVML_ERROR_IN_USE = 19,
  NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
  NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
  NVML_ERROR_UNKNOWN = 999
} nvmlReturn_t;

typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlGpuInstance_st *nvmlGpuInstance_t;
typedef struct nvmlComputeInstance_st *nvmlComputeInstance_t;

#define NVML_DEVICE_NAME_V2_BUFFER_SIZE 96
#define NVML_DEVICE_UUID_V2_BUFFER_SIZE 96
#define NVML_VALUE_NOT_AVAILABLE_ULL (~0ULL)
#define NVML_DEVICE_MIG_DISABLE 0x0
#define NVML_DEVICE_MIG_ENABLE 0x1

/* Profile indices: NVML_GPU_INSTANCE_PROFILE_1_SLICE (0) .. _2_SLICE_ALL_ME
 * (0x10). Older drivers answer the newer indices with an error. */
#define NVML_GPU_INSTANCE_PROFILE_COUNT 0x11
#define NVML_COMPUTE_INSTANCE_PROFILE_COUNT 0x8
#define NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED 0x0

#define NVML_STRUCT_VERSION(size, ver)                                         \
  ((unsigned)(size) | ((unsigned)(ver) << 24))

typedef struct nvmlPciInfo_st {
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId; /* 16-bit device ID << 16 | vendor 0x10DE */
  unsigned int pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

typedef struct nvmlMemory_st {
  unsigned long long total, free, used; /* bytes */
} nvmlMemory_t;

/* nvmlProcessInfo_v2_t, what the _v2 and _v3 process queries fill. */
typedef struct nvmlProcessInfo_st {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;     /* 0xFFFFFFFF when not MIG */
  unsigned int computeInstanceId; /* 0xFFFFFFFF when not MIG */
} nvmlProcessInfo_t;

/* nvmlDeviceGetProcessUtilization's sample: one per process that used the
 * GPU in the last sample period; timeStamp is CPU time in microseconds,
 * the others percent of that period. */
typedef struct nvmlProcessUtilizationSample_st {
  unsigned int pid;
  unsigned long long timeStamp;
  unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct nvmlGpuInstancePlacement_st {
  unsigned int start, size; /* memory slices */
} nvmlGpuInstancePlacement_t;

/* v1: nvmlDeviceGetGpuInstanceProfileInfo (no version, no name). */
typedef struct nvmlGpuInstanceProfileInfo_st {
  unsigned int id, isP2pSupported, sliceCount, instanceCount;
  unsigned int multiprocessorCount, copyEngineCount, decoderCount;
  unsigned int encoderCount, jpegCount, ofaCount;
  unsigned long long memorySizeMB;
} nvmlGpuInstanceProfileInfo_t;

typedef struct nvmlGpuInstanceProfileInfo_v2_st {
  unsigned int version, id, isP2pSupported, sliceCount, instanceCount;
  unsigned int multiprocessorCount, copyEngineCount, decoderCount;
  unsigned int encoderCount, jpegCount, ofaCount;
  unsigned long long memorySizeMB;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
} nvmlGpuInstanceProfileInfo_v2_t;

typedef struct nvmlGpuInstanceProfileInfo_v3_st {
  unsigned int version, id, sliceCount, instanceCount;
  unsigned int multiprocessorCount, copyEngineCount, decoderCount;
  unsigned int encoderCount, jpegCount, ofaCount;
  unsigned long long memorySizeMB;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE]; /* "MIG 1g.10gb" */
  unsigned int capabilities;
} nvmlGpuInstanceProfileInfo_v3_t;

#define nvmlGpuInstanceProfileInfo_v2                                          \
  NVML_STRUCT_VERSION(sizeof(nvmlGpuInstanceProfileInfo_v2_t), 2)
#define nvmlGpuInstanceProfileInfo_v3                                          \
  NVML_STRUCT_VERSION(sizeof(nvmlGpuInstanceProfileInfo_v3_t), 3)

typedef struct nvmlGpuInstanceInfo_st {
  nvmlDevice_t device;
  unsigned int id;
  unsigned int profileId;
  nvmlGpuInstancePlacement_t placement;
} nvmlGpuInstanceInfo_t;

typedef struct nvmlComputeInstancePlacement_st {
  unsigned int start, size; /* compute slices of the GPU instance */
} nvmlComputeInstancePlacement_t;

typedef struct nvmlComputeInstanceProfileInfo_st {
  unsigned int id, sliceCount, instanceCount, multiprocessorCount;
  unsigned int sharedCopyEngineCount, sharedDecoderCount;
  unsigned int sharedEncoderCount, sharedJpegCount, sharedOfaCount;
} nvmlComputeInstanceProfileInfo_t;

typedef struct nvmlComputeInstanceProfileInfo_v2_st {
  unsigned int version, id, sliceCount, instanceCount, multiprocessorCount;
  unsigned int sharedCopyEngineCount, sharedDecoderCount;
  unsigned int sharedEncoderCount, sharedJpegCount, sharedOfaCount;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
} nvmlComputeInstanceProfileInfo_v2_t;

typedef struct nvmlComputeInstanceProfileInfo_v3_st {
  unsigned int version, id, sliceCount, instanceCount, multiprocessorCount;
  unsigned int sharedCopyEngineCount, sharedDecoderCount;
  unsigned int sharedEncoderCount, sharedJpegCount, sharedOfaCount;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  unsigned int capabilities;
} nvmlComputeInstanceProfileInfo_v3_t;

#define nvmlComputeInstanceProfileInfo_v2                                      \
  NVML_STRUCT_VERSION(sizeof(nvmlComputeInstanceProfileInfo_v2_t), 2)
#define nvmlComputeInstanceProfileInfo_v3                                      \
  NVML_STRUCT_VERSION(sizeof(nvmlComputeInstanceProfileInfo_v3_t), 3)

typedef struct nvmlComputeInstanceInfo_st {
  nvmlDevice_t device;
  nvmlGpuInstance_t gpuInstance;
  unsigned int id;
  unsigned int profileId;
  nvmlComputeInstancePlacement_t placement;
} nvmlComputeInstanceInfo_t;

/* Events (the device plugin's XID watch). */
typedef struct nvmlEventSet_st *nvmlEventSet_t;
#define nvmlEventTypeXidCriticalError 0x0000000000000008ULL

typedef struct nvmlEventData_st {
  nvmlDevice_t device;
  unsigned long long eventType;
  unsigned long long eventData;   /* the XID */
  unsigned int gpuInstanceId;     /* 0xFFFFFFFF: the whole GPU */
  unsigned int computeInstanceId; /* 0xFFFFFFFF: the whole GPU */
} nvmlEventData_t;

/* ---- the functions gpuslice calls --------------------------------------
 * XX(field, required, return type, parameters, symbol, older symbol): the
 * loader tries `symbol`, then `older symbol` (same signature); a required
 * function missing under both names fails the load, naming `symbol`. An
 * optional one leaves its pointer NULL: check before calling. */
#define GS__NVML_FUNCS(XX)                                                     \
  XX(Init, 1, nvmlReturn_t, (void), "nvmlInit_v2", "nvmlInit")                 \
  XX(Shutdown, 1, nvmlReturn_t, (void), "nvmlShutdown", NULL)                  \
  XX(ErrorString, 1, const char *, (nvmlReturn_t), "nvmlErrorString", NULL)    \
  XX(DeviceGetCount, 1, nvmlReturn_t, (unsigned *), "nvmlDeviceGetCount_v2",   \
     "nvmlDeviceGetCount")                                                     \
  XX(DeviceGetHandleByIndex, 1, nvmlReturn_t, (unsigned, nvmlDevice_t *),      \
     "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex")            \
  XX(DeviceGetName, 1, nvmlReturn_t, (nvmlDevice_t, char *, unsigned),         \
     "nvmlDeviceGetName", NULL)                                                \
  XX(DeviceGetUUID, 1, nvmlReturn_t, (nvmlDevice_t, char *, unsigned),         \
     "nvmlDeviceGetUUID", NULL)                                                \
  XX(DeviceGetPciInfo, 1, nvmlReturn_t, (nvmlDevice_t, nvmlPciInfo_t *),       \
     "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2")                     \
  XX(DeviceGetMemoryInfo, 1, nvmlReturn_t, (nvmlDevice_t, nvmlMemory_t *),     \
     "nvmlDeviceGetMemoryInfo", NULL)                                          \
  XX(DeviceGetMigMode, 1, nvmlReturn_t,                                        \
     (nvmlDevice_t, unsigned *, unsigned *), "nvmlDeviceGetMigMode", NULL)     \
  XX(DeviceSetMigMode, 1, nvmlReturn_t,                                        \
     (nvmlDevice_t, unsigned, nvmlReturn_t *), "nvmlDeviceSetMigMode", NULL)   \
  XX(DeviceGetGpuInstanceProfileInfoV, 0, nvmlReturn_t,                        \
     (nvmlDevice_t, unsigned, nvmlGpuInstanceProfileInfo_v2_t *),              \
     "nvmlDeviceGetGpuInstanceProfileInfoV", NULL)                             \
  XX(DeviceGetGpuInstanceProfileInfo, 0, nvmlReturn_t,                         \
     (nvmlDevice_t, unsigned, nvmlGpuInstanceProfileInfo_t *),                 \
     "nvmlDeviceGetGpuInstanceProfileInfo", NULL)                              \
  XX(DeviceGetGpuInstancePossiblePlacements, 1, nvmlReturn_t,                  \
     (nvmlDevice_t, unsigned, nvmlGpuInstancePlacement_t *, unsigned *),       \
     "nvmlDeviceGetGpuInstancePossiblePlacements_v2",                          \
     "nvmlDeviceGetGpuInstancePossiblePlacements")                             \
  XX(DeviceGetGpuInstanceRemainingCapacity, 0, nvmlReturn_t,                   \
     (nvmlDevice_t, unsigned, unsigned *),                                     \
     "nvmlDeviceGetGpuInstanceRemainingCapacity", NULL)                        \
  XX(DeviceCreateGpuInstanceWithPlacement, 1, nvmlReturn_t,                    \
     (nvmlDevice_t, unsigned, const nvmlGpuInstancePlacement_t *,              \
      nvmlGpuInstance_t *),                                                    \
     "nvmlDeviceCreateGpuInstanceWithPlacement", NULL)                         \
  XX(DeviceGetGpuInstances, 1, nvmlReturn_t,                                   \
     (nvmlDevice_t, unsigned, nvmlGpuInstance_t *, unsigned *),                \
     "nvmlDeviceGetGpuInstances", NULL)                                        \
  XX(DeviceGetGpuInstanceById, 1, nvmlReturn_t,                                \
     (nvmlDevice_t, unsigned, nvmlGpuInstance_t *),                            \
     "nvmlDeviceGetGpuInstanceById", NULL)                                     \
  XX(GpuInstanceGetInfo, 1, nvmlReturn_t,                                      \
     (nvmlGpuInstance_t, nvmlGpuInstanceInfo_t *), "nvmlGpuInstanceGetInfo",   \
     NULL)                                                                     \
  XX(GpuInstanceDestroy, 1, nvmlReturn_t, (nvmlGpuInstance_t),                 \
     "nvmlGpuInstanceDestroy", NULL)                                           \
  XX(GpuInstanceGetComputeInstanceProfileInfoV, 0, nvmlReturn_t,               \
     (nvmlGpuInstance_t, unsigned, unsigned,                                   \
      nvmlComputeInstanceProfileInfo_v2_t *),                                  \
     "nvmlGpuInstanceGetComputeInstanceProfileInfoV", NULL)                    \
  XX(GpuInstanceGetComputeInstanceProfileInfo, 0, nvmlReturn_t,                \
     (nvmlGpuInstance_t, unsigned, unsigned,                                   \
      nvmlComputeInstanceProfileInfo_t *),                                     \
     "nvmlGpuInstanceGetComputeInstanceProfileInfo", NULL)                     \
  XX(GpuInstanceGetComputeInstancePossiblePlacements, 0, nvmlReturn_t,         \
     (nvmlGpuInstance_t, unsigned, nvmlComputeInstancePlacement_t *,           \
      unsigned *),                                                             \
     "nvmlGpuInstanceGetComputeInstancePossiblePlacements", NULL)              \
  XX(GpuInstanceCreateComputeInstanceWithPlacement, 1, nvmlReturn_t,           \
     (nvmlGpuInstance_t, unsigned, const nvmlComputeInstancePlacement_t *,     \
      nvmlComputeInstance_t *),                                                \
     "nvmlGpuInstanceCreateComputeInstanceWithPlacement", NULL)                \
  XX(GpuInstanceGetComputeInstances, 1, nvmlReturn_t,                          \
     (nvmlGpuInstance_t, unsigned, nvmlComputeInstance_t *, unsigned *),       \
     "nvmlGpuInstanceGetComputeInstances", NULL)                               \
  XX(ComputeInstanceGetInfo, 1, nvmlReturn_t,                                  \
     (nvmlComputeInstance_t, nvmlComputeInstanceInfo_t *),                     \
     "nvmlComputeInstanceGetInfo_v2", "nvmlComputeInstanceGetInfo")            \
  XX(ComputeInstanceDestroy, 1, nvmlReturn_t, (nvmlComputeInstance_t),         \
     "nvmlComputeInstanceDestroy", NULL)                                       \
  XX(DeviceGetMaxMigDeviceCount, 1, nvmlReturn_t, (nvmlDevice_t, unsigned *),  \
     "nvmlDeviceGetMaxMigDeviceCount", NULL)                                   \
  XX(DeviceGetMigDeviceHandleByIndex, 1, nvmlReturn_t,                         \
     (nvmlDevice_t, unsigned, nvmlDevice_t *),                                 \
     "nvmlDeviceGetMigDeviceHandleByIndex", NULL)                              \
  XX(DeviceGetGpuInstanceId, 1, nvmlReturn_t, (nvmlDevice_t, unsigned *),      \
     "nvmlDeviceGetGpuInstanceId", NULL)                                       \
  XX(DeviceGetComputeInstanceId, 1, nvmlReturn_t, (nvmlDevice_t, unsigned *),  \
     "nvmlDeviceGetComputeInstanceId", NULL)                                   \
  XX(DeviceGetComputeRunningProcesses, 1, nvmlReturn_t,                        \
     (nvmlDevice_t, unsigned *, nvmlProcessInfo_t *),                          \
     "nvmlDeviceGetComputeRunningProcesses_v3",                                \
     "nvmlDeviceGetComputeRunningProcesses_v2")                                \
  XX(DeviceGetProcessUtilization, 0, nvmlReturn_t,                             \
     (nvmlDevice_t, nvmlProcessUtilizationSample_t *, unsigned *,              \
      unsigned long long),                                                     \
     "nvmlDeviceGetProcessUtilization", NULL)                                  \
  XX(EventSetCreate, 0, nvmlReturn_t, (nvmlEventSet_t *),                      \
     "nvmlEventSetCreate", NULL)                                               \
  XX(DeviceRegisterEvents, 0, nvmlReturn_t,                                    \
     (nvmlDevice_t, unsigned long long, nvmlEventSet_t),                       \
     "nvmlDeviceRegisterEvents", NULL)                                         \
  XX(EventSetWait, 0, nvmlReturn_t,                                            \
     (nvmlEventSet_t, nvmlEventData_t *, unsigned), "nvmlEventSetWait_v2",     \
     NULL)                                                                     \
  XX(EventSetFree, 0, nvmlReturn_t, (nvmlEventSet_t), "nvmlEventSetFree", NULL)

/* The loaded library. Fields are the functions, named without "nvml". */
typedef struct gs__nvml_s {
  void *dl;
  char path[1024];
  bool initialized; /* nvmlInit succeeded; close shuts down */
#define GS__NVML_FIELD(field, req, ret, params, sym, old) ret(*field) params;
  GS__NVML_FUNCS(GS__NVML_FIELD)
#undef GS__NVML_FIELD
} gs__nvml_t;

#define GS__NVML_DEFAULT_LIBRARY "libnvidia-ml.so.1"

/* dlopens path (NULL: libnvidia-ml.so.1), resolves every function and
 * calls nvmlInit. A missing library fails with GS_ENODEV ("NVIDIA driver
 * not found: dlopen ...: <dlerror>"), a missing required function with
 * GS_EUNSUPPORTED naming it, a failed nvmlInit with GS_EDRIVER. On failure
 * nothing stays loaded. Release with gs__nvml_close(). */
int gs__nvml_open(gs__nvml_t *nvml, const char *path, gs_error_t *err);
void gs__nvml_close(gs__nvml_t *nvml);

/* nvmlErrorString(rc), never NULL. */
const char *gs__nvml_strerror(const gs__nvml_t *nvml, nvmlReturn_t rc);

/* Maps an NVML failure to a gpuslice code and message: IN_USE -> GS_EBUSY,
 * INSUFFICIENT_RESOURCES -> GS_ENOFIT, NO_PERMISSION -> GS_EPERM,
 * NOT_FOUND -> GS_ENOTFOUND, NOT_SUPPORTED -> GS_EUNSUPPORTED, anything
 * else GS_EDRIVER. The message is "<what>: <call> failed: <NVML's text>". */
int gs__nvml_fail(const gs__nvml_t *nvml, nvmlReturn_t rc, const char *call,
                  gs_error_t *err, const char *what);

/* One GPU-instance profile whatever struct version the driver speaks.
 * name is NVML's ("MIG 1g.10gb"), empty when the driver has only the v1
 * query. */
typedef struct gs__nvml_gi_profile_s {
  unsigned id, slices, instances, sms;
  unsigned copy_engines, decoders, encoders, jpegs, ofas;
  unsigned long long memory_mib;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
} gs__nvml_gi_profile_t;

/* Reads profile `index` (NVML_GPU_INSTANCE_PROFILE_*) with the v3 struct,
 * falling back to v2 and then to the v1 call. Returns NVML's code. */
nvmlReturn_t gs__nvml_gi_profile(const gs__nvml_t *nvml, nvmlDevice_t dev,
                                 unsigned index, gs__nvml_gi_profile_t *out);

typedef struct gs__nvml_ci_profile_s {
  unsigned id, slices, instances, sms;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
} gs__nvml_ci_profile_t;

nvmlReturn_t gs__nvml_ci_profile(const gs__nvml_t *nvml, nvmlGpuInstance_t gi,
                                 unsigned index, gs__nvml_ci_profile_t *out);

#endif
