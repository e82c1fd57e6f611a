/* Internals of the soft backend shared by soft.c (the backend's operations,
 * confinement, enforcement), soft_open.c (GPUs, catalogs, SM counts) and
 * soft_mps.c (the MPS control daemon gpuslice keeps per GPU). */
#ifndef GPUSLICE_SOFT_INT_H
#define GPUSLICE_SOFT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/swcore_int.h"
#include "gpu/nvml_shim.h"

#define GS__SOFT_LIB_MAX 1024 /* library and program paths */
#define GS__MPS_DEFAULT_CONTROL "nvidia-cuda-mps-control"

/* How the driver splits a GPU's SMs for green contexts: `groups` groups
 * of `unit` SMs out of `total` (zeros: no green contexts). */
typedef struct gs__green_gpu_s {
  unsigned total, unit, groups;
} gs__green_gpu_t;

/* One GPU whose MIG mode was not on when the backend opened. */
typedef struct gs__soft_gpu_s {
  unsigned nvml_index;
  nvmlDevice_t handle;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  char uuid[GS_UUID_MAX]; /* "GPU-...", what CUDA_VISIBLE_DEVICES takes */
  uint32_t pci_device_id;
  uint64_t memory_mib;
  unsigned sms;          /* CUDA's multiprocessor count; 0 until read */
  gs__green_gpu_t green; /* read with sms; zeros: no green contexts */
} gs__soft_gpu_t;

typedef struct gs__soft_s {
  gs__swcore_t core; /* first: the shared layout machinery */
  gs__nvml_t nvml;
  gs_soft_isolation_t isolation;       /* the option as given */
  char cuda_library[GS__SOFT_LIB_MAX]; /* "" = libcuda.so.1 */
  char mps_control[GS__SOFT_LIB_MAX];
  bool sms_read;         /* gs__soft_read_sms ran successfully */
  int static_partitions; /* -1 not checked yet, else 0 or 1 */
  gs__soft_gpu_t gpu[GS_MAX_DEVICES];
} gs__soft_t;

/* ---- soft.c ------------------------------------------------------------ */

extern const gs_backend_ops_t gs__soft_ops;
extern const gs__swcore_hooks_t gs__soft_hooks;

/* ---- soft_open.c ------------------------------------------------------- */

/* The compute processes NVML lists on GPU dev; *info is malloc'd (caller
 * frees it), NULL with *n = 0 when NVML cannot tell. */
void gs__soft_gpu_procs(const gs__soft_t *s, unsigned dev,
                        nvmlProcessInfo_t **info, unsigned *n);

/* Reads every GPU's SM count from the CUDA driver, in a child process so
 * that neither the driver's state nor an MPS connection stays with the
 * caller; GPUs are matched to NVML's by UUID. Runs once. */
int gs__soft_read_sms(gs__soft_t *s, gs_error_t *err);

/* ---- soft_mps.c -------------------------------------------------------- */

/* SMs an MPS client gets at active-thread percentage `percent` of a GPU
 * with `total` SMs: floor(percent * total / 100) rounded down to whole
 * TPCs (2 SMs), all of them at 100 (measured on H200, driver 580: 12% of
 * 132 SMs gave 14). */
unsigned gs__mps_sms_at(unsigned percent, unsigned total);

/* The smallest percentage (1-100) at which a client gets at least `want`
 * of `total` SMs; 100 when none does. */
unsigned gs__mps_percentage(unsigned want, unsigned total);

/* <state_dir>/mps/<gpu-uuid>/pipe and .../log of device dev (each at
 * least GS__PATH_MAX). GS_EINVAL when the pipe's control socket path
 * would not fit a Unix socket address. */
int gs__mps_dirs(const gs__soft_t *s, unsigned dev, char *pipe, char *log,
                 gs_error_t *err);

/* The directory put in CUDA_MPS_PIPE_DIRECTORY under process isolation:
 * no daemon ever listens there, so CUDA runs without MPS. */
void gs__mps_off_dir(const gs__soft_t *s, char *buf, size_t size);

/* The pid of gpuslice's control daemon for dev, 0 when none runs. */
pid_t gs__mps_daemon_pid(const gs__soft_t *s, unsigned dev);

/* Starts the control daemon of dev unless ours runs. GS_EBUSY when an MPS
 * server gpuslice did not start already serves the GPU; GS_ENOTFOUND when
 * the control program is missing. Call with the exclusive lock held. */
int gs__mps_ensure(gs__soft_t *s, unsigned dev, gs_error_t *err);

/* Stops our control daemon of dev if it runs (best effort: one that does
 * not stop is stopped again at the next commit). Exclusive lock held. */
void gs__mps_stop(gs__soft_t *s, unsigned dev);

/* Whether this driver's MPS offers static SM partitions (the control
 * program's help mentions them). Checked once. */
bool gs__mps_static_partitions(gs__soft_t *s);

/* ---- soft_green.c ------------------------------------------------------ */

/* The SMs [*first, *first + *count) of an instance under green isolation
 * on a GPU whose catalog has memory_slices slices: it starts at memory
 * slice `start`, spans `span` of them and has `sms` SMs in the catalog.
 * SMs per memory slice (the stride) are the GPU's SMs over its slices,
 * rounded down to whole groups; the count is the profile's SMs rounded
 * down to whole groups, at most span * stride (so placements that do not
 * overlap get disjoint SMs) and within the groups the driver makes.
 * GS_EUNSUPPORTED without green contexts, GS_ELIMIT when nothing is left,
 * both naming the numbers. */
int gs__green_partition(const gs__green_gpu_t *g, unsigned memory_slices,
                        unsigned start, unsigned span, unsigned sms,
                        unsigned *first, unsigned *count, gs_error_t *err);

struct gs__cuda_s;
/* How CUDA would split GPU dev (a CUDA ordinal) for green contexts; zeros
 * when the driver has no green contexts. */
void gs__green_probe(const struct gs__cuda_s *cuda, unsigned dev,
                     gs__green_gpu_t *g);

#endif
