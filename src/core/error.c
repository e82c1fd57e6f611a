/* Error names, messages and the error context helpers. */
#include "gpuslice/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *gs_strerror(int code) {
  switch (code) {
  case GS_OK:
    return "success";
#define XX(c, text, ...)                                                       \
  case GS_E##c:                                                                \
    return text;
    GS_ERRNO_MAP(XX)
#undef XX
  default:
    return "unknown error";
  }
}

const char *gs_err_name(int code) {
  switch (code) {
  case GS_OK:
    return "OK";
#define XX(c, ...)                                                             \
  case GS_E##c:                                                                \
    return "E" #c;
    GS_ERRNO_MAP(XX)
#undef XX
  default:
    return "EUNKNOWN";
  }
}

void gs_error_clear(gs_error_t *err) {
  if (!err)
    return;
  err->code = GS_OK;
  err->sys_errno = 0;
  err->msg[0] = '\0';
}

__attribute__((format(printf, 3, 0))) static void
error_vset(gs_error_t *err, int code, const char *fmt, va_list ap) {
  err->code = code;
  err->sys_errno = 0;
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

int gs_error_set(gs_error_t *err, int code, const char *fmt, ...) {
  if (!err)
    return code;
  va_list ap;
  va_start(ap, fmt);
  error_vset(err, code, fmt, ap);
  va_end(ap);
  return code;
}

int gs_error_sys(gs_error_t *err, int sys_errno, const char *fmt, ...) {
  int code = sys_errno == EACCES || sys_errno == EPERM ? GS_EPERM : GS_ESYSTEM;
  if (!err)
    return code;
  va_list ap;
  va_start(ap, fmt);
  error_vset(err, code, fmt, ap);
  va_end(ap);
  err->sys_errno = sys_errno;
  size_t len = strlen(err->msg);
  snprintf(err->msg + len, sizeof err->msg - len, ": %s", strerror(sys_errno));
  return code;
}

int gs_error_prefix(gs_error_t *err, const char *fmt, ...) {
  if (!err)
    return GS_EINVAL;
  char prefix[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  /* Truncation is fine: the start of a long message is what matters. */
  size_t plen = strnlen(prefix, sizeof prefix);
  if (plen >= sizeof err->msg)
    plen = sizeof err->msg - 1;
  size_t olen = strnlen(err->msg, sizeof err->msg - 1);
  if (plen + olen >= sizeof err->msg)
    olen = sizeof err->msg - 1 - plen;
  memmove(err->msg + plen, err->msg, olen);
  memcpy(err->msg, prefix, plen);
  err->msg[plen + olen] = '\0';
  return err->code;
}

int gs_error_code(gs_error_t *err, int code) {
  if (err)
    err->code = code;
  return code;
}

int gs_error_exit_status(int code) {
  switch (code) {
  case GS_OK:
    return 0;
  case GS_EINVAL:
  case GS_EPARSE:
  case GS_ENOTFOUND:
    return 2;
  default:
    return 1;
  }
}

int gs_error_http_status(int code) {
  switch (code) {
  case GS_OK:
    return 200;
#define XX(c, text, http, grpc)                                                \
  case GS_E##c:                                                                \
    return http;
    GS_ERRNO_MAP(XX)
#undef XX
  default:
    return 500;
  }
}

int gs_error_http_status_run(int code, bool in_run) {
  return code == GS_EINVAL || (in_run && code == GS_ELIMIT) ? 400 : 500;
}

int gs_error_grpc_status(int code) {
  switch (code) {
  case GS_OK:
    return 0;
#define XX(c, text, http, grpc)                                                \
  case GS_E##c:                                                                \
    return grpc;
    GS_ERRNO_MAP(XX)
#undef XX
  default:
    return 13;
  }
}
