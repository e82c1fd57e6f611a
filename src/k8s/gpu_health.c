/* A faulted GPU, for the device plugin's health rule and the metrics:
 * NVML's critical XID events (those NVIDIA's device plugin counts, not the
 * ones an application causes) and GPUs NVML reports lost. A fault stays
 * until the process restarts, as in NVIDIA's plugin. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/nvml_shim.h"
#include "gpuslice/k8s.h"

#define GH_MAX_FAULTS 64
#define GH_MAX_EVENTS 64 /* read per poll, so that a storm cannot stall it */
#define GH_NO_ID 0xFFFFFFFFu

typedef struct gh_fault_s {
  unsigned gpu, gi, ci; /* gi == GH_NO_ID: the whole GPU */
  unsigned long long xid;
} gh_fault_t;

struct gs_k8s_gpu_health_s {
  gs__nvml_t nvml;
  nvmlEventSet_t set; /* NULL: no XID watch */
  void (*log)(void *data, const char *line);
  void *log_data;
  unsigned n_gpu;
  struct {
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    nvmlDevice_t handle;
    bool lost;
  } gpu[GS_MAX_DEVICES];
  unsigned n_faults;
  gh_fault_t faults[GH_MAX_FAULTS];
};

__attribute__((format(printf, 2, 3))) static void gh_log(gs_k8s_gpu_health_t *h,
                                                         const char *fmt, ...) {
  char line[512];
  va_list ap;
  if (!h->log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  h->log(h->log_data, line);
}

/* XIDs an application causes (NVIDIA's device plugin ignores them too):
 * 13 graphics engine exception, 31 GPU memory page fault, 43 GPU stopped
 * processing, 45 preemptive cleanup, 68 video processor exception, 109
 * context switch timeout. */
bool gs_k8s_xid_ignored(unsigned long long xid) {
  static const unsigned app[] = {13, 31, 43, 45, 68, 109};
  for (size_t i = 0; i < sizeof app / sizeof app[0]; i++)
    if (xid == app[i])
      return true;
  return false;
}

static void watch_events(gs_k8s_gpu_health_t *h) {
  gs__nvml_t *n = &h->nvml;
  if (!n->EventSetCreate || !n->DeviceRegisterEvents || !n->EventSetWait ||
      !n->EventSetFree) {
    gh_log(h, "no XID watch: %s lacks nvmlEventSetWait_v2 and its kin",
           n->path);
    return;
  }
  nvmlReturn_t r = n->EventSetCreate(&h->set);
  if (r != NVML_SUCCESS) {
    h->set = NULL;
    gh_log(h, "no XID watch: nvmlEventSetCreate failed: %s",
           gs__nvml_strerror(n, r));
    return;
  }
  for (unsigned i = 0; i < h->n_gpu; i++)
    if ((r = n->DeviceRegisterEvents(h->gpu[i].handle,
                                     nvmlEventTypeXidCriticalError, h->set)) !=
        NVML_SUCCESS)
      gh_log(h, "no XID watch on GPU %s: nvmlDeviceRegisterEvents failed: %s",
             h->gpu[i].uuid, gs__nvml_strerror(n, r));
}

gs_k8s_gpu_health_t *gs_k8s_gpu_health_open(const char *nvml_library,
                                            void (*log)(void *, const char *),
                                            void *log_data) {
  gs_error_t err = {0};
  gs_k8s_gpu_health_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->log = log;
  h->log_data = log_data;
  if (gs__nvml_open(&h->nvml, nvml_library, &err) != GS_OK) {
    gh_log(h, "no GPU fault watch: %s", err.msg);
    free(h);
    return NULL;
  }
  unsigned count = 0;
  if (h->nvml.DeviceGetCount(&count) != NVML_SUCCESS)
    count = 0;
  for (unsigned i = 0; i < count && h->n_gpu < GS_MAX_DEVICES; i++) {
    nvmlDevice_t d;
    if (h->nvml.DeviceGetHandleByIndex(i, &d) != NVML_SUCCESS ||
        h->nvml.DeviceGetUUID(d, h->gpu[h->n_gpu].uuid,
                              sizeof h->gpu[0].uuid) != NVML_SUCCESS)
      continue;
    h->gpu[h->n_gpu++].handle = d;
  }
  watch_events(h);
  return h;
}

void gs_k8s_gpu_health_close(gs_k8s_gpu_health_t *h) {
  if (!h)
    return;
  if (h->set)
    h->nvml.EventSetFree(h->set);
  gs__nvml_close(&h->nvml);
  free(h);
}

static bool fatal(nvmlReturn_t r) {
  return r == NVML_ERROR_GPU_IS_LOST || r == NVML_ERROR_RESET_REQUIRED;
}

static void mark_lost(gs_k8s_gpu_health_t *h, unsigned i, nvmlReturn_t r) {
  if (h->gpu[i].lost)
    return;
  h->gpu[i].lost = true;
  gh_log(h, "GPU %s: %s: its instances are Unhealthy", h->gpu[i].uuid,
         gs__nvml_strerror(&h->nvml, r));
}

static void add_fault(gs_k8s_gpu_health_t *h, const nvmlEventData_t *e) {
  unsigned i = 0;
  while (i < h->n_gpu && h->gpu[i].handle != e->device)
    i++;
  if (gs_k8s_xid_ignored(e->eventData)) {
    gh_log(h, "XID %llu on GPU %s: an application error, ignored", e->eventData,
           i < h->n_gpu ? h->gpu[i].uuid : "?");
    return;
  }
  bool one = e->gpuInstanceId != GH_NO_ID && e->computeInstanceId != GH_NO_ID;
  gh_log(h, "critical XID %llu on GPU %s%s: Unhealthy", e->eventData,
         i < h->n_gpu ? h->gpu[i].uuid : "(unknown: all GPUs)",
         one ? " (one MIG instance)" : "");
  if (h->n_faults == GH_MAX_FAULTS)
    return;
  h->faults[h->n_faults++] = (gh_fault_t){
      i < h->n_gpu ? i : GH_NO_ID, one ? e->gpuInstanceId : GH_NO_ID,
      one ? e->computeInstanceId : GH_NO_ID, e->eventData};
}

void gs_k8s_gpu_health_poll(gs_k8s_gpu_health_t *h) {
  nvmlMemory_t mem;
  nvmlEventData_t e;
  if (!h)
    return;
  for (unsigned i = 0; i < h->n_gpu; i++) {
    nvmlReturn_t r = h->nvml.DeviceGetMemoryInfo(h->gpu[i].handle, &mem);
    if (fatal(r))
      mark_lost(h, i, r);
  }
  for (unsigned k = 0; h->set && k < GH_MAX_EVENTS; k++) {
    memset(&e, 0, sizeof e);
    nvmlReturn_t r = h->nvml.EventSetWait(h->set, &e, 1);
    if (fatal(r)) /* which GPU NVML does not say: all of them */
      for (unsigned i = 0; i < h->n_gpu; i++)
        mark_lost(h, i, r);
    if (r != NVML_SUCCESS)
      break;
    if (e.eventType & nvmlEventTypeXidCriticalError)
      add_fault(h, &e);
  }
}

bool gs_k8s_gpu_faulted(const gs_k8s_gpu_health_t *h,
                        const gs_k8s_instance_t *in, bool mig, char *why,
                        size_t size) {
  unsigned i = 0;
  if (!h)
    return false;
  while (i < h->n_gpu && strcmp(h->gpu[i].uuid, in->gpu_uuid) != 0)
    i++;
  if (i == h->n_gpu)
    return false;
  if (h->gpu[i].lost) {
    snprintf(why, size, "its GPU %s is lost to NVML", in->gpu_uuid);
    return true;
  }
  for (unsigned f = 0; f < h->n_faults; f++) {
    const gh_fault_t *x = &h->faults[f];
    bool gpu = x->gpu == i || x->gpu == GH_NO_ID;
    bool inst =
        x->gi == GH_NO_ID || !mig || (x->gi == in->gi_id && x->ci == in->ci_id);
    if (gpu && inst) {
      snprintf(why, size, "critical XID %llu on its GPU %s", x->xid,
               in->gpu_uuid);
      return true;
    }
  }
  return false;
}
