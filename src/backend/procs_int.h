/* The process registry of the software backends (host, soft): which
 * processes run in which GPU instance, and how much of the instance's
 * memory each one holds. A process confined to an instance registers under
 * <state_dir>/procs/<gi-uuid>/<pid>; a registration counts while that pid
 * runs with the start time it had when it registered. Also the /proc
 * readers the backends share. */
#ifndef GPUSLICE_PROCS_INT_H
#define GPUSLICE_PROCS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpuslice/error.h"
#include "gpuslice/layout.h"

#define GS__PATH_MAX 4096
#define GS__MAX_PIDS 1024

/* Processes of one GI: pid, CI, whether a registration names it (else the
 * backend found it in the GI, a child of a registered one) and the bytes
 * of the GI's memory it reserved when it registered (0 for children). */
typedef struct gs__procset_s {
  size_t n;
  pid_t pid[GS__MAX_PIDS];
  unsigned ci[GS__MAX_PIDS];
  bool registered[GS__MAX_PIDS];
  uint64_t reserved[GS__MAX_PIDS];
} gs__procset_t;

/* Live processes of gi: the pids registered under it, then the `members`
 * the backend found there (cgroup members, a GPU's processes) that are not
 * registered. A member runs in the CI of its nearest registered ancestor;
 * without one (nor GPUSLICE_INSTANCE_UUID naming one of the GI's CIs in its
 * environment) it is dropped when need_ancestor, else put in the GI's first
 * CI. With prune (exclusive state lock held) the registrations of dead
 * processes are removed. */
void gs__procs_list(const char *state_dir, const gs_gi_t *gi,
                    const pid_t *members, size_t n_members, bool need_ancestor,
                    bool prune, gs__procset_t *ps);

/* Registers the calling process under gi, CI ci_id, holding
 * reserved_bytes of the GI's memory, and under no other GI. */
int gs__procs_register(const char *state_dir, const gs_gi_t *gi, unsigned ci_id,
                       uint64_t reserved_bytes, gs_error_t *err);

/* Registers process pid under gi too (its other registrations stay): a
 * process serving several instances (green isolation's shared worker);
 * gs__procs_release takes one back. */
int gs__procs_hold(const char *state_dir, const gs_gi_t *gi, unsigned ci_id,
                   pid_t pid, uint64_t reserved_bytes, gs_error_t *err);
void gs__procs_release(const char *state_dir, const char *uuid, pid_t pid);

/* Removes the registrations of a destroyed GI. */
void gs__procs_forget(const char *state_dir, const char *uuid);

/* /proc/<pid>/stat: start time (field 22) and parent. false if the
 * process is gone or a zombie. */
bool gs__proc_stat(pid_t pid, unsigned long long *start_time, pid_t *ppid);
/* /proc/<pid>/comm without the newline; "" when gone. */
/* Every PID in /proc (at most max written, *n counts all). */
void gs__proc_all(pid_t *out, size_t max, size_t *n);
void gs__proc_comm(pid_t pid, char *buf, size_t size);
uint64_t gs__proc_rss_bytes(pid_t pid);

/* A whole small file (at most size - 1 bytes) as a string. */
bool gs__read_text(const char *path, char *buf, size_t size);

#endif
