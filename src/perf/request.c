/* gpuslice perf's infer request, built once per input-data entry before the
 * load starts: shapes resolved from the model, -b and --shape; data random,
 * zero, or from perf_analyzer's JSON input-data file; then the bytes sent,
 * an HTTP POST with the binary tensor extension (as Triton's client: binary
 * inputs, binary outputs asked for) or a framed gRPC ModelInferRequest with
 * raw_input_contents. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json_out.h"
#include "grpc_service.pb-c.h"
#include "net/tensor_json.h"
#include "perf/perf_int.h"

#define MAX_ENTRIES 1024u

/* One input of one request: its shape (batch included) and its bytes. */
typedef struct input_s {
  unsigned rank;
  int64_t shape[GS_PERF_MAX_DIMS + 1];
  uint8_t *data;
  size_t len;
} input_t;

static size_t dtype_size(const char *dt) {
  static const struct {
    const char *name;
    size_t size;
  } t[] = {{"BOOL", 1},  {"UINT8", 1}, {"INT8", 1},   {"UINT16", 2},
           {"INT16", 2}, {"FP16", 2},  {"BF16", 2},   {"UINT32", 4},
           {"INT32", 4}, {"FP32", 4},  {"UINT64", 8}, {"INT64", 8},
           {"FP64", 8},  {"BYTES", 0}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (strcmp(t[i].name, dt) == 0)
      return t[i].size ? t[i].size : 4; /* BYTES: a 4-byte length each */
  return 0;
}

/* One sample's dims (no batch): the model's, with variable ones from
 * --shape or from the data file's "shape". */
static int sample_dims(const gs__perf_ctx_t *ctx, const gs__perf_tensor_t *t,
                       json_t *file_shape, unsigned *rank, int64_t *dims,
                       gs_error_t *err) {
  unsigned skip = ctx->model.max_batch_size ? 1 : 0;
  *rank = t->rank > skip ? t->rank - skip : 0;
  memcpy(dims, t->shape + skip, *rank * sizeof *dims);
  const gs_perf_shape_t *given = NULL;
  for (size_t i = 0; i < ctx->opts->n_shapes; i++)
    if (strcmp(ctx->opts->shapes[i].name, t->name) == 0)
      given = &ctx->opts->shapes[i];
  if (file_shape) {
    *rank = (unsigned)json_array_size(file_shape);
    for (unsigned d = 0; d < *rank && d < GS_PERF_MAX_DIMS; d++)
      dims[d] = json_integer_value(json_array_get(file_shape, d));
  } else if (given) {
    if (given->rank != *rank)
      return gs_error_set(err, GS_EINVAL,
                          "--shape %s: %u dims given, the model's input has "
                          "%u (batch excluded)",
                          t->name, given->rank, *rank);
    memcpy(dims, given->dims, *rank * sizeof *dims);
  }
  for (unsigned d = 0; d < *rank; d++)
    if (dims[d] <= 0)
      return gs_error_set(err, GS_EINVAL,
                          "input '%s' has a variable dimension (%u): give "
                          "--shape %s:d1,d2,...",
                          t->name, d, t->name);
  return GS_OK;
}

static uint64_t next_random(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* One element of synthetic data: small non-negative numbers, as any model
 * accepts them (1.x for floating point, digits for BYTES). */
static void fill_element(const char *dt, uint8_t *p, bool zero, uint64_t *s) {
  uint64_t r = zero ? 0 : next_random(s) % 100;
  if (strcmp(dt, "BYTES") == 0) {
    uint32_t one = 1;
    memcpy(p, &one, 4);
    p[4] = (uint8_t)('0' + r % 10);
  } else if (strcmp(dt, "FP32") == 0) {
    float f = (float)r / 100.0f;
    memcpy(p, &f, 4);
  } else if (strcmp(dt, "FP64") == 0) {
    double f = (double)r / 100.0;
    memcpy(p, &f, 8);
  } else if (strcmp(dt, "FP16") == 0 || strcmp(dt, "BF16") == 0) {
    uint16_t h = zero ? 0 : (dt[0] == 'F' ? 0x3c00 : 0x3f80); /* 1.0 */
    memcpy(p, &h, 2);
  } else if (strcmp(dt, "BOOL") == 0) {
    p[0] = (uint8_t)(r & 1);
  } else {
    memset(p, 0, dtype_size(dt));
    p[0] = (uint8_t)r; /* little endian: the value */
  }
}

/* One element from a JSON value of the data file. */
static int file_element(const char *dt, json_t *v, uint8_t *p, const char *name,
                        gs_error_t *err) {
  if (strcmp(dt, "BYTES") == 0) {
    const char *s = json_string_value(v);
    if (!s || strlen(s) != 1)
      return gs_error_set(err, GS_EINVAL,
                          "input-data '%s': BYTES elements "
                          "are one-character strings here",
                          name);
    uint32_t one = 1;
    memcpy(p, &one, 4);
    p[4] = (uint8_t)s[0];
    return GS_OK;
  }
  if (!json_is_number(v) && !json_is_boolean(v))
    return gs_error_set(err, GS_EINVAL, "input-data '%s': not a number", name);
  double d = json_is_boolean(v) ? json_is_true(v) : json_number_value(v);
  long long i = (long long)d;
  if (strcmp(dt, "FP32") == 0) {
    float f = (float)d;
    memcpy(p, &f, 4);
  } else if (strcmp(dt, "FP64") == 0) {
    memcpy(p, &d, 8);
  } else if (strcmp(dt, "FP16") == 0 || strcmp(dt, "BF16") == 0) {
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "input-data '%s': %s from a file is not supported",
                        name, dt);
  } else {
    memcpy(p, &i, dtype_size(dt)); /* little endian: the low bytes */
  }
  return GS_OK;
}

static void flatten(json_t *v, json_t *out) {
  size_t i;
  json_t *e;
  if (!json_is_array(v)) {
    json_array_append(out, v);
    return;
  }
  json_array_foreach(v, i, e) flatten(e, out);
}

/* The sample's bytes, from the file's value (jv) or synthesized. */
static int sample_data(const gs__perf_tensor_t *t, json_t *jv, size_t count,
                       uint64_t *seed, uint8_t *p, gs_error_t *err) {
  size_t es = strcmp(t->datatype, "BYTES") == 0 ? 5 : dtype_size(t->datatype);
  bool zero = seed == NULL;
  if (!jv) {
    for (size_t i = 0; i < count; i++)
      fill_element(t->datatype, p + i * es, zero, seed);
    return GS_OK;
  }
  json_t *flat = json_array();
  flatten(json_is_object(jv) ? json_object_get(jv, "content") : jv, flat);
  int rc = json_array_size(flat) == count
               ? GS_OK
               : gs_error_set(err, GS_EINVAL,
                              "input-data '%s': %zu values, its shape needs "
                              "%zu",
                              t->name, json_array_size(flat), count);
  for (size_t i = 0; rc == GS_OK && i < count; i++)
    rc = file_element(t->datatype, json_array_get(flat, i), p + i * es, t->name,
                      err);
  json_decref(flat);
  return rc;
}

/* Input t of one request: batch copies of one sample. */
static int make_input(const gs__perf_ctx_t *ctx, const gs__perf_tensor_t *t,
                      json_t *jv, uint64_t *seed, input_t *in,
                      gs_error_t *err) {
  int64_t dims[GS_PERF_MAX_DIMS];
  unsigned rank;
  json_t *fshape = json_is_object(jv) ? json_object_get(jv, "shape") : NULL;
  int rc = sample_dims(ctx, t, fshape, &rank, dims, err);
  if (rc != GS_OK)
    return rc;
  size_t count = 1, max = gs_limit_bytes(GS_LIMIT_PERF_INPUT);
  for (unsigned d = 0; d < rank; d++)
    count = dims[d] > 0 && count <= max / (size_t)dims[d]
                ? count * (size_t)dims[d]
                : max + 1;
  size_t es = strcmp(t->datatype, "BYTES") == 0 ? 5 : dtype_size(t->datatype);
  if (es == 0)
    return gs_error_set(err, GS_EUNSUPPORTED, "input '%s': datatype %s",
                        t->name, t->datatype);
  if (count > max / es / ctx->batch)
    return gs_error_set(err, GS_ELIMIT, "input '%s' is over %zu bytes", t->name,
                        max);
  in->len = count * es * ctx->batch;
  in->data = malloc(in->len);
  if (!in->data)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  rc = sample_data(t, jv, count, seed, in->data, err);
  for (unsigned b = 1; rc == GS_OK && b < ctx->batch; b++)
    memcpy(in->data + b * count * es, in->data, count * es);
  in->rank = 0;
  if (ctx->model.max_batch_size)
    in->shape[in->rank++] = ctx->batch;
  memcpy(in->shape + in->rank, dims, rank * sizeof *dims);
  in->rank += rank;
  return rc;
}

static json_t *shape_json(const input_t *in) {
  json_t *a = json_array();
  for (unsigned d = 0; d < in->rank; d++)
    json_array_append_new(a, json_integer(in->shape[d]));
  return a;
}

/* --shared-memory: where request k's tensors lie in its region. */
typedef struct shm_at_s {
  const char *region; /* NULL: no shared memory */
  size_t in_off[GS__PERF_MAX_TENSORS], out_off[GS__PERF_MAX_TENSORS];
  size_t out_size;
} shm_at_t;

static json_t *shm_params(const shm_at_t *at, size_t off, size_t size) {
  return json_pack("{s:s, s:I, s:I}", "shared_memory_region", at->region,
                   "shared_memory_offset", (json_int_t)off,
                   "shared_memory_byte_size", (json_int_t)size);
}

/* POST .../infer as JSON naming the region for every input and output. */
static json_t *http_shm_tensors(const gs__perf_ctx_t *ctx, const input_t *in,
                                const shm_at_t *at, json_t **outputs) {
  json_t *inputs = json_array();
  *outputs = json_array();
  for (size_t i = 0; i < ctx->model.n_inputs; i++)
    json_array_append_new(inputs,
                          json_pack("{s:s, s:o, s:s, s:o}", "name",
                                    ctx->model.inputs[i].name, "shape",
                                    shape_json(&in[i]), "datatype",
                                    ctx->model.inputs[i].datatype, "parameters",
                                    shm_params(at, at->in_off[i], in[i].len)));
  for (size_t o = 0; o < ctx->model.n_outputs; o++)
    json_array_append_new(
        *outputs,
        json_pack("{s:s, s:o}", "name", ctx->model.outputs[o], "parameters",
                  shm_params(at, at->out_off[o], at->out_size)));
  return inputs;
}

/* The request's bytes, handed to ctx's request k (out keeps them). */
static int take_request(gs_buf_t *b, const char *path, gs__perf_req_t *req,
                        uint8_t **out, gs_error_t *err) {
  size_t len = 0;
  *out = (uint8_t *)gs_buf_take(b, &len);
  if (!*out) {
    int rc = b->failed ? gs_buf_error(b, err)
                       : gs_error_set(err, GS_ENOMEM, "out of memory");
    gs_error_prefix(err, "building the infer request: ");
    return rc;
  }
  *req = (gs__perf_req_t){path, *out, len};
  return GS_OK;
}

/* The infer request's JSON without shared memory: each input with its
 * bytes after the JSON (binary_data_size) or, with --input-tensor-format
 * json, its elements as "data"; outputs binary unless
 * --output-tensor-format json (then the server's default, JSON). Adds the
 * bytes that follow the JSON to *data_len. */
static int plain_head(const gs__perf_ctx_t *ctx, const input_t *in, gs_buf_t *h,
                      size_t *data_len, gs_error_t *err) {
  bool json_in = ctx->opts->input_format == GS_PERF_FORMAT_JSON;
  gs_buf_adds(h, "{\"inputs\":[");
  for (size_t i = 0; i < ctx->model.n_inputs; i++) {
    const gs__perf_tensor_t *t = &ctx->model.inputs[i];
    gs_buf_adds(h, i ? ",{\"name\":" : "{\"name\":");
    gs_json_strz(h, t->name); /* from the server's metadata JSON: UTF-8 */
    gs_buf_adds(h, ",\"shape\":[");
    for (unsigned d = 0; d < in[i].rank; d++)
      gs_buf_addf(h, d ? ",%lld" : "%lld", (long long)in[i].shape[d]);
    gs_buf_adds(h, "],\"datatype\":");
    gs_json_strz(h, t->datatype);
    if (!json_in) {
      gs_buf_addf(h, ",\"parameters\":{\"binary_data_size\":%zu}}", in[i].len);
      *data_len += in[i].len;
      continue;
    }
    size_t count = 1, bad = 0;
    for (unsigned d = 0; d < in[i].rank; d++)
      count *= (size_t)in[i].shape[d];
    gs_buf_adds(h, ",\"data\":");
    int rc = gs__tensor_json(h, gs_dtype_from_name(t->datatype), in[i].data,
                             in[i].len, count, &bad);
    if (rc == GS_EINVAL)
      return gs_error_set(err, GS_EINVAL,
                          "input '%s': element %zu is not UTF-8, which JSON "
                          "cannot carry: use --input-tensor-format binary",
                          t->name, bad);
    if (rc != GS_OK)
      return gs_error_set(err, GS_EINVAL,
                          "input '%s' is %s, which JSON cannot carry: use "
                          "--input-tensor-format binary",
                          t->name, t->datatype);
    gs_buf_add(h, "}", 1);
  }
  gs_buf_add(h, "]", 1);
  if (ctx->opts->output_format != GS_PERF_FORMAT_JSON)
    gs_buf_adds(h, ",\"parameters\":{\"binary_data_output\":true}");
  gs_buf_add(h, "}", 1);
  return gs_buf_error(h, err);
}

/* The shared-memory request's JSON: tensors named by region and offset. */
static int shm_head(const gs__perf_ctx_t *ctx, const input_t *in,
                    const shm_at_t *at, gs_buf_t *h, gs_error_t *err) {
  json_t *outputs = NULL;
  json_t *inputs = http_shm_tensors(ctx, in, at, &outputs);
  json_t *root = json_pack("{s:o, s:o}", "inputs", inputs, "outputs", outputs);
  char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (!text)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  gs_buf_adds(h, text);
  free(text);
  return gs_buf_error(h, err);
}

/* POST .../infer: the JSON header, then every input's bytes in order (none
 * with shared memory or JSON inputs). */
static int http_infer(const gs__perf_ctx_t *ctx, const input_t *in,
                      const shm_at_t *at, gs__perf_req_t *req, uint8_t **out,
                      gs_error_t *err) {
  gs_buf_t h;
  gs_buf_init(&h, GS_LIMIT_PERF_REQUEST);
  size_t data_len = 0;
  int rc = at->region ? shm_head(ctx, in, at, &h, err)
                      : plain_head(ctx, in, &h, &data_len, err);
  if (rc != GS_OK) {
    gs_buf_free(&h);
    gs_error_prefix(err, "building the infer request: ");
    return rc;
  }
  const char *v = ctx->model.version;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_PERF_REQUEST);
  /* All of it at once: the inputs can be tens of MiB. */
  gs_buf_reserve(&b, 1024 + h.len + data_len);
  gs_buf_addf(&b, "POST /v2/models/%s%s%s/infer HTTP/1.1\r\nHost: %s\r\n",
              ctx->model.name, *v ? "/versions/" : "", v, ctx->authority);
  if (data_len)
    gs_buf_addf(&b,
                "Content-Type: application/octet-stream\r\n"
                "Inference-Header-Content-Length: %zu\r\n",
                h.len);
  else
    gs_buf_adds(&b, "Content-Type: application/json\r\n");
  gs_buf_addf(&b, "Content-Length: %zu\r\n\r\n", h.len + data_len);
  gs_buf_add(&b, h.data, h.len);
  for (size_t i = 0; data_len && i < ctx->model.n_inputs; i++)
    gs_buf_add(&b, in[i].data, in[i].len);
  gs_buf_free(&h);
  return take_request(&b, NULL, req, out, err);
}

