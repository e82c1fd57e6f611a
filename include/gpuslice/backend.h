/* One interface, three implementations: `mig` (NVML), `soft` (MPS) and
 * `host` (CPU cores and memory). The apply engine, `list`, `run` and
 * `serve` only talk to this interface. */
#ifndef GPUSLICE_BACKEND_H
#define GPUSLICE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpuslice/catalog.h"
#include "gpuslice/error.h"
#include "gpuslice/layout.h"

#define GS_MAX_ENV 16

typedef struct gs_device_s {
  unsigned index;
  char name[96];
  char uuid[GS_UUID_MAX];
  uint32_t pci_device_id; /* 0 for the host */
  gs_catalog_t catalog;
  gs_layout_t layout;
  /* The soft backend under green isolation: GI layout.gi[i]'s SMs are
   * [sm_first[i], sm_first[i] + sm_count[i]) of the GPU's green-context
   * split; sm_count[i] 0 everywhere else. */
  unsigned sm_first[GS_MAX_GIS], sm_count[GS_MAX_GIS];
} gs_device_t;

typedef struct gs_process_s {
  pid_t pid;
  unsigned gi_id, ci_id;
  uint64_t memory_bytes; /* 0 when not known */
  char command[64];
} gs_process_t;

/* A GPU instance's own accounting, where the backend keeps one (the host
 * backend's cgroup): has_* false for what it cannot tell. */
typedef struct gs_gi_usage_s {
  bool has_memory, has_cpu;
  uint64_t memory_bytes; /* cgroup v2 memory.current, v1 usage_in_bytes */
  uint64_t cpu_usec;     /* cgroup v2 cpu.stat usage_usec, v1 cpuacct */
} gs_gi_usage_t;

/* What the backend enforces on this machine, in words, and why. */
typedef struct gs_enforcement_s {
  char compute[192]; /* "disjoint CPU cores (affinity)" */
  char memory[192];  /* "hard limit per instance (cgroup v1 memory)" */
  char faults[192];  /* "isolated (separate processes)" */
} gs_enforcement_t;

/* What `run` must do to put a process into an instance: env to set. The
 * backend has already confined the calling process when it returns. */
typedef struct gs_confinement_s {
  /* in: bytes of the instance's memory this process asks for; 0 = what is
   * left. The soft backend splits a GPU instance's memory among its
   * processes (MPS limits memory per process); host and mig ignore it. */
  uint64_t memory_request_bytes;
  /* in: the process hosts several of the GPU's instances (the soft
   * backend's green isolation, `run --group`): it gets the instance's
   * GPU without MPS and is registered in no instance: whoever adds and
   * removes its instances counts it in each (ops->hold), so that any of
   * them can leave it and be destroyed while it runs.
   * Only the soft backend takes it (gs_run_exec_group checks). */
  bool group;
  /* An address-space limit (RLIMIT_AS) the caller sets as its very last
   * step before exec: after it, a sanitizer-built caller could not even
   * allocate. 0: none. */
  uint64_t address_space_limit;
  unsigned n_env;
  char env_name[GS_MAX_ENV][48];
  char env_value[GS_MAX_ENV][256];
} gs_confinement_t;

/* Who runs in a GPU instance: what the one busy rule of create, destroy
 * and apply reads (a GI with processes is never destroyed). */
#define GS_BUSY_MAX_PROCS 4
typedef struct gs_busy_s {
  bool in_use; /* a process runs in it */
  unsigned dev, gi_id;
  size_t n_procs; /* processes found; the first GS_BUSY_MAX_PROCS in procs */
  gs_process_t procs[GS_BUSY_MAX_PROCS];
} gs_busy_t;

/* A device as a change finds it: begin reads it under the lock it takes. */
typedef struct gs_change_dev_s {
  unsigned index;  /* in: which device */
  bool with_users; /* in: read users too (create keeps every GI: moot) */
  bool failed;     /* out: begin failed reading this device */
  gs_device_t dev; /* out: catalog and layout */
  gs_busy_t users[GS_MAX_GIS]; /* out: users[g] run in dev.layout.gi[g] */
} gs_change_dev_t;

typedef struct gs_backend_s gs_backend_t;

