/* Green contexts for the CUDA provider. The process splits each GPU's SMs
 * once into groups of the driver's granularity; a session asked for SMs
 * [first, first + count) gets a green context over the groups covering
 * them, so that sessions of one process given disjoint ranges (the
 * instances of one green-isolation worker) never share an SM. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_green_int.h"

int gs__green_check(unsigned unit, unsigned groups, unsigned total,
                    unsigned first, unsigned count, gs_error_t *err) {
  if (unit == 0 || count == 0)
    return gs_error_set(err, GS_EINVAL,
                        "an SM partition needs at least one group of %u SMs "
                        "(asked for %u SMs from SM %u)",
                        unit, count, first);
  if (first % unit || count % unit)
    return gs_error_set(err, GS_EINVAL,
                        "SM partition of %u SMs from SM %u: this GPU's green "
                        "contexts come in groups of %u SMs, so both numbers "
                        "must be multiples of %u",
                        count, first, unit, unit);
  unsigned usable = groups * unit;
  if (first > usable || count > usable - first)
    return gs_error_set(err, GS_EINVAL,
                        "SM partition of %u SMs from SM %u ends at SM %u; the "
                        "GPU has %u SMs, of which %u split into %u green-"
                        "context groups of %u",
                        count, first, first + count, total, usable, groups,
                        unit);
  return GS_OK;
}

/* ---- the process's split of each GPU ----------------------------------- */

typedef struct split_s {
  CUdevice dev;
  unsigned unit, groups, total;
  CUdevResource *group;
  struct split_s *next;
} split_t;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static gs__cuda_green_fns_t g_fns;
static bool g_fns_loaded;
static split_t *g_splits; /* kept for the life of the process */

struct gs__cuda_green_s {
  CUgreenCtx ctx;
};

static int fail(const gs__cuda_t *cu, CUresult r, int ordinal, const char *call,
                gs_error_t *err) {
  return gs_error_set(err, GS_EDRIVER, "CUDA device %d: %s failed: %s", ordinal,
                      call, gs__cuda_strerror(cu, r));
}

/* Splits dev's SMs into as many groups of the driver's granularity as it
 * makes; the groups' own size is the unit (the driver may round up). */
static int split_device(const gs__cuda_t *cu, CUdevice dev, int ordinal,
                        split_t *sp, gs_error_t *err) {
  CUdevResource all;
  memset(&all, 0, sizeof all);
  CUresult r = g_fns.DeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM);
  if (r != CUDA_SUCCESS)
    return fail(cu, r, ordinal, "cuDeviceGetDevResource", err);
  unsigned unit = gs__cuda_green_unit(all.sm.minSmPartitionSize,
                                      all.sm.smCoscheduledAlignment);
  unsigned n = 0;
  r = g_fns.DevSmResourceSplitByCount(NULL, &n, &all, NULL, 0, unit);
  if (r != CUDA_SUCCESS)
    return fail(cu, r, ordinal, "cuDevSmResourceSplitByCount (count)", err);
  if (n == 0)
    return gs_error_set(err, GS_EDRIVER,
                        "CUDA device %d: its %u SMs make no green-context "
                        "group of %u",
                        ordinal, all.sm.smCount, unit);
  sp->group = calloc(n, sizeof *sp->group);
  if (!sp->group)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  r = g_fns.DevSmResourceSplitByCount(sp->group, &n, &all, NULL, 0, unit);
  if (r != CUDA_SUCCESS)
    return fail(cu, r, ordinal, "cuDevSmResourceSplitByCount", err);
  sp->dev = dev;
  sp->groups = n;
  sp->unit = sp->group[0].sm.smCount ? sp->group[0].sm.smCount : unit;
  sp->total = all.sm.smCount;
  return GS_OK;
}

