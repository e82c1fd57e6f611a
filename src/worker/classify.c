/* Triton's classification extension: the top N values of an output per batch
 * row as BYTES strings "value:index[:label]" (values printed as Triton's
 * std::to_string prints them, ties in index order), and the labels files
 * config.pbtxt names, read once at load. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "worker/classify.h"

struct gs__labels_s {
  char *text[GS__INFER_MAX_TENSORS]; /* the file, each line NUL-ended */
  char *file[GS__INFER_MAX_TENSORS]; /* label_filename as configured */
  char **lines[GS__INFER_MAX_TENSORS];
  size_t n_lines[GS__INFER_MAX_TENSORS];
};

void gs__labels_destroy(gs__labels_t *labels) {
  if (!labels)
    return;
  for (size_t i = 0; i < GS__INFER_MAX_TENSORS; i++) {
    free(labels->text[i]);
    free(labels->lines[i]);
    free(labels->file[i]);
  }
  free(labels);
}

const char *gs__labels_get(const gs__labels_t *labels, size_t output,
                           size_t index) {
  if (!labels || output >= GS__INFER_MAX_TENSORS ||
      index >= labels->n_lines[output])
    return NULL;
  const char *l = labels->lines[output][index];
  return l[0] ? l : NULL;
}

const char *gs__labels_file(const gs__labels_t *labels, size_t output) {
  return labels && output < GS__INFER_MAX_TENSORS ? labels->file[output] : NULL;
}

/* Splits text in place into lines as std::getline does: "\n" ends a line,
 * a last line without one still counts. */
static int split_lines(gs__labels_t *labels, size_t k, char *text, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += text[i] == '\n';
  n += len && text[len - 1] != '\n';
  if (!(labels->lines[k] = calloc(n + 1, sizeof *labels->lines[k])))
    return GS_ENOMEM;
  char *p = text;
  for (size_t i = 0; i < n; i++) {
    char *nl = memchr(p, '\n', (size_t)(text + len - p));
    if (nl)
      *nl = '\0';
    labels->lines[k][i] = p;
    p = nl ? nl + 1 : text + len;
  }
  labels->n_lines[k] = n;
  return GS_OK;
}

