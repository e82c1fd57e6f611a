/* Error codes and the error context every gpuslice call fills in.
 * One X-macro list generates the enum, gs_strerror() and gs_err_name(). */
#ifndef GPUSLICE_ERROR_H
#define GPUSLICE_ERROR_H

#include <stdbool.h>
#include <stddef.h>

/* code, message, HTTP status and gRPC status code it maps to at the network
 * edge (gs_error_http_status, gs_error_grpc_status). */
#define GS_ERRNO_MAP(XX)                                                       \
  XX(INVAL, "invalid argument", 400, 3)                                        \
  XX(PARSE, "malformed input", 400, 3)                                         \
  XX(NOTFOUND, "not found", 404, 5)                                            \
  XX(NOFIT, "does not fit", 400, 8)                                            \
  XX(LIMIT, "limit exceeded", 400, 8)                                          \
  XX(BUSY, "in use", 503, 14)                                                  \
  XX(EXISTS, "already exists", 409, 6)                                         \
  XX(CORRUPT, "corrupt state", 500, 15)                                        \
  XX(UNSUPPORTED, "not supported", 400, 12)                                    \
  XX(NOMEM, "out of memory", 500, 8)                                           \
  XX(SYSTEM, "system call failed", 500, 13)                                    \
  XX(DRIVER, "driver call failed", 500, 13)                                    \
  XX(NODEV, "no such device", 503, 14)                                         \
  XX(PERM, "permission denied", 403, 7)

typedef enum {
  GS_OK = 0,
#define XX(code, ...) GS_E##code,
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

/* The HTTP status and gRPC status code (gRPC's published numbering: 3
 * INVALID_ARGUMENT, 5 NOT_FOUND, ...) a failure with this code answers
 * with; 200 and 0 for GS_OK, 500 and 13 (INTERNAL) for codes outside the
 * table. */
int gs_error_http_status(int code);
int gs_error_grpc_status(int code);

/* The HTTP status of a failure after a request was accepted, while the
 * server prepared its inputs, ran the model or encoded the answer: only bad
 * data in the request is the client's (400): GS_EINVAL, and GS_ELIMIT when
 * in_run (the request's sizes overflowed a limit of the engine's run); any
 * other code is the server's (500), whatever gs_error_http_status says of
 * it at the edge, GS_OK too (a failure whose code was not set). */
int gs_error_http_status_run(int code, bool in_run);

#endif
