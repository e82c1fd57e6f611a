/* serve --rate-limit's value: "[ID=]N[,[ID=]N]..." (serve.h). Pure, and
 * fuzzed (tests/fuzz/fuzz_serve_rates.c). */
#include <stdlib.h>
#include <string.h>

#include "gpuslice/serve.h"
#include "gpuslice/worker.h"

#define ITEM_SHOWN 80 /* of a bad item, in the message */

/* N: decimal digits only, at most GS_WORKER_MAX_RATE_LIMIT. */
static bool parse_rate(const char *s, size_t len, unsigned *out) {
  char digits[16];
  if (len == 0 || len >= sizeof digits || strspn(s, "0123456789") < len)
    return false;
  memcpy(digits, s, len);
  digits[len] = '\0';
  unsigned long v = strtoul(digits, NULL, 10);
  if (v > GS_WORKER_MAX_RATE_LIMIT)
    return false;
  *out = (unsigned)v;
  return true;
}

/* One item, "N" or "ID=N" (len bytes at item), into r. */
static int parse_item(const char *item, size_t len, gs_serve_rates_t *r,
                      bool *have_default, gs_error_t *err) {
  const char *eq = memchr(item, '=', len);
  size_t id_len = eq ? (size_t)(eq - item) : 0;
  const char *num = eq ? eq + 1 : item;
  unsigned rate;
  if (!parse_rate(num, len - (size_t)(num - item), &rate) ||
      (eq && (id_len == 0 || id_len >= sizeof r->rate[0].id ||
              memchr(item, ' ', id_len))))
    return gs_error_set(err, GS_EINVAL,
                        "--rate-limit: '%.*s' is not N or ID=N with N in "
                        "0..%u inferences a second",
                        (int)(len < ITEM_SHOWN ? len : ITEM_SHOWN), item,
                        GS_WORKER_MAX_RATE_LIMIT);
  if (!eq) {
    if (*have_default)
      return gs_error_set(err, GS_EINVAL,
                          "--rate-limit: two limits for every instance "
                          "(%u and %u)",
                          r->rate_default, rate);
    *have_default = true;
    r->rate_default = rate;
    return GS_OK;
  }
  for (unsigned i = 0; i < r->n; i++)
    if (strlen(r->rate[i].id) == id_len &&
        memcmp(r->rate[i].id, item, id_len) == 0)
      return gs_error_set(err, GS_EINVAL,
                          "--rate-limit: instance %.*s is named twice",
                          (int)id_len, item);
  if (r->n == GS_SERVE_MAX_RATES)
    return gs_error_set(err, GS_ELIMIT,
                        "--rate-limit names at most %d instances",
                        GS_SERVE_MAX_RATES);
  memcpy(r->rate[r->n].id, item, id_len);
  r->rate[r->n].id[id_len] = '\0';
  r->rate[r->n++].rate = rate;
  return GS_OK;
}

int gs_serve_rates_parse(const char *text, gs_serve_rates_t *out,
                         gs_error_t *err) {
  gs_serve_rates_t r = {0};
  bool have_default = false;
  for (const char *item = text;; item++) {
    size_t len = strcspn(item, ",");
    int rc = parse_item(item, len, &r, &have_default, err);
    if (rc != GS_OK)
      return rc;
    item += len;
    if (!*item)
      break;
  }
  *out = r;
  return GS_OK;
}

unsigned gs_serve_rate_for(const gs_serve_rates_t *r, const char *id) {
  for (unsigned i = 0; i < r->n; i++)
    if (strcmp(r->rate[i].id, id) == 0)
      return r->rate[i].rate;
  return r->rate_default;
}
