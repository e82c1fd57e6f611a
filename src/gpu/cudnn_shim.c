/* The cuDNN loader: dlopen, one dlsym per listed function. */
#include "gpu/cudnn_shim.h"

#include "gpu/dl_int.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int gs__cudnn_open(gs__cudnn_t *c, const char *path, gs_error_t *err) {
  memset(c, 0, sizeof *c);
  int rc = gs__dl_open_named(&c->dl, c->path, sizeof c->path,
                             path && path[0] ? path : GS__CUDNN_DEFAULT_LIBRARY,
                             "cuDNN", err);
  if (rc != GS_OK)
    return rc;
#define GS__CUDNN_LOAD(field, ret, params, sym)                                \
  if (rc == GS_OK && !gs__dl_resolve(c->dl, &c->field, sym, NULL))             \
    rc = GS__DL_MISSING(c->path, sym);
  GS__CUDNN_FUNCS(GS__CUDNN_LOAD)
#undef GS__CUDNN_LOAD
  if (rc != GS_OK) {
    dlclose(c->dl);
    memset(c, 0, sizeof *c);
    return rc;
  }
  c->version = c->GetVersion();
  return GS_OK;
}

void gs__cudnn_close(gs__cudnn_t *c) {
  if (c && c->dl)
    dlclose(c->dl);
  if (c)
    memset(c, 0, sizeof *c);
}

const char *gs__cudnn_strerror(const gs__cudnn_t *c, cudnnStatus_t status) {
  const char *s = c && c->GetErrorString ? c->GetErrorString(status) : NULL;
  return s ? s : "unknown cuDNN error";
}