/* ModelInfer: inputs described, their bytes in raw_input_contents. */
typedef Inference__ModelInferRequest__InferInputTensor__ParametersEntry param_t;
typedef Inference__ModelInferRequest__InferRequestedOutputTensor out_t;

/* The three shared-memory parameters of one tensor, into p[3] / pp[3]. */
static void grpc_shm_params(const shm_at_t *at, size_t off, size_t size,
                            param_t *p, param_t **pp,
                            Inference__InferParameter *v) {
  static const char *const keys[3] = {"shared_memory_region",
                                      "shared_memory_offset",
                                      "shared_memory_byte_size"};
  for (int j = 0; j < 3; j++) {
    inference__model_infer_request__infer_input_tensor__parameters_entry__init(
        &p[j]);
    inference__infer_parameter__init(&v[j]);
    p[j].key = (char *)keys[j];
    p[j].value = &v[j];
    pp[j] = &p[j];
  }
  v[0].parameter_choice_case =
      INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
  v[0].string_param = (char *)at->region;
  v[1].parameter_choice_case =
      INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
  v[1].int64_param = (int64_t)off;
  v[2].parameter_choice_case =
      INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
  v[2].int64_param = (int64_t)size;
}

static int grpc_infer(const gs__perf_ctx_t *ctx, const input_t *in,
                      const shm_at_t *at, gs__perf_req_t *req, uint8_t **out,
                      gs_error_t *err) {
  enum { T = GS__PERF_MAX_TENSORS };
  param_t ents[2 * T][3], *pp[2 * T][3];
  Inference__InferParameter v[2 * T][3];
  out_t o[T], *po[T];
  size_t n = ctx->model.n_inputs;
  Inference__ModelInferRequest m = INFERENCE__MODEL_INFER_REQUEST__INIT;
  Inference__ModelInferRequest__InferInputTensor t[GS__PERF_MAX_TENSORS],
      *pt[GS__PERF_MAX_TENSORS];
  ProtobufCBinaryData raw[GS__PERF_MAX_TENSORS];
  m.model_name = (char *)ctx->model.name;
  m.model_version = (char *)ctx->model.version;
  for (size_t i = 0; i < n; i++) {
    inference__model_infer_request__infer_input_tensor__init(&t[i]);
    t[i].name = (char *)ctx->model.inputs[i].name;
    t[i].datatype = (char *)ctx->model.inputs[i].datatype;
    t[i].n_shape = in[i].rank;
    t[i].shape = (int64_t *)in[i].shape;
    pt[i] = &t[i];
    raw[i] = (ProtobufCBinaryData){in[i].len, in[i].data};
    if (at->region) {
      grpc_shm_params(at, at->in_off[i], in[i].len, ents[i], pp[i], v[i]);
      t[i].n_parameters = 3;
      t[i].parameters =
          (Inference__ModelInferRequest__InferInputTensor__ParametersEntry **)
              pp[i];
    }
  }
  m.n_inputs = n;
  m.inputs = pt;
  m.n_raw_input_contents = at->region ? 0 : n;
  m.raw_input_contents = raw;
  for (size_t k = 0; at->region && k < ctx->model.n_outputs; k++) {
    inference__model_infer_request__infer_requested_output_tensor__init(&o[k]);
    o[k].name = (char *)ctx->model.outputs[k];
    grpc_shm_params(at, at->out_off[k], at->out_size, ents[T + k], pp[T + k],
                    v[T + k]);
    /* input and output parameter entries share one layout */
    o[k].n_parameters = 3;
    o[k].parameters =
        (Inference__ModelInferRequest__InferRequestedOutputTensor__ParametersEntry
             **)pp[T + k];
    po[k] = &o[k];
  }
  if (at->region) {
    m.n_outputs = ctx->model.n_outputs;
    m.outputs = po;
  }
  size_t len = inference__model_infer_request__get_packed_size(&m);
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_PERF_REQUEST);
  uint8_t *p = gs_buf_reserve(&b, len + 5);
  if (p) { /* gRPC's frame: uncompressed, 4-byte big-endian length */
    p[0] = 0;
    for (int i = 0; i < 4; i++)
      p[1 + i] = (uint8_t)(len >> (24 - 8 * i));
    inference__model_infer_request__pack(&m, p + 5);
    gs_buf_commit(&b, len + 5);
  }
  return take_request(&b, "/inference.GRPCInferenceService/ModelInfer", req,
                      out, err);
}