static int read_labels(gs__labels_t *labels, size_t k, const char *dir,
                       const char *file, const char *output, gs_error_t *err) {
  char path[4400];
  if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
    return gs_error_set(err, GS_EINVAL, "label file path is too long");
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc = fd < 0 ? GS_ESYSTEM : gs_buf_read_fd(&b, fd);
  if (fd >= 0)
    close(fd);
  if (rc == GS_ESYSTEM)
    rc = gs_error_sys(err, errno, "cannot read label file '%s' for output '%s'",
                      path, output);
  else if (rc != GS_OK) {
    gs_buf_error(&b, err);
    rc = gs_error_prefix(err, "label file '%s': ", path);
  }
  if (rc == GS_OK) {
    size_t len = 0;
    labels->text[k] = gs_buf_take(&b, &len);
    if (!(labels->file[k] = strdup(file)) ||
        split_lines(labels, k, labels->text[k], len) != GS_OK)
      rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  gs_buf_free(&b);
  return rc;
}

int gs__labels_load(gs__labels_t **out, const gs__model_io_t *io,
                    const gs__model_config_t *cfg, gs_error_t *err) {
  gs__labels_t *labels = NULL;
  int rc = GS_OK;
  for (size_t c = 0; rc == GS_OK && c < cfg->n_outputs; c++) {
    const gs__config_tensor_t *t = &cfg->outputs[c];
    size_t k = 0;
    while (k < io->n_outputs && strcmp(io->outputs[k].name, t->name))
      k++;
    if (!t->label_filename[0] || k == io->n_outputs)
      continue; /* gs__model_config_apply names outputs the model lacks */
    if (!labels && !(labels = calloc(1, sizeof *labels)))
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    rc = read_labels(labels, k, cfg->dir, t->label_filename, t->name, err);
  }
  if (rc != GS_OK) {
    gs__labels_destroy(labels);
    labels = NULL;
  }
  *out = labels;
  return rc;
}

/* ---- top N ----------------------------------------------------------------
 */

/* long double holds every int64 and uint64 value exactly (x87's 64-bit
 * mantissa, or binary128), so one comparison orders every datatype. */
typedef struct {
  long double v;
  size_t i;
} ranked_t;

static int by_value_desc(const void *a, const void *b) {
  const ranked_t *x = a, *y = b;
  bool xn = isnan(x->v), yn = isnan(y->v);
  if (xn != yn)
    return xn ? 1 : -1; /* NaN last */
  if (!xn && x->v != y->v)
    return x->v > y->v ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

static bool ranked_value(const uint8_t *p, gs_dtype_t dt, long double *v) {
  union {
    float f;
    double d;
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
  } u;
  memcpy(&u, p, gs_dtype_size(dt));
  switch (dt) {
#define CASE(DT, field)                                                        \
  case GS_DTYPE_##DT:                                                          \
    *v = (long double)u.field;                                                 \
    return true;
    CASE(UINT8, u8)
    CASE(UINT16, u16)
    CASE(UINT32, u32)
    CASE(UINT64, u64)
    CASE(INT8, i8)
    CASE(INT16, i16)
    CASE(INT32, i32)
    CASE(INT64, i64)
    CASE(FP32, f)
    CASE(FP64, d)
#undef CASE
  default:
    return false;
  }
}

/* "value:index", value as std::to_string prints it: %f for floating point,
 * the integer for the others. */
static void add_class(gs_buf_t *b, const uint8_t *p, gs_dtype_t dt, size_t i,
                      const char *label) {
  size_t at = b->len;
  gs_buf_add(b, "\0\0\0\0", 4); /* the element's length, set below */
  long double v = 0;
  ranked_value(p, dt, &v);
  if (dt == GS_DTYPE_FP32 || dt == GS_DTYPE_FP64)
    gs_buf_addf(b, "%f", (double)v);
  else if (dt == GS_DTYPE_UINT64)
    gs_buf_addf(b, "%llu", (unsigned long long)v);
  else
    gs_buf_addf(b, "%lld", (long long)v);
  gs_buf_addf(b, ":%zu%s%s", i, label ? ":" : "", label ? label : "");
  if (!b->failed) {
    uint32_t len = (uint32_t)(b->len - at - 4); /* little-endian host */
    memcpy(b->data + at, &len, 4);
  }
}

/* The top count of one row's n elements at p, appended to b. */
static int classify_row(gs_buf_t *b, const uint8_t *p, size_t n, gs_dtype_t dt,
                        size_t count, const gs__labels_t *labels, size_t k) {
  size_t es = gs_dtype_size(dt);
  ranked_t *r = malloc((n ? n : 1) * sizeof *r);
  if (!r)
    return GS_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    r[i].i = i;
    ranked_value(p + i * es, dt, &r[i].v);
  }
  qsort(r, n, sizeof *r, by_value_desc);
  for (size_t j = 0; j < count && j < n; j++)
    add_class(b, p + r[j].i * es, dt, r[j].i,
              gs__labels_get(labels, k, r[j].i));
  free(r);
  return b->failed;
}

static int classify_output(gs_tensor_t *out, void **owned, const gs_tensor_t *t,
                           const gs__infer_request_t *req, size_t k,
                           uint32_t count, gs_error_t *err) {
  long double unused;
  uint8_t zero[8] = {0};
  if (!ranked_value(zero, t->dtype, &unused))
    return gs_error_set(err, GS_EINVAL,
                        "class result not available for output '%s' due to "
                        "unsupported type '%s'",
                        t->name, gs_dtype_name(t->dtype));
  bool batched = req->batch_first_dim && t->rank > 0;
  size_t rows = batched ? (size_t)t->shape[0] : 1, per_row = 1;
  for (unsigned d = batched ? 1 : 0; d < t->rank; d++)
    per_row *= (size_t)t->shape[d];
  if (per_row > GS__CLASSIFY_MAX_ELEMENTS)
    return gs_error_set(err, GS_EINVAL,
                        "classification output tensor '%s' too large (%zu "
                        "elements per row, at most %d)",
                        t->name, per_row, GS__CLASSIFY_MAX_ELEMENTS);
  size_t es = gs_dtype_size(t->dtype), row_bytes = per_row * es;
  if (rows && row_bytes && t->bytes / rows != row_bytes)
    return gs_error_set(err, GS_ECORRUPT,
                        "output '%s': %zu bytes do not match its shape",
                        t->name, t->bytes);
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_HTTP_BODY);
  int rc = GS_OK;
  for (size_t r = 0; rc == GS_OK && r < rows; r++)
    rc = classify_row(&b, (const uint8_t *)t->data + r * row_bytes, per_row,
                      t->dtype, count, req->labels, k);
  if (rc != GS_OK) {
    rc = b.failed ? gs_buf_error(&b, err)
                  : gs_error_set(err, GS_ENOMEM, "out of memory classifying");
    gs_buf_free(&b);
    return rc;
  }
  size_t n = count < per_row ? count : per_row, len = 0;
  *out = (gs_tensor_t){.name = t->name, .dtype = GS_DTYPE_BYTES};
  if (batched)
    out->shape[out->rank++] = (int64_t)rows;
  out->shape[out->rank++] = (int64_t)n;
  out->data = *owned = gs_buf_take(&b, &len);
  out->bytes = len;
  return GS_OK;
}

int gs__classify_outputs(gs_tensor_t *out, void **owned,
                         const gs__infer_request_t *req,
                         const gs__model_io_t *io, const gs_tensor_t *outputs,
                         gs_error_t *err) {
  int rc = GS_OK;
  for (size_t i = 0; i < io->n_outputs; i++) {
    owned[i] = NULL;
    out[i] = outputs[i];
  }
  for (size_t i = 0; rc == GS_OK && i < io->n_outputs; i++)
    if (req->want_output[i] && req->class_count[i])
      rc = classify_output(&out[i], &owned[i], &outputs[i], req, i,
                           req->class_count[i], err);
  return rc;
}
