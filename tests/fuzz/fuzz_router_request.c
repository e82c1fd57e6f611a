/* libFuzzer harness for the serve's request classes: the input is read as
 * HTTP/1.1 requests (in two pieces, as the worker's harness does) and every
 * complete one is classified; the whole input is also classified as a raw
 * URL, with bytes the HTTP parser would refuse. The answer must be a route
 * kind, a BAD one with a 4xx status and a message, and an admin id must be
 * a short string without control characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const gs__http_request_t *req) {
  gs__route_t r;
  gs__classify(req, &r);
  if ((unsigned)r.kind > GS__RT_BAD)
    abort();
  if (r.kind == GS__RT_BAD &&
      (!r.message || !r.message[0] ||
       (r.status != 400 && r.status != 404 && r.status != 405)))
    abort();
  size_t len = strnlen(r.arg, sizeof r.arg);
  if (len == sizeof r.arg)
    abort(); /* not terminated */
  bool admin_id = r.kind == GS__RT_ADMIN_ADD || r.kind == GS__RT_ADMIN_REMOVE;
  if (admin_id != (len > 0))
    abort(); /* an id is given exactly when the route takes one */
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)r.arg[i] < 0x20 || r.arg[i] == 0x7f)
      abort();
}

static void read_requests(const char *data, size_t size) {
  gs__http_reader_t r;
  gs__http_reader_init(&r, 1u << 16);
  size_t at = 0, split = size / 2;
  for (int rounds = 0; rounds < 64 && !r.error_status; rounds++) {
    size_t end = at < split ? split : size;
    at += gs__http_reader_feed(&r, data + at, end - at);
    if (r.complete) {
      check(&r.req);
      gs__http_reader_next(&r);
    } else if (at == size) {
      gs__http_reader_feed(&r, NULL, 0);
      break;
    }
  }
  gs__http_reader_release(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  read_requests((const char *)data, size);
  char *url = malloc(size + 1);
  if (!url)
    return 0;
  memcpy(url, data, size);
  url[size] = '\0';
  static const enum http_method methods[] = {HTTP_GET, HTTP_POST, HTTP_DELETE,
                                             HTTP_PUT};
  gs__http_request_t req = {.method = methods[size % 4],
                            .url = url,
                            .url_len = size,
                            .infer_header_len = -1};
  check(&req);
  free(url);
  return 0;
}
