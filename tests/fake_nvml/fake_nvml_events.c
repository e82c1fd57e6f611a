/* TEST-ONLY fake NVML: injected GPU faults. FAKE_NVML_EVENTS names a file
 * the fake reads again on every event wait and memory query, one fault a
 * line: "xid GPU XID [GI CI]" (a critical-XID event, delivered once per
 * process to an event set registered on GPU) or "lost GPU"
 * (nvmlDeviceGetMemoryInfo answers NVML_ERROR_GPU_IS_LOST). The legacy
 * build has no event calls (an NVML without them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_nvml_int.h"

int fake_gpu_lost(unsigned gpu) {
  const char *path = getenv("FAKE_NVML_EVENTS");
  FILE *f = path ? fopen(path, "re") : NULL;
  char line[128];
  unsigned n;
  int lost = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "lost %u", &n) == 1 && n == gpu)
      lost = 1;
  if (f)
    fclose(f);
  return lost;
}

#ifndef FAKE_NVML_LEGACY
struct nvmlEventSet_st {
  unsigned long long mask[MAX_GPUS];
  unsigned delivered; /* xid lines of the file handed out so far */
};
static struct nvmlEventSet_st the_set;
static int set_used;

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
  if (!fk.refs)
    return NVML_ERROR_UNINITIALIZED;
  if (!set || set_used)
    return NVML_ERROR_INVALID_ARGUMENT; /* one set is all a test needs */
  memset(&the_set, 0, sizeof the_set);
  set_used = 1;
  *set = &the_set;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  if (set != &the_set || !set_used)
    return NVML_ERROR_INVALID_ARGUMENT;
  set_used = 0;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t dev,
                                             unsigned long long types,
                                             nvmlEventSet_t set) {
  if (!gpu_of(dev) || set != &the_set || !set_used)
    return NVML_ERROR_INVALID_ARGUMENT;
  set->mask[dev->gpu] |= types;
  return NVML_SUCCESS;
}

/* The next xid line not yet delivered, on a GPU registered for it. */
EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set,
                                        nvmlEventData_t *data,
                                        unsigned timeout_ms) {
  (void)timeout_ms; /* nothing comes while waiting: answer at once */
  if (set != &the_set || !set_used || !data)
    return NVML_ERROR_INVALID_ARGUMENT;
  const char *path = getenv("FAKE_NVML_EVENTS");
  FILE *f = path ? fopen(path, "re") : NULL;
  char line[128];
  unsigned k = 0, gpu, gi, ci;
  unsigned long long xid;
  nvmlReturn_t r = NVML_ERROR_TIMEOUT;
  while (f && r == NVML_ERROR_TIMEOUT && fgets(line, sizeof line, f)) {
    int got = sscanf(line, "xid %u %llu %u %u", &gpu, &xid, &gi, &ci);
    if (got < 2 || k++ < set->delivered)
      continue;
    set->delivered++;
    if (gpu >= fk.n_gpu || !(set->mask[gpu] & nvmlEventTypeXidCriticalError))
      continue;
    memset(data, 0, sizeof *data);
    data->device = &h_gpu[gpu];
    data->eventType = nvmlEventTypeXidCriticalError;
    data->eventData = xid;
    data->gpuInstanceId = got == 4 ? gi : NO_ID;
    data->computeInstanceId = got == 4 ? ci : NO_ID;
    r = NVML_SUCCESS;
  }
  if (f)
    fclose(f);
  return r;
}
#endif
