/* The software backends' process registry (one file per confined process)
 * and the /proc readers behind it. */
#include "backend/procs_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ANCESTOR_DEPTH 32 /* how far up a member's parents are searched */

bool gs__read_text(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t got;
  do
    got = read(fd, buf, size - 1);
  while (got < 0 && errno == EINTR);
  close(fd);
  if (got < 0)
    return false;
  buf[got] = '\0';
  return true;
}

/* ---- /proc ------------------------------------------------------------- */

bool gs__proc_stat(pid_t pid, unsigned long long *start_time, pid_t *ppid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  if (pid <= 0 || !gs__read_text(path, buf, sizeof buf))
    return false;
  char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
  if (!p)
    return false;
  char state = 0;
  long parent = 0;
  if (sscanf(p + 1, " %c %ld", &state, &parent) != 2 || state == 'Z' ||
      state == 'X')
    return false;
  /* field 22; p + 1 begins at field 3 */
  for (unsigned field = 3; field < 22; field++) {
    p = strchr(p + 1, ' ');
    if (!p)
      return false;
  }
  char *end;
  unsigned long long st = strtoull(p + 1, &end, 10);
  if (end == p + 1)
    return false;
  if (start_time)
    *start_time = st;
  if (ppid)
    *ppid = (pid_t)parent;
  return true;
}

void gs__proc_all(pid_t *out, size_t max, size_t *n) {
  *n = 0;
  DIR *d = opendir("/proc");
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    if (*n < max)
      out[*n] = (pid_t)pid;
    (*n)++;
  }
  closedir(d);
}

void gs__proc_comm(pid_t pid, char *buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
  if (!gs__read_text(path, buf, size))
    buf[0] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
}

uint64_t gs__proc_rss_bytes(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
  if (!gs__read_text(path, buf, sizeof buf))
    return 0;
  const char *p = strstr(buf, "\nVmRSS:");
  unsigned long long kib = 0;
  if (!p || sscanf(p + 7, "%llu", &kib) != 1)
    return 0;
  return (uint64_t)kib * 1024;
}

/* ---- registered processes ---------------------------------------------- */

/* <state>/procs/<gi-uuid>/<pid> holds "<start time> <ci> <reserved bytes>":
 * the start time (stat field 22) tells a reused pid from the process
 * registered. Files without the third field (older gpuslice) reserve 0. */
static void procs_path(const char *state_dir, const char *uuid, long pid,
                       char *buf, size_t size) {
  if (pid > 0)
    snprintf(buf, size, "%s/procs/%s/%ld", state_dir, uuid, pid);
  else
    snprintf(buf, size, "%s/procs/%s", state_dir, uuid);
}

static bool procset_find(const gs__procset_t *ps, pid_t pid, size_t *at) {
  for (size_t i = 0; i < ps->n; i++)
    if (ps->pid[i] == pid) {
      if (at)
        *at = i;
      return true;
    }
  return false;
}

static bool registration_live(int dirfd_, const char *name, pid_t pid,
                              unsigned *ci, uint64_t *reserved) {
  char text[96];
  int fd = openat(dirfd_, name, O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
  if (fd >= 0)
    close(fd);
  text[got > 0 ? got : 0] = '\0';
  unsigned long long want = 0, have = 0, bytes = 0;
  int n = sscanf(text, "%llu %u %llu", &want, ci, &bytes);
  *reserved = n == 3 ? (uint64_t)bytes : 0;
  return n >= 2 && gs__proc_stat(pid, &have, NULL) && have == want;
}

static void read_registered(const char *state_dir, const gs_gi_t *gi,
                            bool prune, gs__procset_t *ps) {
  char dir[GS__PATH_MAX + 128];
  procs_path(state_dir, gi->uuid, 0, dir, sizeof dir);
  DIR *d = opendir(dir);
  if (!d)
    return; /* nothing was ever confined here */
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL && ps->n < GS__MAX_PIDS) {
    char *end;
    long pid = strtol(ent->d_name, &end, 10);
    if (ent->d_name[0] == '.' || *end || pid <= 0 || pid > INT32_MAX)
      continue;
    unsigned ci = 0;
    uint64_t reserved = 0;
    bool live =
        registration_live(dirfd(d), ent->d_name, (pid_t)pid, &ci, &reserved);
    if (live && !procset_find(ps, (pid_t)pid, NULL)) {
      ps->pid[ps->n] = (pid_t)pid;
      ps->ci[ps->n] = ci;
      ps->reserved[ps->n] = reserved;
      ps->registered[ps->n++] = true;
    } else if (!live && prune) {
      unlinkat(dirfd(d), ent->d_name, 0);
    }
  }
  closedir(d);
}

/* The CI of pid's nearest ancestor among the first n_reg (registered)
 * entries of ps. */
static bool registered_ancestor(const gs__procset_t *ps, size_t n_reg,
                                pid_t pid, unsigned *ci) {
  for (unsigned depth = 0; depth < ANCESTOR_DEPTH && pid > 1; depth++) {
    if (!gs__proc_stat(pid, NULL, &pid))
      return false;
    for (size_t i = 0; i < n_reg; i++)
      if (ps->pid[i] == pid) {
        *ci = ps->ci[i];
        return true;
      }
  }
  return false;
}