/* Request k from the data file's entry (NULL: synthetic data). */
static int build_one(gs__perf_ctx_t *ctx, json_t *entry, size_t k,
                     gs_error_t *err) {
  input_t in[GS__PERF_MAX_TENSORS] = {0};
  uint64_t seed =
      (ctx->opts->seed ? ctx->opts->seed : 88172645463325252ull) + k * 7919;
  bool zero = ctx->opts->data == GS_PERF_DATA_ZERO;
  int rc = GS_OK;
  for (size_t i = 0; rc == GS_OK && i < ctx->model.n_inputs; i++) {
    const char *name = ctx->model.inputs[i].name;
    json_t *jv = entry ? json_object_get(entry, name) : NULL;
    if (entry && !jv)
      rc = gs_error_set(err, GS_EINVAL,
                        "input-data entry %zu has no input '%s'", k, name);
    if (rc == GS_OK)
      rc = make_input(ctx, &ctx->model.inputs[i], jv, zero ? NULL : &seed,
                      &in[i], err);
  }
  shm_at_t at = {.region = NULL};
  if (rc == GS_OK && ctx->opts->shared_memory != GS_PERF_SHM_NONE) {
    uint8_t *data[GS__PERF_MAX_TENSORS];
    size_t len[GS__PERF_MAX_TENSORS];
    for (size_t i = 0; i < ctx->model.n_inputs; i++)
      data[i] = in[i].data, len[i] = in[i].len;
    at.out_size = ctx->opts->output_shm_size ? ctx->opts->output_shm_size
                                             : (size_t)100 << 10;
    rc = gs__perf_shm_make(ctx, k, data, len, at.in_off, at.out_off, &at.region,
                           err);
  }
  if (rc == GS_OK)
    rc = ctx->opts->protocol == GS_PERF_GRPC
             ? grpc_infer(ctx, in, &at, &ctx->reqs[k], &ctx->req_data[k], err)
             : http_infer(ctx, in, &at, &ctx->reqs[k], &ctx->req_data[k], err);
  for (size_t i = 0; i < ctx->model.n_inputs; i++)
    free(in[i].data);
  return rc;
}

