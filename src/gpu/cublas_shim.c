/* The cuBLAS and cuBLASLt loaders: dlopen, one dlsym per listed function. */
#include "gpu/cublas_shim.h"

#include "gpu/dl_int.h"

#include <dlfcn.h>
#include <string.h>

int gs__cublas_open(gs__cublas_t *c, const char *path, gs_error_t *err) {
  memset(c, 0, sizeof *c);
  int rc = gs__dl_open_named(
      &c->dl, c->path, sizeof c->path,
      path && path[0] ? path : GS__CUBLAS_DEFAULT_LIBRARY, "cuBLAS", err);
  if (rc != GS_OK)
    return rc;
#define GS__CUBLAS_LOAD(field, ret, params, sym)                               \
  if (rc == GS_OK && !gs__dl_resolve(c->dl, &c->field, sym, NULL))             \
    rc = GS__DL_MISSING(c->path, sym);
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
  int rc = gs__dl_open_named(
      &c->dl, c->path, sizeof c->path,
      path && path[0] ? path : GS__CUBLASLT_DEFAULT_LIBRARY, "cuBLASLt", err);
  if (rc != GS_OK)
    return rc;
#define GS__CUBLASLT_LOAD(field, ret, params, sym)                             \
  if (rc == GS_OK && !gs__dl_resolve(c->dl, &c->field, sym, NULL))             \
    rc = GS__DL_MISSING(c->path, sym);
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
