/* Internals of the host backend shared by host.c (instances, state,
 * confinement) and host_cgroup.c (cgroups and /proc bookkeeping). */
#ifndef GPUSLICE_HOST_INT_H
#define GPUSLICE_HOST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpuslice/error.h"
#include "gpuslice/layout.h"

#define GS__PATH_MAX 4096
#define GS__CPU_PERIOD_US 100000u
#define GS__MAX_PIDS 1024

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

/* Processes of one GI: pid, CI, and whether a registration file names it
 * (else it was found in the GI's cgroup, a child of a registered one). */
typedef struct gs__procset_s {
  size_t n;
  pid_t pid[GS__MAX_PIDS];
  unsigned ci[GS__MAX_PIDS];
  bool registered[GS__MAX_PIDS];
} gs__procset_t;

/* Live processes of gi: members of its cgroup (the memory one, or with
 * use_cpu the cpu one when there is no memory one) and the pids registered
 * under <state_dir>/procs/<gi-uuid>/ still running with the start time
 * they had when registered. With prune (exclusive lock held) the files of
 * dead ones are removed. */
void gs__procs_list(const char *state_dir, const gs__cgroup_t *cg, bool use_cpu,
                    const gs_gi_t *gi, bool prune, gs__procset_t *ps);

/* Registers the calling process under gi (and no other GI of layout). */
int gs__procs_register(const char *state_dir, const gs_layout_t *layout,
                       const gs_gi_t *gi, unsigned ci_id, gs_error_t *err);

/* Removes the registrations of a destroyed GI. */
void gs__procs_forget(const char *state_dir, const char *uuid);

/* /proc/<pid>/stat: start time (field 22) and parent. false if the
 * process is gone or a zombie. */
bool gs__proc_stat(pid_t pid, unsigned long long *start_time, pid_t *ppid);
void gs__proc_comm(pid_t pid, char *buf, size_t size);
uint64_t gs__proc_rss_bytes(pid_t pid);

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