/* perf_analyzer's input-data file: {"data": [{"INPUT0": [...], ...}, ...]}. */
static int load_file(const char *path, json_t **root, json_t **entries,
                     gs_error_t *err) {
  json_error_t je;
  *root = json_load_file(path, 0, &je);
  if (!*root)
    return gs_error_set(err, GS_EPARSE, "--input-data %s:%d:%d: %s", path,
                        je.line, je.column, je.text);
  *entries = json_object_get(*root, "data");
  size_t n = json_array_size(*entries);
  if (n == 0 || n > MAX_ENTRIES)
    return gs_error_set(err, GS_EINVAL,
                        "--input-data %s: expected {\"data\": [{...}, ...]} "
                        "with 1 to %u entries",
                        path, MAX_ENTRIES);
  for (size_t i = 0; i < n; i++)
    if (!json_is_object(json_array_get(*entries, i)))
      return gs_error_set(err, GS_EINVAL,
                          "--input-data %s: entry %zu is not "
                          "an object",
                          path, i);
  return GS_OK;
}

int gs__perf_requests_build(gs__perf_ctx_t *ctx, gs_error_t *err) {
  json_t *root = NULL, *entries = NULL;
  int rc = GS_OK;
  if (ctx->opts->data == GS_PERF_DATA_FILE)
    rc = load_file(ctx->opts->data_file, &root, &entries, err);
  size_t n = entries ? json_array_size(entries) : 1;
  if (rc == GS_OK) {
    ctx->reqs = calloc(n, sizeof *ctx->reqs);
    ctx->req_data = calloc(n, sizeof *ctx->req_data);
    if (!ctx->reqs || !ctx->req_data)
      rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  for (size_t k = 0; rc == GS_OK && k < n; k++) {
    rc = build_one(ctx, entries ? json_array_get(entries, k) : NULL, k, err);
    ctx->n_reqs = k + 1;
  }
  json_decref(root);
  return rc;
}

void gs__perf_requests_release(gs__perf_ctx_t *ctx) {
  gs__perf_shm_release(ctx);
  for (size_t k = 0; ctx->req_data && k < ctx->n_reqs; k++)
    free(ctx->req_data[k]);
  free(ctx->req_data);
  free(ctx->reqs);
  free(ctx->stats_data);
  ctx->req_data = NULL;
  ctx->reqs = NULL;
  ctx->stats_data = NULL;
  ctx->n_reqs = 0;
}
