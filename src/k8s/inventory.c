/* The instances a container can be given, read through the backend
 * interface only: the layout of each device, the env `run -i` sets (from
 * confine, run in a child so that nothing of it touches the caller), the
 * NVIDIA device nodes behind it, and its health. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpuslice/k8s.h"

#define MPS_PID_FILE "nvidia-cuda-mps-control.pid"

typedef struct confine_answer_s {
  int rc;
  gs_confinement_t conf;
  char msg[256];
} confine_answer_t;

static void child_confine(gs_backend_t *be, const gs_k8s_instance_t *in,
                          int fd) {
  confine_answer_t a;
  gs_error_t err = {0};
  memset(&a, 0, sizeof a);
  a.rc = be->ops->confine(be, in->dev, in->gi_id, in->ci_id, &a.conf, &err);
  snprintf(a.msg, sizeof a.msg, "%.250s", err.msg);
  size_t off = 0;
  while (off < sizeof a) {
    ssize_t n = write(fd, (char *)&a + off, sizeof a - off);
    if (n <= 0 && errno != EINTR)
      _exit(1);
    off += n > 0 ? (size_t)n : 0;
  }
  _exit(0);
}

/* The env confine gives the instance, read back from a child that ran it
 * (confine pins CPUs, enters cgroups and starts MPS for the caller). */
static void read_env(gs_backend_t *be, gs_k8s_instance_t *in) {
  confine_answer_t a;
  int fds[2];
  memset(&a, 0, sizeof a);
  if (pipe(fds) != 0) {
    snprintf(in->confine_error, sizeof in->confine_error, "pipe: %s",
             strerror(errno));
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child_confine(be, in, fds[1]);
  }
  close(fds[1]);
  size_t off = 0;
  while (pid > 0 && off < sizeof a) {
    ssize_t n = read(fds[0], (char *)&a + off, sizeof a - off);
    if (n == 0 || (n < 0 && errno != EINTR))
      break;
    off += n > 0 ? (size_t)n : 0;
  }
  close(fds[0]);
  int ws;
  while (pid > 0 && waitpid(pid, &ws, 0) < 0 && errno == EINTR)
    ;
  if (pid < 0 || off != sizeof a)
    snprintf(in->confine_error, sizeof in->confine_error,
             "the backend's confine did not answer (%s)",
             pid < 0 ? strerror(errno) : "child died");
  else if (a.rc != GS_OK)
    snprintf(in->confine_error, sizeof in->confine_error, "%s", a.msg);
  else
    in->conf = a.conf;
}

static const char *env_of(const gs_confinement_t *c, const char *name) {
  for (unsigned i = 0; i < c->n_env; i++)
    if (strcmp(c->env_name[i], name) == 0)
      return c->env_value[i];
  return NULL;
}

static void add_node(gs_k8s_instance_t *in, const char *base, long n) {
  if (in->n_nodes == GS_K8S_MAX_NODES)
    return;
  if (n >= 0)
    snprintf(in->node[in->n_nodes++], sizeof in->node[0], "%s%ld", base, n);
  else
    snprintf(in->node[in->n_nodes++], sizeof in->node[0], "%s", base);
}

/* "DeviceFileMinor: N" of a capability file; -1 when missing. */
static long cap_minor(const char *path) {
  char line[128];
  long minor = -1;
  FILE *f = fopen(path, "re");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "DeviceFileMinor: %ld", &minor) == 1)
      break;
  fclose(f);
  return minor;
}

/* The GPU's /dev/nvidiaN: the minor from the driver's information file
 * (PROC/gpus/BUS/information) whose UUID is the GPU's; the device index
 * when none says. */
