/* A small blocking HTTP/1.1 client for the CLI's own calls to a running
 * serve (status, admin) and to check servers: one request per connection
 * on a blocking socket, the response read by the library's one response
 * reader (net/http.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli_http.h"
#include "net/http.h"

static int connect_to(const char *host, unsigned port, int timeout_ms,
                      gs_error_t *err) {
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    return gs_error_set(err, GS_EINVAL, "'%s' is not an IPv4 address", host),
           -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return gs_error_sys(err, errno, "socket"), -1;
  struct timeval tv = {.tv_sec = timeout_ms / 1000,
                       .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    gs_error_sys(err, errno, "cannot connect to %s:%u", host, port);
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

int cli_http_call(const char *host, unsigned port, const char *method,
                  const char *path, const char *body, int timeout_ms,
                  int *status, char **resp_body, gs_error_t *err) {
  *resp_body = NULL;
  int fd = connect_to(host, port, timeout_ms, err);
  if (fd < 0)
    return err->code ? err->code : GS_ESYSTEM;
  char head[1024];
  size_t body_len = body ? strlen(body) : 0;
  int n = snprintf(head, sizeof head,
                   "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   method, path, host, body_len);
  int rc = GS_OK;
  if (n <= 0 || (size_t)n >= sizeof head ||
      send_all(fd, head, (size_t)n) != 0 ||
      (body_len && send_all(fd, body, body_len) != 0))
    rc = gs_error_sys(err, errno, "cannot send to %s:%u", host, port);
  gs__http_reply_t r;
  gs__http_reply_init(&r, GS_LIMIT_CLI_RESPONSE, 0);
  char buf[16384];
  while (rc == GS_OK && !r.complete) {
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      rc = gs_error_sys(err, errno, "no answer from %s:%u", host, port);
      break;
    }
    gs__http_reply_feed(&r, buf, (size_t)got);
    if (r.complete)
      break;
    if (got == 0 && r.error != GS_ELIMIT)
      rc = gs_error_set(err, GS_EPARSE, "%s:%u closed before answering", host,
                        port);
    else if (r.error == GS_ELIMIT)
      rc = gs_error_set(err, GS_EPARSE,
                        "%s:%u sent a malformed response (over %zu MiB)", host,
                        port, gs_limit_bytes(GS_LIMIT_CLI_RESPONSE) >> 20);
    else if (r.error)
      rc = gs_error_set(err, GS_EPARSE, "%s:%u sent a malformed response", host,
                        port);
  }
  close(fd);
  if (rc == GS_OK) {
    *status = r.status;
    *resp_body = gs_buf_take(&r.body, NULL); /* "" when empty */
    if (!*resp_body)
      rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  gs__http_reply_release(&r);
  return rc;
}
