/* libFuzzer harness for the serve's statistics merge and metrics labels:
 * the input, split on 0x1e bytes into up to 4 JSON documents, is merged as
 * the statistics of 4 workers (a sum is a statistics document, and summing
 * it alone gives it back); the whole input is also relabelled as one
 * worker's Prometheus text, in two appends, and every line that comes out
 * must be HELP/TYPE (when asked for) or a sample with the instance first. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "serve/serve_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DOCS 4

static void merge(const char *data, size_t size) {
  json_t *docs[MAX_DOCS] = {0};
  size_t n = 0;
  for (size_t at = 0; n < MAX_DOCS && at <= size;) {
    const char *sep = memchr(data + at, 0x1e, size - at);
    size_t stop = sep && n + 1 < MAX_DOCS ? (size_t)(sep - data) : size;
    /* A document that does not parse stays NULL: not statistics. */
    docs[n++] = json_loadb(data + at, stop - at,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    at = stop + 1;
  }
  gs_error_t err = {0};
  json_t *sum = gs__stats_merge(docs, n, &err);
  if (!sum && (err.code != GS_EPARSE || !strstr(err.msg, "worker ")))
    abort();
  if (sum && !json_is_array(json_object_get(sum, "model_stats")))
    abort();
  if (sum) {
    json_t *again = gs__stats_merge(&sum, 1, &err);
    if (!again || !json_equal(again, sum))
      abort();
    json_decref(again);
  }
  json_decref(sum);
  for (size_t i = 0; i < n; i++)
    json_decref(docs[i]);
}

static const char label[] = "0:1\"\\\n";
static const char escaped[] = "{instance=\"0:1\\\"\\\\\\n\"";

static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == ':';
}

static void check_line(const char *p, size_t len, bool with_help) {
  if (len > 0 && p[0] == '#') {
    if (!with_help || len < 7 ||
        (memcmp(p, "# HELP ", 7) != 0 && memcmp(p, "# TYPE ", 7) != 0))
      abort();
    return;
  }
  size_t name = 0;
  while (name < len && is_name_char(p[name]))
    name++;
  if (name == 0 || len - name < sizeof escaped - 1 ||
      memcmp(p + name, escaped, sizeof escaped - 1) != 0)
    abort();
}

static void relabel(const char *data, size_t size) {
  bool with_help = size & 1;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_METRICS);
  size_t half = size / 2;
  if (gs__metrics_relabel_buf(data, half, label, with_help, &b) ||
      gs__metrics_relabel_buf(data + half, size - half, label, with_help, &b))
    abort();
  size_t len = b.len, cap = b.cap;
  char *out = gs_buf_take(&b, NULL);
  if (!out ||
      (len > 0 && (len >= cap || out[len - 1] != '\n' || out[len] != '\0')))
    abort();
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(out + at, '\n', len - at);
    check_line(out + at, (size_t)(nl - (out + at)), with_help);
    at = (size_t)(nl - out) + 1;
  }
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  merge((const char *)data, size);
  relabel((const char *)data, size);
  return 0;
}
