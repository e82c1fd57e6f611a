/* Prometheus text exposition format (version 0.0.4), written into a
 * gs_buf_t: one HELP/TYPE header per metric family, then its samples with
 * label values escaped as the format requires. The one writer of the
 * worker's /metrics and of `gpuslice k8s metrics`. */
#ifndef GS_CORE_PROM_H
#define GS_CORE_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* What a scrape's Content-Type says. */
#define GS_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct gs_prom_label_s {
  const char *name, *value; /* value escaped on output; NULL = "" */
} gs_prom_label_t;

/* "# HELP name help" and "# TYPE name type" (counter, gauge, ...). */
void gs_prom_family(gs_buf_t *b, const char *name, const char *type,
                    const char *help);
/* name{labels} value, the value an integer. */
void gs_prom_sample_u64(gs_buf_t *b, const char *name,
                        const gs_prom_label_t *labels, size_t n_labels,
                        uint64_t value);
/* The same with a floating-point value (shortest form that reads back). */
void gs_prom_sample_f64(gs_buf_t *b, const char *name,
                        const gs_prom_label_t *labels, size_t n_labels,
                        double value);

#endif
