/* The soft backend's machine: the GPUs NVML lists whose MIG mode is not
 * on, each with the catalog MIG would offer on its model (or one
 * synthesized from its SMs and memory), and SM counts from the CUDA
 * driver, read in a child process. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/soft_int.h"
#include "gpu/cuda_shim.h"

/* What the child reading SM counts sends back. */
typedef struct sms_report_s {
  int rc;
  char msg[sizeof((gs_error_t *)0)->msg];
  unsigned n;
  gs__cuda_gpu_t gpu[GS_MAX_DEVICES];
  gs__green_gpu_t green[GS_MAX_DEVICES]; /* how each splits for green */
} sms_report_t;

void gs__soft_gpu_procs(const gs__soft_t *s, unsigned dev,
                        nvmlProcessInfo_t **info, unsigned *n) {
  unsigned cap = 64;
  *info = NULL;
  *n = 0;
  for (unsigned tries = 0; tries < 3; tries++) {
    nvmlProcessInfo_t *buf = calloc(cap, sizeof *buf);
    unsigned count = cap;
    if (!buf)
      return;
    nvmlReturn_t r = s->nvml.DeviceGetComputeRunningProcesses(
        s->gpu[dev].handle, &count, buf);
    if (r == NVML_SUCCESS) {
      *info = buf;
      *n = count < cap ? count : cap;
      return;
    }
    free(buf);
    if (r != NVML_ERROR_INSUFFICIENT_SIZE)
      return; /* NVML cannot tell: no processes known */
    cap = count + 16;
  }
}

/* ---- SM counts from CUDA ----------------------------------------------- */

static void write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t put = write(fd, p, len);
    if (put < 0 && errno == EINTR)
      continue;
    if (put <= 0)
      return;
    p += put;
    len -= (size_t)put;
  }
}

/* The child: CUDA must see every GPU and connect to no MPS daemon (cuInit
 * would join one listening in the default pipe directory). */
static void sms_child(const gs__soft_t *s, int fd) {
  static sms_report_t rep;
  char off[GS__PATH_MAX + 16];
  gs__mps_off_dir(s, off, sizeof off);
  setenv("CUDA_MPS_PIPE_DIRECTORY", off, 1);
  unsetenv("CUDA_VISIBLE_DEVICES");
  gs_error_t err;
  gs_error_clear(&err);
  gs__cuda_t cuda;
  rep.rc =
      gs__cuda_open(&cuda, s->cuda_library[0] ? s->cuda_library : NULL, &err);
  if (rep.rc == GS_OK) {
    rep.rc = gs__cuda_list(&cuda, rep.gpu, GS_MAX_DEVICES, &rep.n, &err);
    for (unsigned k = 0; rep.rc == GS_OK && k < rep.n; k++)
      gs__green_probe(&cuda, k, &rep.green[k]);
    gs__cuda_close(&cuda);
  }
  snprintf(rep.msg, sizeof rep.msg, "%s", err.msg);
  write_all(fd, &rep, sizeof rep);
  _exit(0);
}

