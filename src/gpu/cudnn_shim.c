/* The cuDNN and cuBLAS loaders: dlopen, one dlsym per listed function. */
#include "gpu/cublas_shim.h"
#include "gpu/cudnn_shim.h"

#include "gpu/dl_int.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* Shared by both loaders: opens path, names a missing library or symbol. */
static int open_lib(void **dl, char *dst, size_t dst_size, const char *path,
                    const char *what, gs_error_t *err) {
  if (strlen(path) >= dst_size)
    return gs_error_set(err, GS_EINVAL, "%s library path is too long", what);
  snprintf(dst, dst_size, "%s", path);
  return gs__dl_open(dl, path, what, err);
}

#define GS__MISSING(lib, sym)                                                  \
  gs_error_set(err, GS_EUNSUPPORTED, "%s lacks %s: %s", lib, sym,              \
               "that version is too old or not the one gpuslice expects")

int gs__cudnn_open(gs__cudnn_t *c, const char *path, gs_error_t *err) {
  memset(c, 0, sizeof *c);
  int rc = open_lib(&c->dl, c->path, sizeof c->path,
                    path && path[0] ? path : GS__CUDNN_DEFAULT_LIBRARY, "cuDNN",
                    err);
  if (rc != GS_OK)
    return rc;
#define GS__CUDNN_LOAD(field, ret, params, sym)                                \
  if (rc == GS_OK && !gs__dl_resolve(c->dl, &c->field, sym, NULL))             \
    rc = GS__MISSING(c->path, sym);
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

int gs__cublas_open(gs__cublas_t *c, const char *path, gs_error_t *err) {
  memset(c, 0, sizeof *c);
  int rc = open_lib(&c->dl, c->path, sizeof c->path,
                    path && path[0] ? path : GS__CUBLAS_DEFAULT_LIBRARY,
                    "cuBLAS", err);
  if (rc != GS_OK)
    return rc;
#define GS__CUBLAS_LOAD(field, ret, params, sym)                               \
  if (rc == GS_OK && !gs__dl_resolve(c->dl, &c->field, sym, NULL))             \
    rc = GS__MISSING(c->path, sym);
  GS__CUBLAS_FUNCS(GS__CUBLAS_LOAD)
#undef GS__CUBLAS_LOAD
  if (rc != GS_OK) {
    dlclose(c->dl);
    memset(c, 0, sizeof *c);
  }
  return rc;
}

void gs__cublas_close(gs__cublas_t *c) {
  if (c && c->dl)
    dlclose(c->dl);
  if (c)
    memset(c, 0, sizeof *c);
}

const char *gs__cublas_strerror(const gs__cublas_t *c, cublasStatus_t status) {
  const char *s = c && c->GetStatusString ? c->GetStatusString(status) : NULL;
  return s ? s : "unknown cuBLAS error";
}

int gs__cublaslt_open(gs__cublaslt_t *c, const char *path, gs_error_t *err) {
  memset(c, 0, sizeof *c);
  int rc = open_lib(&c->dl, c->path, sizeof c->path,
                    path && path[0] ? path : GS__CUBLASLT_DEFAULT_LIBRARY,
                    "cuBLASLt", err);
  if (rc != GS_OK)
    return rc;
#define GS__CUBLASLT_LOAD(field, ret, params, sym)                             \
  if (rc == GS_OK && !gs__dl_resolve(c->dl, &c->field, sym, NULL))             \
    rc = GS__MISSING(c->path, sym);
  GS__CUBLASLT_FUNCS(GS__CUBLASLT_LOAD)
#undef GS__CUBLASLT_LOAD
  if (rc != GS_OK) {
    dlclose(c->dl);
    memset(c, 0, sizeof *c);
  }
  return rc;
}

void gs__cublaslt_close(gs__cublaslt_t *c) {
  if (c && c->dl)
    dlclose(c->dl);
  if (c)
    memset(c, 0, sizeof *c);
}
