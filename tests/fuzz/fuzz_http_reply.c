/* libFuzzer harness for the HTTP/1.1 response reader (net/http_reply.c),
 * the one behind the router's upstream connections, perf and the CLI: the
 * input is fed in two pieces, response after response; the first byte picks
 * truncation at the limit or failure. A body never grows past its limit and
 * a whole response has a three-digit status. */
#include <stdint.h>
#include <stdlib.h>

#include "net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  gs__http_reply_t r;
  gs__http_reply_init(&r, GS_LIMIT_CLI_RESPONSE, 4096);
  bool truncate = data[0] & 1;
  const char *in = (const char *)data + 1;
  size_t len = size - 1, at = 0, split = len / 2;
  for (int rounds = 0; rounds < 64; rounds++) {
    gs__http_reply_limit(&r, 4096, truncate);
    size_t end = at < split ? split : len;
    at += gs__http_reply_feed(&r, in + at, end - at);
    if (r.body.len > 4096)
      abort();
    if (r.complete) {
      if (r.status < 100 || r.status > 999)
        abort();
      gs__http_response_t resp = {.infer_header_len = -1};
      gs__http_reply_take(&r, &resp);
      gs__http_response_release(&resp);
      gs__http_reply_reset(&r);
      continue;
    }
    if (r.error)
      break;
    if (at == len) {
      gs__http_reply_feed(&r, NULL, 0); /* the peer closed */
      break;
    }
  }
  gs_error_t err;
  if (r.error && gs__http_reply_error(&r, &err) == GS_OK)
    abort(); /* a failure always has a message */
  gs__http_reply_release(&r);
  return 0;
}
