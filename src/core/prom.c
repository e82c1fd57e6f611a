/* Prometheus text exposition format (prom.h): headers, samples and the
 * escaping of label values (backslash, double quote and newline) and of
 * help text (backslash and newline). */
#include "core/prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* text with each character of `special` (and newline) backslash-escaped. */
static void add_escaped(gs_buf_t *b, const char *text, const char *special) {
  for (const char *p = text ? text : ""; *p;) {
    size_t run = strcspn(p, special);
    gs_buf_add(b, p, run);
    p += run;
    if (*p == '\n')
      gs_buf_adds(b, "\\n");
    else if (*p)
      gs_buf_addf(b, "\\%c", *p);
    p += *p ? 1 : 0;
  }
}

void gs_prom_family(gs_buf_t *b, const char *name, const char *type,
                    const char *help) {
  gs_buf_addf(b, "# HELP %s ", name);
  add_escaped(b, help, "\\\n");
  gs_buf_addf(b, "\n# TYPE %s %s\n", name, type);
}

static void add_series(gs_buf_t *b, const char *name,
                       const gs_prom_label_t *labels, size_t n_labels) {
  gs_buf_adds(b, name);
  for (size_t i = 0; i < n_labels; i++) {
    gs_buf_addf(b, "%c%s=\"", i ? ',' : '{', labels[i].name);
    add_escaped(b, labels[i].value, "\\\"\n");
    gs_buf_adds(b, "\"");
  }
  if (n_labels)
    gs_buf_adds(b, "}");
}

void gs_prom_sample_u64(gs_buf_t *b, const char *name,
                        const gs_prom_label_t *labels, size_t n_labels,
                        uint64_t value) {
  add_series(b, name, labels, n_labels);
  gs_buf_addf(b, " %llu\n", (unsigned long long)value);
}

void gs_prom_sample_f64(gs_buf_t *b, const char *name,
                        const gs_prom_label_t *labels, size_t n_labels,
                        double value) {
  add_series(b, name, labels, n_labels);
  if (isnan(value))
    gs_buf_adds(b, " NaN\n");
  else if (isinf(value))
    gs_buf_adds(b, value > 0 ? " +Inf\n" : " -Inf\n");
  else {
    char text[32];
    snprintf(text, sizeof text, "%.15g", value);
    if (strtod(text, NULL) != value) /* 15 digits lose it: all 17 */
      snprintf(text, sizeof text, "%.17g", value);
    gs_buf_addf(b, " %s\n", text);
  }
}