/* The CI whose UUID pid's environment names in GPUSLICE_INSTANCE_UUID
 * (set by `run`, inherited by everything the workload starts, re-parented
 * orphans included). */
static bool environ_instance(pid_t pid, const gs_gi_t *gi, unsigned *ci) {
  static const char key[] = "GPUSLICE_INSTANCE_UUID=";
  char path[64], buf[65536];
  snprintf(path, sizeof path, "/proc/%ld/environ", (long)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0)
    return false;
  buf[len] = '\0';
  for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
    if (strncmp(p, key, sizeof key - 1) != 0)
      continue;
    for (unsigned k = 0; k < gi->n_ci; k++)
      if (gi->ci[k].uuid[0] &&
          strcmp(p + sizeof key - 1, gi->ci[k].uuid) == 0) {
        *ci = gi->ci[k].id;
        return true;
      }
  }
  return false;
}

void gs__procs_list(const char *state_dir, const gs_gi_t *gi,
                    const pid_t *members, size_t n_members, bool need_ancestor,
                    bool prune, gs__procset_t *ps) {
  ps->n = 0;
  read_registered(state_dir, gi, prune, ps);
  size_t n_reg = ps->n;
  for (size_t i = 0; i < n_members && ps->n < GS__MAX_PIDS; i++) {
    pid_t pid = members[i];
    unsigned ci = gi->n_ci ? gi->ci[0].id : 0;
    if (procset_find(ps, pid, NULL) || !gs__proc_stat(pid, NULL, NULL))
      continue;
    if (need_ancestor && !registered_ancestor(ps, n_reg, pid, &ci) &&
        !environ_instance(pid, gi, &ci))
      continue;
    ps->pid[ps->n] = pid;
    ps->ci[ps->n] = ci;
    ps->reserved[ps->n] = 0;
    ps->registered[ps->n++] = false;
  }
}

/* A process runs in one instance at a time: its registrations under every
 * GI go before the new one is written. */
static void unregister_everywhere(const char *state_dir, pid_t self) {
  char path[GS__PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/procs", state_dir);
  DIR *d = opendir(path);
  if (!d)
    return;
  char name[32];
  snprintf(name, sizeof name, "%ld", (long)self);
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.')
      continue;
    int sub = openat(dirfd(d), ent->d_name,
                     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (sub < 0)
      continue;
    unlinkat(sub, name, 0);
    close(sub);
  }
  closedir(d);
}

/* Writes pid's registration under gi (its other ones stay). */
static int write_registration(const char *state_dir, const gs_gi_t *gi,
                              unsigned ci_id, pid_t self,
                              unsigned long long start, uint64_t reserved_bytes,
                              gs_error_t *err) {
  char path[GS__PATH_MAX + 160], text[96];
  snprintf(path, sizeof path, "%s/procs", state_dir);
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "creating %s", path);
  procs_path(state_dir, gi->uuid, 0, path, sizeof path);
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "creating %s", path);
  procs_path(state_dir, gi->uuid, self, path, sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return gs_error_sys(err, errno, "creating %s", path);
  int len = snprintf(text, sizeof text, "%llu %u %" PRIu64 "\n", start, ci_id,
                     reserved_bytes);
  int rc = write(fd, text, (size_t)len) == len
               ? GS_OK
               : gs_error_sys(err, errno, "writing %s", path);
  close(fd);
  return rc;
}

int gs__procs_register(const char *state_dir, const gs_gi_t *gi, unsigned ci_id,
                       uint64_t reserved_bytes, gs_error_t *err) {
  unsigned long long start;
  pid_t self = getpid();
  if (!gs__proc_stat(self, &start, NULL))
    return gs_error_set(err, GS_ESYSTEM, "reading /proc/%ld/stat", (long)self);
  unregister_everywhere(state_dir, self);
  return write_registration(state_dir, gi, ci_id, self, start, reserved_bytes,
                            err);
}

int gs__procs_hold(const char *state_dir, const gs_gi_t *gi, unsigned ci_id,
                   pid_t pid, uint64_t reserved_bytes, gs_error_t *err) {
  unsigned long long start;
  if (!gs__proc_stat(pid, &start, NULL))
    return gs_error_set(err, GS_ENOTFOUND, "no process %ld", (long)pid);
  return write_registration(state_dir, gi, ci_id, pid, start, reserved_bytes,
                            err);
}

void gs__procs_release(const char *state_dir, const char *uuid, pid_t pid) {
  char path[GS__PATH_MAX + 160];
  procs_path(state_dir, uuid, pid, path, sizeof path);
  unlink(path);
}

void gs__procs_forget(const char *state_dir, const char *uuid) {
  char path[GS__PATH_MAX + 128];
  procs_path(state_dir, uuid, 0, path, sizeof path);
  DIR *d = opendir(path);
  if (!d)
    return;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL)
    if (ent->d_name[0] != '.')
      unlinkat(dirfd(d), ent->d_name, 0);
  closedir(d);
  rmdir(path);
}
