/* Run-time loading shared by the NVML and CUDA driver shims. */
#ifndef GPUSLICE_GPU_DL_INT_H
#define GPUSLICE_GPU_DL_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuslice/error.h"

/* dlopen(path) or GS_ENODEV "<what> not found: dlopen PATH: <dlerror>". */
int gs__dl_open(void **dl, const char *path, const char *what, gs_error_t *err);

/* Stores dlsym(sym), else dlsym(old) when old is not NULL, into the
 * function pointer at fn_slot; false when neither exists. */
bool gs__dl_resolve(void *dl, void *fn_slot, const char *sym, const char *old);

/* gs__dl_open after copying path into dst (the loaded library's name, for
 * messages); GS_EINVAL when it does not fit. */
int gs__dl_open_named(void **dl, char *dst, size_t dst_size, const char *path,
                      const char *what, gs_error_t *err);

/* A loader's "LIB lacks SYM" error (GS_EUNSUPPORTED); needs `err`. */
#define GS__DL_MISSING(lib, sym)                                               \
  gs_error_set(err, GS_EUNSUPPORTED, "%s lacks %s: %s", lib, sym,              \
               "that version is too old or not the one gpuslice expects")

#endif
