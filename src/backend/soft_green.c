/* Green isolation of the soft backend: where each instance's SMs lie when
 * all of a GPU's instances run as green contexts of one worker process.
 * An instance's range follows from its own placement alone (memory slice
 * `start` -> SM start * stride), so instances never move when others come
 * and go, and instances whose placements do not overlap never share SMs. */
#include <stdio.h>
#include <string.h>

#include "backend/soft_int.h"
#include "gpu/cuda_shim.h"

int gs__green_partition(const gs__green_gpu_t *g, unsigned memory_slices,
                        unsigned start, unsigned span, unsigned sms,
                        unsigned *first, unsigned *count, gs_error_t *err) {
  *first = *count = 0;
  if (g->unit == 0 || g->groups == 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "green contexts are not available on this GPU or "
                        "driver");
  unsigned stride = memory_slices ? g->total / memory_slices / g->unit : 0;
  stride *= g->unit;
  if (stride == 0)
    return gs_error_set(err, GS_EINVAL,
                        "%u SMs over %u memory slices leave less than one "
                        "green-context group of %u SMs per slice",
                        g->total, memory_slices, g->unit);
  unsigned usable = g->groups * g->unit;
  unsigned cnt = sms / g->unit * g->unit;
  if (cnt > span * stride)
    cnt = span * stride; /* never into a neighbour placement's SMs */
  unsigned at = start * stride;
  if (at + cnt > usable)
    cnt = usable > at ? (usable - at) / g->unit * g->unit : 0;
  if (cnt == 0)
    return gs_error_set(err, GS_ELIMIT,
                        "an instance of %u SMs at memory slice %u gets no "
                        "green-context SMs: the GPU's %u SMs split into %u "
                        "groups of %u, %u SMs per memory slice",
                        sms, start, g->total, g->groups, g->unit, stride);
  *first = at;
  *count = cnt;
  return GS_OK;
}

/* In the SM-reading child (no MPS, every GPU visible): how the driver
 * would split GPU `dev`; zeros when it has no green contexts. */
void gs__green_probe(const gs__cuda_t *cuda, unsigned dev, gs__green_gpu_t *g) {
  gs__cuda_green_fns_t fns;
  CUdevice d;
  CUdevResource all;
  memset(g, 0, sizeof *g);
  memset(&all, 0, sizeof all);
  if (gs__cuda_green_load(cuda, &fns, NULL) != GS_OK ||
      cuda->DeviceGet(&d, (int)dev) != CUDA_SUCCESS ||
      fns.DeviceGetDevResource(d, &all, CU_DEV_RESOURCE_TYPE_SM) !=
          CUDA_SUCCESS)
    return;
  unsigned unit = gs__cuda_green_unit(all.sm.minSmPartitionSize,
                                      all.sm.smCoscheduledAlignment);
  unsigned n = 0;
  if (fns.DevSmResourceSplitByCount(NULL, &n, &all, NULL, 0, unit) !=
      CUDA_SUCCESS)
    return;
  g->total = all.sm.smCount;
  g->unit = unit;
  g->groups = n;
}