/* The split of dev, made on first use; g_lock held. */
static int split_of(const gs__cuda_t *cu, CUdevice dev, int ordinal,
                    split_t **out, gs_error_t *err) {
  if (!g_fns_loaded) {
    int rc = gs__cuda_green_load(cu, &g_fns, err);
    if (rc != GS_OK)
      return rc;
    g_fns_loaded = true;
  }
  for (split_t *sp = g_splits; sp; sp = sp->next)
    if (sp->dev == dev) {
      *out = sp;
      return GS_OK;
    }
  split_t *sp = calloc(1, sizeof *sp);
  if (!sp)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = split_device(cu, dev, ordinal, sp, err);
  if (rc != GS_OK) {
    free(sp->group);
    free(sp);
    return rc;
  }
  sp->next = g_splits;
  g_splits = sp;
  *out = sp;
  return GS_OK;
}

/* ---- one session's green context --------------------------------------- */

static int make_context(const gs__cuda_t *cu, const split_t *sp, int ordinal,
                        unsigned first, unsigned count, gs__cuda_green_t *g,
                        CUcontext *ctx, CUstream *stream, gs_error_t *err) {
  CUdevResourceDesc desc = NULL;
  CUcontext c = NULL;
  CUstream st = NULL;
  CUresult r = g_fns.DevResourceGenerateDesc(
      &desc, &sp->group[first / sp->unit], count / sp->unit);
  if (r != CUDA_SUCCESS)
    return fail(cu, r, ordinal, "cuDevResourceGenerateDesc", err);
  r = g_fns.GreenCtxCreate(&g->ctx, desc, sp->dev, CU_GREEN_CTX_DEFAULT_STREAM);
  if (r != CUDA_SUCCESS) {
    g->ctx = NULL;
    return fail(cu, r, ordinal, "cuGreenCtxCreate", err);
  }
  if ((r = g_fns.CtxFromGreenCtx(&c, g->ctx)) != CUDA_SUCCESS)
    return fail(cu, r, ordinal, "cuCtxFromGreenCtx", err);
  if ((r = cu->CtxSetCurrent(c)) != CUDA_SUCCESS)
    return fail(cu, r, ordinal, "cuCtxSetCurrent (green context)", err);
  r = g_fns.GreenCtxStreamCreate(&st, g->ctx, CU_STREAM_NON_BLOCKING, 0);
  if (r != CUDA_SUCCESS) {
    /* the caller destroys the green context: leave this thread on no
     * context rather than on one about to go (every entry point makes
     * its own current first) */
    cu->CtxSetCurrent(NULL);
    return fail(cu, r, ordinal, "cuGreenCtxStreamCreate", err);
  }
  /* Only now: on failure the caller's context and stream stay its own. */
  *ctx = c;
  *stream = st;
  return GS_OK;
}

int gs__cuda_green_open(gs__cuda_green_t **out, const gs__cuda_t *cu,
                        CUdevice dev, int ordinal, unsigned first,
                        unsigned count, CUcontext *ctx, CUstream *stream,
                        gs_error_t *err) {
  *out = NULL;
  gs__cuda_green_t *g = calloc(1, sizeof *g);
  if (!g)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  split_t *sp = NULL;
  pthread_mutex_lock(&g_lock);
  int rc = split_of(cu, dev, ordinal, &sp, err);
  if (rc == GS_OK && (rc = gs__green_check(sp->unit, sp->groups, sp->total,
                                           first, count, err)) != GS_OK)
    gs_error_prefix(err, "CUDA device %d: ", ordinal);
  if (rc == GS_OK)
    rc = make_context(cu, sp, ordinal, first, count, g, ctx, stream, err);
  pthread_mutex_unlock(&g_lock);
  if (rc != GS_OK) {
    gs__cuda_green_close(g);
    return rc;
  }
  *out = g;
  return GS_OK;
}

void gs__cuda_green_close(gs__cuda_green_t *g) {
  if (!g)
    return;
  if (g->ctx)
    g_fns.GreenCtxDestroy(g->ctx);
  free(g);
}
