/* The CLI's blocking HTTP/1.1 client (cli_http.c). */
#ifndef GPUSLICE_CLI_HTTP_H
#define GPUSLICE_CLI_HTTP_H

#include <stdbool.h>

#include "gpuslice/error.h"

/* One request to host:port (IPv4) with body (NULL: none); *resp_body is
 * malloc'd and NUL-terminated on success, the caller frees it. */
int cli_http_call(const char *host, unsigned port, const char *method,
                  const char *path, const char *body, int timeout_ms,
                  int *status, char **resp_body, gs_error_t *err);

#endif
