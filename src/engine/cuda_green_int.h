/* Green contexts for the CUDA provider: a session asked for an SM
 * partition runs on a green context holding those SMs only (cuda_green.c).
 * Private to the engine; cuda_provider.c hooks it into context setup. */
#ifndef GPUSLICE_ENGINE_CUDA_GREEN_INT_H
#define GPUSLICE_ENGINE_CUDA_GREEN_INT_H

#include "gpu/cuda_shim.h"

/* Whether SMs [first, first + count) can be a partition of a GPU whose SMs
 * split into `groups` groups of `unit`: count > 0, both multiples of unit,
 * within groups * unit of `total` SMs. GS_EINVAL naming the numbers. */
int gs__green_check(unsigned unit, unsigned groups, unsigned total,
                    unsigned first, unsigned count, gs_error_t *err);

typedef struct gs__cuda_green_s gs__cuda_green_t;

/* A green context on device dev (ordinal `ordinal`, for messages) over SMs
 * [first, first + count) of the process's one split of that GPU (so that
 * any two sessions of the process given disjoint ranges run on disjoint
 * SMs), with a non-blocking stream of its own. *ctx is the context to make
 * current (memory is the primary context's: weights allocated under any
 * session of the device are usable here). Errors are never GS_ENODEV or
 * GS_EUNSUPPORTED, so an AUTO session does not fall back to the CPU when
 * its partition cannot be had. Release with gs__cuda_green_close. */
int gs__cuda_green_open(gs__cuda_green_t **out, const gs__cuda_t *cu,
                        CUdevice dev, int ordinal, unsigned first,
                        unsigned count, CUcontext *ctx, CUstream *stream,
                        gs_error_t *err);
/* Destroys the green context; its stream must be destroyed first. NULL is
 * a no-op. */
void gs__cuda_green_close(gs__cuda_green_t *g);

#endif
