/* Error codes and the error context every gpuslice call fills in.
 * One X-macro list generates the enum, gs_strerror() and gs_err_name(). */
#ifndef GPUSLICE_ERROR_H
#define GPUSLICE_ERROR_H

#include <stddef.h>

#define GS_ERRNO_MAP(XX)                                                       \
  XX(INVAL, "invalid argument")                                                \
  XX(PARSE, "malformed input")                                                 \
  XX(NOTFOUND, "not found")                                                    \
  XX(NOFIT, "does not fit")                                                    \
  XX(LIMIT, "limit exceeded")                                                  \
  XX(BUSY, "in use")                                                           \
  XX(EXISTS, "already exists")                                                 \
  XX(CORRUPT, "corrupt state")                                                 \
  XX(UNSUPPORTED, "not supported")                                             \
  XX(NOMEM, "out of memory")                                                   \
  XX(SYSTEM, "system call failed")                                             \
  XX(DRIVER, "driver call failed")                                             \
  XX(NODEV, "no such device")                                                  \
  XX(PERM, "permission denied")

typedef enum {
  GS_OK = 0,
#define XX(code, _) GS_E##code,
  GS_ERRNO_MAP(XX)
#undef XX
      GS_ERR_MAX
} gs_errcode_t;

/* Detailed message of the last failure. The library writes it, the tools
 * print it. sys_errno is the errno of a failed system call, 0 otherwise. */
typedef struct gs_error_s {
  int code;
  int sys_errno;
  char msg[1024];
} gs_error_t;

const char *gs_strerror(int code);
const char *gs_err_name(int code);

void gs_error_clear(gs_error_t *err);

/* Sets err (may be NULL) and returns code, so callers can write
 * `return gs_error_set(err, GS_EINVAL, "...", ...);`. */
int gs_error_set(gs_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like gs_error_set, appending ": strerror(errno)" and recording errno. */
int gs_error_sys(gs_error_t *err, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends context ("applying config 'x': ") to an existing message and
 * returns err->code; with no context (err NULL) it returns GS_EINVAL, never
 * GS_OK, so `return gs_error_prefix(...)` cannot turn a failure into
 * success. Callers holding the code should prefer returning it. */
int gs_error_prefix(gs_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets err's code (err may be NULL) and returns it. */
int gs_error_code(gs_error_t *err, int code);

/* Exit status convention of the CLI: 0 done, 1 operation failed, 2 usage or
 * input error. */
int gs_error_exit_status(int code);

#endif