static int read_report(int fd, sms_report_t *rep) {
  size_t got = 0;
  while (got < sizeof *rep) {
    ssize_t n = read(fd, (char *)rep + got, sizeof *rep - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  return got == sizeof *rep ? 0 : -1;
}

int gs__soft_read_sms(gs__soft_t *s, gs_error_t *err) {
  if (s->sms_read)
    return GS_OK;
  sms_report_t *rep = malloc(sizeof *rep);
  int fds[2];
  if (!rep)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  if (pipe2(fds, O_CLOEXEC) != 0) {
    free(rep);
    return gs_error_sys(err, errno, "reading SM counts: pipe");
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    sms_child(s, fds[1]);
  }
  close(fds[1]);
  int rc = GS_OK, status = 0;
  bool complete = pid > 0 && read_report(fds[0], rep) == 0;
  close(fds[0]);
  if (pid < 0)
    rc = gs_error_sys(err, errno, "reading SM counts: fork");
  else
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  if (rc == GS_OK && !complete)
    rc = gs_error_set(err, GS_EDRIVER,
                      "reading SM counts: the process asking CUDA ended "
                      "without an answer (status %d)",
                      status);
  if (rc == GS_OK && rep->rc != GS_OK)
    rc = gs_error_set(err, rep->rc, "%s", rep->msg);
  for (unsigned d = 0; rc == GS_OK && d < s->core.n_dev; d++)
    for (unsigned k = 0; k < rep->n && k < GS_MAX_DEVICES; k++)
      if (strcasecmp(rep->gpu[k].uuid, s->gpu[d].uuid) == 0) {
        s->gpu[d].sms = rep->gpu[k].sms;
        s->gpu[d].green = rep->green[k];
      }
  s->sms_read = rc == GS_OK;
  free(rep);
  return rc;
}

/* ---- GPUs and catalogs ------------------------------------------------- */

static const char *short_name(const char *name) {
  return strncmp(name, "NVIDIA ", 7) == 0 ? name + 7 : name;
}

static int nvml_fail(const gs__soft_t *s, unsigned i, nvmlReturn_t r,
                     const char *call, gs_error_t *err) {
  char what[64];
  snprintf(what, sizeof what, "reading GPU %u", i);
  return gs__nvml_fail(&s->nvml, r, call, err, what);
}

/* GPU i's identity when its MIG mode is not on (*eligible); a GPU without
 * MIG answers the mode query with NOT_SUPPORTED. */
static int probe_gpu(gs__soft_t *s, unsigned i, gs__soft_gpu_t *g,
                     bool *eligible, gs_error_t *err) {
  memset(g, 0, sizeof *g);
  g->nvml_index = i;
  nvmlReturn_t r = s->nvml.DeviceGetHandleByIndex(i, &g->handle);
  if (r != NVML_SUCCESS)
    return nvml_fail(s, i, r, "nvmlDeviceGetHandleByIndex", err);
  unsigned cur = 0, pending = 0;
  r = s->nvml.DeviceGetMigMode(g->handle, &cur, &pending);
  *eligible = r != NVML_SUCCESS || cur != NVML_DEVICE_MIG_ENABLE;
  if (!*eligible)
    return GS_OK;
  nvmlPciInfo_t pci;
  nvmlMemory_t mem;
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  if ((r = s->nvml.DeviceGetName(g->handle, g->name, sizeof g->name)))
    return nvml_fail(s, i, r, "nvmlDeviceGetName", err);
  if ((r = s->nvml.DeviceGetUUID(g->handle, uuid, sizeof uuid)))
    return nvml_fail(s, i, r, "nvmlDeviceGetUUID", err);
  /* It names directories: only what a GPU UUID holds is accepted. */
  if (strlen(uuid) >= sizeof g->uuid || strncmp(uuid, "GPU-", 4) != 0 ||
      strspn(uuid + 4, "-0123456789abcdefABCDEF") != strlen(uuid + 4))
    return gs_error_set(err, GS_EDRIVER, "GPU %u has an unexpected UUID '%s'",
                        i, uuid);
  memcpy(g->uuid, uuid, strlen(uuid) + 1); /* length checked above */
  if ((r = s->nvml.DeviceGetPciInfo(g->handle, &pci)))
    return nvml_fail(s, i, r, "nvmlDeviceGetPciInfo", err);
  g->pci_device_id = pci.pciDeviceId;
  if ((r = s->nvml.DeviceGetMemoryInfo(g->handle, &mem)))
    return nvml_fail(s, i, r, "nvmlDeviceGetMemoryInfo", err);
  g->memory_mib = mem.total >> 20;
  return GS_OK;
}

/* The profiles MIG offers on this model, else synthesized ones (which
 * need the SM count). */
static int build_catalog(gs__soft_t *s, unsigned d, gs_error_t *err) {
  gs__soft_gpu_t *g = &s->gpu[d];
  gs_catalog_t *cat = &s->core.dev[d].cat;
  if (gs_catalog_for_pci_id(cat, g->pci_device_id, g->memory_mib, NULL) ==
      GS_OK)
    return GS_OK;
  int rc = gs__soft_read_sms(s, err);
  if (rc == GS_OK && g->sms == 0)
    rc = gs_error_set(err, GS_EDRIVER,
                      "CUDA does not list GPU %u (%s): its SM count is "
                      "unknown",
                      g->nvml_index, g->uuid);
  if (rc != GS_OK) {
    gs_error_prefix(err,
                    "GPU %u (%s) has no MIG profile table: ", g->nvml_index,
                    short_name(g->name));
    return rc;
  }
  gs_catalog_synth_soft(cat, g->name, g->sms, g->memory_mib);
  return GS_OK;
}

static int probe_gpus(gs__soft_t *s, gs_error_t *err) {
  unsigned n = 0, mig_on = 0;
  nvmlReturn_t r = s->nvml.DeviceGetCount(&n);
  if (r != NVML_SUCCESS)
    return gs__nvml_fail(&s->nvml, r, "nvmlDeviceGetCount", err,
                         "counting GPUs");
  for (unsigned i = 0; i < n && s->core.n_dev < GS_MAX_DEVICES; i++) {
    bool eligible = false;
    int rc = probe_gpu(s, i, &s->gpu[s->core.n_dev], &eligible, err);
    if (rc != GS_OK)
      return rc;
    mig_on += !eligible;
    s->core.n_dev += eligible;
  }
  if (s->core.n_dev == 0 && mig_on > 0)
    return gs_error_set(err, GS_ENODEV,
                        "every GPU (%u) has MIG mode on: the mig backend "
                        "drives them (--backend mig)",
                        mig_on);
  if (s->core.n_dev == 0)
    return gs_error_set(err, GS_ENODEV, "the NVIDIA driver lists no GPU");
  for (unsigned d = 0; d < s->core.n_dev; d++) {
    gs__swdev_t *dev = &s->core.dev[d];
    int rc = build_catalog(s, d, err);
    if (rc != GS_OK)
      return rc;
    snprintf(dev->label, sizeof dev->label, "device %u (%s)", d,
             short_name(s->gpu[d].name));
    snprintf(dev->uuid, sizeof dev->uuid, "%s", s->gpu[d].uuid);
    snprintf(dev->name, sizeof dev->name, "%s", s->gpu[d].name);
    snprintf(dev->device_uuid, sizeof dev->device_uuid, "%s", s->gpu[d].uuid);
    dev->pci_device_id = s->gpu[d].pci_device_id;
  }
  return GS_OK;
}

static int copy_path(char *dst, const char *src, const char *fallback,
                     const char *what, gs_error_t *err) {
  const char *p = src && *src ? src : fallback;
  if (strlen(p) >= GS__SOFT_LIB_MAX)
    return gs_error_set(err, GS_EINVAL, "%s path is too long", what);
  snprintf(dst, GS__SOFT_LIB_MAX, "%s", p);
  return GS_OK;
}

int gs_backend_soft_open(gs_backend_t **out, const gs_backend_options_t *opt,
                         gs_error_t *err) {
  *out = NULL;
  gs__soft_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM,
                        "opening the soft backend: out of memory");
  s->static_partitions = -1;
  s->core.be.ops = &gs__soft_ops;
  s->core.be.impl = s;
  int rc =
      gs__swcore_init(&s->core, "soft", "SOFT-", opt, &gs__soft_hooks, err);
  if (rc == GS_OK)
    rc = copy_path(s->cuda_library, opt->cuda_library, "", "CUDA library", err);
  if (rc == GS_OK)
    rc = copy_path(s->mps_control, opt->mps_control, GS__MPS_DEFAULT_CONTROL,
                   "MPS control program", err);
  if (rc == GS_OK) {
    s->isolation = opt->soft_isolation;
    rc = gs__nvml_open(&s->nvml, opt->nvml_library, err);
  }
  if (rc == GS_OK)
    rc = probe_gpus(s, err);
  if (rc != GS_OK) {
    s->core.be.ops->close(&s->core.be);
    return rc;
  }
  *out = &s->core.be;
  return GS_OK;
}