static unsigned gpu_minor(const char *proc, const char *uuid, unsigned index) {
  char dir[512], path[1024], line[256];
  snprintf(dir, sizeof dir, "%s/gpus", proc);
  DIR *d = opendir(dir);
  unsigned found = index;
  struct dirent *ent;
  while (d && (ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s/information", dir, ent->d_name);
    FILE *f = fopen(path, "re");
    long minor = -1;
    bool match = false;
    while (f && fgets(line, sizeof line, f)) {
      char u[GS_UUID_MAX];
      if (sscanf(line, "Device Minor: %ld", &minor) == 1)
        continue;
      if (sscanf(line, "GPU UUID: %63s", u) == 1)
        match = strcmp(u, uuid) == 0;
    }
    if (f)
      fclose(f);
    if (match && minor >= 0) {
      found = (unsigned)minor;
      break;
    }
  }
  if (d)
    closedir(d);
  return found;
}

/* Device nodes of a GPU (soft) or of a MIG compute instance: the GPU's,
 * the control and UVM nodes, and for MIG the GI's and CI's capability
 * nodes (/dev/nvidia-caps/nvidia-capN, N from the driver's capability
 * files), as the container toolkit mounts them. */
static void set_nodes(gs_k8s_instance_t *in, const char *backend,
                      const char *proc) {
  unsigned minor = gpu_minor(proc, in->gpu_uuid, in->dev);
  char path[512];
  in->n_nodes = 0;
  add_node(in, "/dev/nvidiactl", -1);
  add_node(in, "/dev/nvidia-uvm", -1);
  add_node(in, "/dev/nvidia-uvm-tools", -1);
  add_node(in, "/dev/nvidia", minor);
  if (strcmp(backend, "mig") != 0)
    return;
  snprintf(path, sizeof path, "%s/capabilities/gpu%u/mig/gi%u/access", proc,
           minor, in->gi_id);
  long gi = cap_minor(path);
  snprintf(path, sizeof path, "%s/capabilities/gpu%u/mig/gi%u/ci%u/access",
           proc, minor, in->gi_id, in->ci_id);
  long ci = cap_minor(path);
  if (gi >= 0)
    add_node(in, "/dev/nvidia-caps/nvidia-cap", gi);
  if (ci >= 0)
    add_node(in, "/dev/nvidia-caps/nvidia-cap", ci);
}

static const gs_k8s_instance_t *find_old(const gs_k8s_inventory_t *old,
                                         const char *uuid) {
  for (unsigned i = 0; old && i < old->n; i++)
    if (strcmp(old->inst[i].uuid, uuid) == 0)
      return &old->inst[i];
  return NULL;
}

static void fill_instance(gs_backend_t *be, const gs_device_t *d,
                          const gs_gi_t *gi, const gs_ci_t *ci,
                          const gs_k8s_options_t *opt, gs_k8s_instance_t *in) {
  const gs_gi_profile_t *gp = gs_catalog_gi(&d->catalog, gi->profile_id);
  const gs_ci_profile_t *cp = gp ? gs_catalog_ci(gp, ci->profile_id) : NULL;
  memset(in, 0, sizeof *in);
  in->dev = d->index;
  in->gi_id = gi->id;
  in->ci_id = ci->id;
  in->single_ci = gi->n_ci == 1;
  if (gp && cp)
    gs_catalog_device_name(gp, cp, in->profile, sizeof in->profile);
  else
    snprintf(in->profile, sizeof in->profile, "profile-%u", gi->profile_id);
  snprintf(in->uuid, sizeof in->uuid, "%s", ci->uuid);
  snprintf(in->gpu_uuid, sizeof in->gpu_uuid, "%s", d->uuid);
  const gs_k8s_instance_t *was = find_old(opt ? opt->old : NULL, in->uuid);
  if (was) {
    in->conf = was->conf;
    memcpy(in->confine_error, was->confine_error, sizeof in->confine_error);
  } else {
    read_env(be, in);
  }
  const char *pipe_dir = env_of(&in->conf, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
                             ? env_of(&in->conf, "CUDA_MPS_PIPE_DIRECTORY")
                             : NULL;
  if (pipe_dir) { /* both fields of *in: copied, not printed */
    size_t len = strnlen(pipe_dir, sizeof in->mps_pipe - 1);
    memmove(in->mps_pipe, pipe_dir, len);
    in->mps_pipe[len] = '\0';
  }
  if (strcmp(be->ops->name, "host") != 0)
    set_nodes(in, be->ops->name,
              opt && opt->nvidia_proc ? opt->nvidia_proc
                                      : "/proc/driver/nvidia");
}

int gs_k8s_inventory_read(gs_backend_t *be, const gs_k8s_options_t *opt,
                          gs_k8s_inventory_t *inv, gs_error_t *err) {
  unsigned n_dev = 0;
  int rc = be->ops->device_count(be, &n_dev, err);
  gs_device_t *d = rc == GS_OK ? malloc(sizeof *d) : NULL;
  if (rc == GS_OK && !d)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  memset(inv, 0, sizeof *inv);
  const char *name = be->ops->name;
  for (size_t k = 0; k + 1 < sizeof inv->backend && name[k]; k++)
    inv->backend[k] = name[k];
  for (unsigned i = 0; rc == GS_OK && i < n_dev; i++) {
    rc = be->ops->device_get(be, i, d, err);
    for (unsigned g = 0; rc == GS_OK && g < d->layout.n_gi; g++)
      for (unsigned c = 0; rc == GS_OK && c < d->layout.gi[g].n_ci; c++) {
        if (inv->n == GS_K8S_MAX_INSTANCES)
          rc = gs_error_set(err, GS_ELIMIT, "more than %u instances",
                            GS_K8S_MAX_INSTANCES);
        else
          fill_instance(be, d, &d->layout.gi[g], &d->layout.gi[g].ci[c], opt,
                        &inv->inst[inv->n++]);
      }
  }
  free(d);
  return rc;
}

/* A process that exists and is not a zombie (a daemon killed whose parent
 * has not reaped it yet is dead for its clients). */
static bool running(long pid) {
  char path[64], text[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  const char *paren = strrchr(text, ')'); /* the name may hold spaces */
  return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* Whether the daemon whose pid file is in dir runs; no pid file: none was
 * started yet (the first client's confine starts it), which is fine. */
static bool mps_alive(const char *dir, char *why, size_t size) {
  char path[512], text[32] = "";
  snprintf(path, sizeof path, "%s/%s", dir, MPS_PID_FILE);
  FILE *f = fopen(path, "re");
  if (!f)
    return true;
  bool got = fgets(text, sizeof text, f) != NULL;
  fclose(f);
  long pid = got ? strtol(text, NULL, 10) : 0;
  if (pid > 0 && running(pid))
    return true;
  snprintf(why, size, "its GPU's MPS daemon (pid %ld, %s) is dead", pid, dir);
  return false;
}

bool gs_k8s_instance_healthy(const gs_k8s_instance_t *in,
                             const gs_k8s_inventory_t *live, char *why,
                             size_t size) {
  if (live && !find_old(live, in->uuid)) {
    snprintf(why, size, "instance %u:%u:%u is gone from the layout", in->dev,
             in->gi_id, in->ci_id);
    return false;
  }
  if (in->confine_error[0]) {
    snprintf(why, size, "%s", in->confine_error);
    return false;
  }
  return in->mps_pipe[0] ? mps_alive(in->mps_pipe, why, size) : true;
}
