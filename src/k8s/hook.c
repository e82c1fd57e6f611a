/* The host backend's CDI hook: the runtime runs it once a container's init
 * exists. It confines itself as `run -i` would (the backend makes the
 * instance's cgroups and pins CPUs), then moves the container's init into
 * the same cgroups and CPUs; what the init execs inherits both. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuslice/k8s.h"

/* The mount point of the hierarchy a /proc/self/cgroup line names
 * (controllers "memory,..." for v1, "" for v2) whose root is a prefix of
 * path; false when none is mounted here. */
static bool mount_of(const char *controllers, const char *path, char *out,
                     size_t size) {
  char line[4096];
  bool found = false;
  FILE *f = fopen("/proc/self/mountinfo", "re");
  while (f && !found && fgets(line, sizeof line, f)) {
    char root[1024], point[1024], fstype[64], super[1024];
    const char *dash = strstr(line, " - ");
    if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", root, point) != 2 ||
        sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
      continue;
    bool v2 = strcmp(fstype, "cgroup2") == 0;
    if (!v2 && strcmp(fstype, "cgroup") != 0)
      continue;
    if (v2 != (*controllers == '\0'))
      continue;
    if (!v2) { /* every controller of the line among the mount's options */
      char want[256], *save = NULL;
      snprintf(want, sizeof want, "%s", controllers);
      bool all = true;
      for (char *c = strtok_r(want, ",", &save); c && all;
           c = strtok_r(NULL, ",", &save)) {
        char opt[272];
        snprintf(opt, sizeof opt, ",%s,", c);
        char opts[1100];
        snprintf(opts, sizeof opts, ",%s,", super);
        all = strstr(opts, opt) != NULL;
      }
      if (!all)
        continue;
    }
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    if (strncmp(path, root, rl) != 0)
      continue;
    snprintf(out, size, "%s%s", point, path + rl);
    found = true;
  }
  if (f)
    fclose(f);
  return found;
}

/* Writes pid into each of this process's cgroups that the backend made
 * (their path holds /gpuslice/). GS_OK when there were none: the host
 * backend then confines by CPUs and an address-space limit only. */
static int move_cgroups(pid_t pid, unsigned *moved, gs_error_t *err) {
  char line[2048], dir[4096], procs[4200];
  *moved = 0;
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f)
    return gs_error_sys(err, errno, "reading /proc/self/cgroup");
  int rc = GS_OK;
  while (rc == GS_OK && fgets(line, sizeof line, f)) {
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c2 = '\0';
    char *path = c2 + 1;
    path[strcspn(path, "\n")] = '\0';
    if (!strstr(path, "/gpuslice/") || !mount_of(c1 + 1, path, dir, sizeof dir))
      continue;
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    FILE *p = fopen(procs, "we");
    bool ok = p && fprintf(p, "%ld\n", (long)pid) > 0;
    if (p && fclose(p) != 0)
      ok = false;
    if (!ok)
      rc = gs_error_sys(err, errno, "moving pid %ld into %s", (long)pid, dir);
    else
      (*moved)++;
  }
  fclose(f);
  return rc;
}

int gs_cdi_hook_confine(gs_backend_t *be, unsigned gi_id, unsigned ci_id,
                        pid_t pid, gs_error_t *err) {
  gs_confinement_t conf;
  memset(&conf, 0, sizeof conf);
  if (pid <= 1)
    return gs_error_set(err, GS_EINVAL,
                        "the OCI state names no container pid (%ld)",
                        (long)pid);
  int rc = be->ops->confine(be, 0, gi_id, ci_id, &conf, err);
  if (rc != GS_OK)
    return rc;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0 ||
      sched_setaffinity(pid, sizeof set, &set) != 0)
    return gs_error_sys(err, errno, "pinning pid %ld to instance %u:%u's CPUs",
                        (long)pid, gi_id, ci_id);
  unsigned moved;
  return move_cgroups(pid, &moved, err);
}
