/* Internals of the host backend shared by host.c (device, confinement,
 * enforcement) and host_cgroup.c (cgroups and CPU geometry). */
#ifndef GPUSLICE_HOST_INT_H
#define GPUSLICE_HOST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/procs_int.h"
#include "gpuslice/backend.h"
#include "gpuslice/error.h"
#include "gpuslice/layout.h"

/* CFS bandwidth period of an instance's CPU quota. A throttled instance
 * waits out the rest of the period, so the period bounds the stall a
 * request sees: 10 ms rather than the kernel's default 100 ms, which put
 * ~70 ms on every p99 of a 1g instance in the demo (measured, 2 cores). */
#define GS__CPU_PERIOD_US 10000u

typedef enum { GS__CG_NONE, GS__CG_V1, GS__CG_V2 } gs__cg_kind_t;

/* Where gpuslice may make cgroups: <dir>/gpuslice/<gi-uuid> for each
 * controller it uses. `why` says why a controller is not used. */
typedef struct gs__cgroup_s {
  gs__cg_kind_t mem, cpu;
  bool disabled; /* host_cgroup_root "none" */
  char mem_dir[GS__PATH_MAX];
  char cpu_dir[GS__PATH_MAX];
  char why[128];
} gs__cgroup_t;

/* root: NULL detects from /proc/self/{cgroup,mountinfo}; "none" disables
 * cgroups; a path is used as a v2 cgroup (it has cgroup.controllers) or as
 * a v1 memory and/or cpu cgroup directory. Never fails: what cannot be
 * used is left GS__CG_NONE. */
void gs__cgroup_detect(gs__cgroup_t *cg, const char *root);

/* Creates the instance's cgroups with their limits (memory_bytes; quota_us
 * per GS__CPU_PERIOD_US, 0 = no CPU quota) and moves pid into them. */
int gs__cgroup_enter(const gs__cgroup_t *cg, const char *uuid,
                     uint64_t memory_bytes, uint64_t quota_us, pid_t pid,
                     gs_error_t *err);

/* Best effort: a cgroup still holding processes stays, harmlessly. */
void gs__cgroup_remove(const gs__cgroup_t *cg, const char *uuid);

/* Pids in the instance's cgroup (children included). *n counts all;
 * at most max are written. Nothing (0) when there is no such cgroup. */
void gs__cgroup_pids(const gs__cgroup_t *cg, const char *uuid, bool use_cpu,
                     pid_t *out, size_t max, size_t *n);

/* What the instance's cgroups account: memory (v2 memory.current, v1
 * memory.usage_in_bytes) and CPU time (v2 cpu.stat usage_usec, v1
 * cpuacct.usage); has_* false where no such cgroup or file is. */
void gs__cgroup_usage(const gs__cgroup_t *cg, const char *uuid, bool use_cpu,
                      gs_gi_usage_t *out);

/* Compute slices [first, first + count) of `slices` on `cores` logical
 * cores: [*lo, *hi). Disjoint per slice when cores >= slices; otherwise a
 * slice s shares core floor(s * cores / slices) with its neighbours. */
void gs__host_core_range(unsigned cores, unsigned slices, unsigned first,
                         unsigned count, unsigned *lo, unsigned *hi);

/* First compute slice of a GI at memory slice `mem_start` with `g`
 * compute slices: min(mem_start, slices - g). */
unsigned gs__host_gi_first_slice(unsigned mem_start, unsigned g,
                                 unsigned slices);

/* "0-3,6" from ascending CPU numbers. */
void gs__cpulist_format(const int *cpus, unsigned n, char *buf, size_t size);

#endif
