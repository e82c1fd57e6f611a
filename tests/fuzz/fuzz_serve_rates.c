/* libFuzzer harness for gs_serve_rates_parse (serve --rate-limit). On
 * success every ID is non-empty, without ',', '=' or ' ', named once, and
 * every rate is within the limit; the limits written back as text parse to
 * the same; a failure leaves the output untouched and says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuslice/serve.h"
#include "gpuslice/worker.h"

#define TEXT_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static gs_serve_rates_t r, again;
  static char text[TEXT_MAX + 1], back[GS_SERVE_MAX_RATES * 80 + 16];
  if (size > TEXT_MAX)
    size = TEXT_MAX;
  memcpy(text, data, size);
  text[size] = '\0';
  gs_error_t err = {0};
  memset(&r, 0xA5, sizeof r);
  if (gs_serve_rates_parse(text, &r, &err) != GS_OK) {
    const unsigned char *p = (const unsigned char *)&r;
    for (size_t i = 0; i < sizeof r; i++)
      if (p[i] != 0xA5)
        abort(); /* changed on error */
    if (!err.msg[0])
      abort();
    return 0;
  }
  if (r.n > GS_SERVE_MAX_RATES || r.rate_default > GS_WORKER_MAX_RATE_LIMIT)
    abort();
  size_t used = (size_t)snprintf(back, sizeof back, "%u", r.rate_default);
  for (unsigned i = 0; i < r.n; i++) {
    const char *id = r.rate[i].id;
    if (!id[0] || strpbrk(id, ",= ") ||
        r.rate[i].rate > GS_WORKER_MAX_RATE_LIMIT ||
        gs_serve_rate_for(&r, id) != r.rate[i].rate)
      abort();
    for (unsigned j = 0; j < i; j++)
      if (strcmp(r.rate[j].id, id) == 0)
        abort();
    used += (size_t)snprintf(back + used, sizeof back - used, ",%s=%u", id,
                             r.rate[i].rate);
  }
  if (used >= sizeof back || gs_serve_rates_parse(back, &again, &err) != GS_OK)
    abort();
  if (again.rate_default != r.rate_default || again.n != r.n)
    abort();
  for (unsigned i = 0; i < r.n; i++)
    if (strcmp(again.rate[i].id, r.rate[i].id) ||
        again.rate[i].rate != r.rate[i].rate)
      abort();
  return 0;
}