typedef struct gs_backend_ops_s {
  const char *name;
  int (*device_count)(gs_backend_t *be, unsigned *n, gs_error_t *err);
  /* Catalog and current layout of one device. */
  int (*device_get)(gs_backend_t *be, unsigned index, gs_device_t *out,
                    gs_error_t *err);
  /* A change runs between begin and commit/abort. begin takes exclusive
   * access (a lock) and reads devs[0..n) as the change finds them, in one
   * step (n 0: the lock alone); on an error it holds no lock. commit
   * makes the change durable. */
  int (*begin)(gs_backend_t *be, gs_change_dev_t *devs, unsigned n,
               gs_error_t *err);
  int (*commit)(gs_backend_t *be, gs_error_t *err);
  void (*abort)(gs_backend_t *be);
  int (*set_mig_mode)(gs_backend_t *be, unsigned dev, bool enabled,
                      gs_error_t *err);
  int (*gi_create)(gs_backend_t *be, unsigned dev, unsigned profile_id,
                   unsigned start, unsigned *gi_id, gs_error_t *err);
  int (*gi_destroy)(gs_backend_t *be, unsigned dev, unsigned gi_id,
                    gs_error_t *err);
  int (*ci_create)(gs_backend_t *be, unsigned dev, unsigned gi_id,
                   unsigned ci_profile_id, unsigned start, unsigned *ci_id,
                   gs_error_t *err);
  int (*ci_destroy)(gs_backend_t *be, unsigned dev, unsigned gi_id,
                    unsigned ci_id, gs_error_t *err);
  /* Processes running in a GI (all its CIs). *n may exceed max: then only
   * max were written. */
  int (*processes)(gs_backend_t *be, unsigned dev, unsigned gi_id,
                   gs_process_t *out, size_t max, size_t *n, gs_error_t *err);
  void (*enforcement)(gs_backend_t *be, gs_enforcement_t *out);
  /* The GI's own accounting; NULL where there is none (mig and soft: their
   * processes' NVML memory is what tells). */
  int (*gi_usage)(gs_backend_t *be, unsigned dev, unsigned gi_id,
                  gs_gi_usage_t *out, gs_error_t *err);
  /* Confines the calling process to the instance (it is about to exec).
   * out->memory_request_bytes is read first; the rest of *out is written. */
  int (*confine)(gs_backend_t *be, unsigned dev, unsigned gi_id, unsigned ci_id,
                 gs_confinement_t *out, gs_error_t *err);
  /* Counts process pid (started with confinement.group) in the instance,
   * holding the memory its other processes leave (on), or no longer (off):
   * while it serves the instance, the instance is busy and its memory
   * taken. NULL: the backend runs no process in several instances. */
  int (*hold)(gs_backend_t *be, unsigned dev, unsigned gi_id, unsigned ci_id,
              pid_t pid, bool on, gs_error_t *err);
  void (*close)(gs_backend_t *be);
} gs_backend_ops_t;

struct gs_backend_s {
  const gs_backend_ops_t *ops;
  void *impl;
};

/* How the soft backend runs a GPU's instances. MPS caps SMs and memory
 * per process but shares faults among all processes on the GPU; process
 * isolation time-slices the whole GPU, enforces no memory limit and keeps
 * faults apart; green isolation gives each instance disjoint SMs as a
 * green context, all of a GPU's instances inside one process (one fault
 * domain; memory by the engine's own accounting only). A GPU's instances
 * all run one way (recorded in the state); switching needs the GPU
 * without instances. */
typedef enum {
  GS_SOFT_ISOLATION_DEFAULT = 0, /* as recorded for the GPU, else MPS */
  GS_SOFT_ISOLATION_MPS,
  GS_SOFT_ISOLATION_PROCESS,
  GS_SOFT_ISOLATION_GREEN
} gs_soft_isolation_t;

typedef struct gs_backend_options_s {
  const char *state_dir; /* software backends keep their layout here */
  /* Overrides of what the host backend detects, for a machine of another
   * shape (the CLI sets them from GPUSLICE_HOST_*; benchmarks, the demo's
   * tests and the unit tests use them). Hooks that exist only for tests
   * are in src/core/test_hooks.h. */
  unsigned host_cpu_cores;      /* 0 = detect */
  uint64_t host_memory_mib;     /* 0 = detect */
  const char *host_cgroup_root; /* NULL = detect; "none" = no cgroups */
  /* NVML to load for the mig backend; NULL = the driver's
   * libnvidia-ml.so.1 (tests point it at a fake). */
  const char *nvml_library;
  /* The soft backend's CUDA driver (NULL = libcuda.so.1), MPS control
   * program (NULL = nvidia-cuda-mps-control, searched on PATH) and
   * isolation; tests point the first two at fakes. */
  const char *cuda_library;
  const char *mps_control;
  gs_soft_isolation_t soft_isolation;
} gs_backend_options_t;

/* Opens a backend by name ("host", "soft", "mig") or, with name NULL,
 * the first that works here: mig, then soft, then host. Caller closes it
 * with gs_backend_close(). */
int gs_backend_open(gs_backend_t **out, const char *name,
                    const gs_backend_options_t *opt, gs_error_t *err);
void gs_backend_close(gs_backend_t *be);

int gs_backend_host_open(gs_backend_t **out, const gs_backend_options_t *opt,
                         gs_error_t *err);
/* The mig backend: GPUs whose MIG mode is on, through NVML loaded at run
 * time. GS_ENODEV when no driver is found. */
int gs_backend_mig_open(gs_backend_t **out, const gs_backend_options_t *opt,
                        gs_error_t *err);

/* The soft backend: every NVIDIA GPU whose MIG mode is not on, cut into
 * the instances MIG would offer there (or a synthesized catalog), enforced
 * at process start through an MPS control daemon per GPU that it starts
 * and stops itself. GS_ENODEV without a driver or without such a GPU. */
int gs_backend_soft_open(gs_backend_t **out, const gs_backend_options_t *opt,
                         gs_error_t *err);

/* The default state directory: $GPUSLICE_STATE_DIR is the tool's business;
 * the library's default is /var/lib/gpuslice for root, else
 * $XDG_STATE_HOME/gpuslice or ~/.local/state/gpuslice, chosen by the tool
 * and passed in gs_backend_options_t.state_dir. */

#endif
