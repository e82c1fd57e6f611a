/* The KServe v2 infer codec: decodes a request body (JSON tensors, or the
 * binary tensor extension: a JSON header then raw little-endian tensors),
 * or the tensors gRPC's ModelInfer gave, against a model's inputs into one
 * infer request, and encodes outputs as JSON, binary or (gRPC) protobuf. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_out.h"
#include "net/tensor_json.h"
#include "worker/classify.h"
#include "worker/grpc_int.h"
#include "worker/reshape.h"
#include "worker/shm.h"
#include "worker/worker_int.h"

#define BAD(err, ...) gs_error_set(err, GS_EINVAL, __VA_ARGS__)

int gs__bytes_check(const void *data, size_t bytes, size_t count,
                    const char *what, const char *name, gs_error_t *err) {
  const uint8_t *p = data;
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t len; /* little-endian host */
    if (bytes - at < 4)
      return BAD(err,
                 "%s '%s': element %zu has no 4-byte length: its %zu "
                 "bytes hold %zu of the %zu elements its shape needs",
                 what, name, i, bytes, i, count);
    memcpy(&len, p + at, 4);
    at += 4;
    if (len > bytes - at)
      return BAD(err,
                 "%s '%s': element %zu's length %u runs past the end of "
                 "its %zu bytes",
                 what, name, i, (unsigned)len, bytes);
    at += len;
  }
  if (at != bytes)
    return BAD(err,
               "%s '%s': %zu bytes follow the %zu elements its shape "
               "needs",
               what, name, bytes - at, count);
  return GS_OK;
}

void gs__infer_request_release(gs__infer_request_t *req) {
  gs__shm_request_release(req);
  for (size_t i = 0; i < req->n_inputs; i++)
    free(req->owned[i]);
  free(req->id);
  memset(req, 0, sizeof *req);
}

static int find_info(const gs_tensor_info_t *infos, size_t n,
                     const char *name) {
  for (size_t i = 0; i < n; i++)
    if (infos[i].name && strcmp(infos[i].name, name) == 0)
      return (int)i;
  return -1;
}

/* Element count of shape, or an error when it overflows or does not fit
 * what the model declares. */
static int check_shape(const gs_tensor_info_t *info, const gs_tensor_t *t,
                       const char *model, size_t *count, gs_error_t *err) {
  if (info->rank >= 0 && (unsigned)info->rank != t->rank)
    return BAD(err,
               "unexpected shape for input '%s' for model '%s': "
               "expected %d dimensions, got %u",
               info->name, model, info->rank, t->rank);
  size_t n = 1;
  for (unsigned d = 0; d < t->rank; d++) {
    int64_t v = t->shape[d];
    if (v < 0 ||
        (info->rank >= 0 && info->shape[d] >= 0 && info->shape[d] != v))
      return BAD(err,
                 "unexpected shape for input '%s' for model '%s': "
                 "dimension %u is %lld, the model expects %lld",
                 info->name, model, d, (long long)v,
                 (long long)(info->rank >= 0 ? info->shape[d] : -1));
    if (v != 0 && n > SIZE_MAX / 16 / (size_t)v)
      return BAD(err, "input '%s' has too many elements", info->name);
    n *= (size_t)v;
  }
  *count = n;
  return GS_OK;
}

static int read_shape(json_t *jshape, gs_tensor_t *t, gs_error_t *err) {
  if (!json_is_array(jshape) || json_array_size(jshape) > GS_TENSOR_MAX_RANK)
    return BAD(err,
               "input '%s': shape must be an array of at most %d "
               "integers",
               t->name, GS_TENSOR_MAX_RANK);
  t->rank = (unsigned)json_array_size(jshape);
  for (unsigned d = 0; d < t->rank; d++) {
    json_t *v = json_array_get(jshape, d);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      return BAD(err, "input '%s': shape must hold non-negative integers",
                 t->name);
    t->shape[d] = json_integer_value(v);
  }
  return GS_OK;
}

/* Writes one JSON value as an element of dtype at dst. */
static int put_element(json_t *v, gs_dtype_t dt, uint8_t *dst) {
  if (dt == GS_DTYPE_BOOL) {
    if (!json_is_boolean(v))
      return -1;
    *dst = json_is_true(v);
    return 0;
  }
  if (dt == GS_DTYPE_FP32 || dt == GS_DTYPE_FP64) {
    if (!json_is_number(v))
      return -1;
    double x = json_number_value(v);
    if (dt == GS_DTYPE_FP32) {
      float f = (float)x;
      memcpy(dst, &f, 4);
    } else {
      memcpy(dst, &x, 8);
    }
    return 0;
  }
  if (!json_is_integer(v))
    return -1;
  json_int_t x = json_integer_value(v);
  static const struct {
    gs_dtype_t dt;
    long long lo, hi;
  } ranges[] = {{GS_DTYPE_UINT8, 0, 255},
                {GS_DTYPE_UINT16, 0, 65535},
                {GS_DTYPE_UINT32, 0, 4294967295LL},
                {GS_DTYPE_UINT64, 0, LLONG_MAX},
                {GS_DTYPE_INT8, -128, 127},
                {GS_DTYPE_INT16, -32768, 32767},
                {GS_DTYPE_INT32, -2147483648LL, 2147483647LL},
                {GS_DTYPE_INT64, LLONG_MIN, LLONG_MAX}};
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
    if (ranges[i].dt == dt) {
      if (x < ranges[i].lo || x > ranges[i].hi)
        return -1;
      uint64_t u = (uint64_t)x; /* little-endian host */
      memcpy(dst, &u, gs_dtype_size(dt));
      return 0;
    }
  return -1;
}

/* Flattens nested arrays of data into buf: at most count elements. */
static int flatten(json_t *data, gs_dtype_t dt, uint8_t *buf, size_t count,
                   size_t *at, int depth) {
  if (!json_is_array(data))
    return *at < count &&
                   put_element(data, dt, buf + *at * gs_dtype_size(dt)) == 0
               ? (int)(++*at, 0)
               : -1;
  if (depth > GS_TENSOR_MAX_RANK)
    return -1;
  for (size_t i = 0; i < json_array_size(data); i++)
    if (flatten(json_array_get(data, i), dt, buf, count, at, depth + 1) != 0)
      return -1;
  return 0;
}

/* The values in nested arrays of data; SIZE_MAX when nested too deep. */
static size_t count_values(json_t *data, int depth) {
  if (!json_is_array(data))
    return 1;
  if (depth > GS_TENSOR_MAX_RANK)
    return SIZE_MAX;
  size_t n = 0;
  for (size_t i = 0; i < json_array_size(data) && n != SIZE_MAX; i++) {
    size_t k = count_values(json_array_get(data, i), depth + 1);
    n = k == SIZE_MAX ? SIZE_MAX : n + k;
  }
  return n;
}

/* Appends the strings in nested arrays of data as BYTES elements (4-byte
 * length, then the string's UTF-8 bytes) at buf (NULL: sizes only). */
static int flatten_strings(json_t *data, uint8_t *buf, size_t *at, int depth) {
  if (json_is_string(data)) {
    size_t len = json_string_length(data);
    if (len > UINT32_MAX)
      return -1;
    uint32_t n = (uint32_t)len; /* little-endian host */
    if (buf) {
      memcpy(buf + *at, &n, 4);
      memcpy(buf + *at + 4, json_string_value(data), len);
    }
    *at += 4 + len;
    return 0;
  }
  if (!json_is_array(data) || depth > GS_TENSOR_MAX_RANK)
    return -1;
  for (size_t i = 0; i < json_array_size(data); i++)
    if (flatten_strings(json_array_get(data, i), buf, at, depth + 1) != 0)
      return -1;
  return 0;
}

/* A BYTES input's "data": strings (nested arrays or flat), as tritonclient
 * sends them; a JSON string is UTF-8, NUL characters included. */
static int decode_json_strings(gs__infer_request_t *req, gs_tensor_t *t,
                               json_t *data, size_t count, gs_error_t *err) {
  size_t bytes = 0;
  if (!data || count_values(data, 0) != count ||
      flatten_strings(data, NULL, &bytes, 0) != 0)
    return BAD(err,
               "input '%s': data must hold %zu strings (BYTES) matching its "
               "shape",
               t->name, count);
  uint8_t *buf = malloc(bytes + 1);
  if (!buf)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  req->owned[req->n_inputs] = buf;
  bytes = 0;
  flatten_strings(data, buf, &bytes, 0);
  t->data = buf;
  t->bytes = bytes;
  return GS_OK;
}

static int decode_json_data(gs__infer_request_t *req, gs_tensor_t *t,
                            json_t *data, size_t count, gs_error_t *err) {
  if (t->dtype == GS_DTYPE_BYTES)
    return decode_json_strings(req, t, data, count, err);
  if (t->dtype == GS_DTYPE_FP16)
    return BAD(err, "input '%s': FP16 data must travel as binary data",
               t->name);
  size_t es = gs_dtype_size(t->dtype), at = 0;
  /* The data, not the shape, bounds the buffer: a shape of 10^12 elements
   * with four values is refused before anything is allocated. */
  bool fits = data && count_values(data, 0) == count;
  uint8_t *buf = fits ? malloc(count * es + 1) : NULL;
  if (fits && !buf)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  req->owned[req->n_inputs] = buf;
  if (!buf || flatten(data, t->dtype, buf, count, &at, 0) != 0 || at != count)
    return BAD(err,
               "input '%s': data must hold %zu %s values matching its "
               "shape",
               t->name, count, gs_dtype_name(t->dtype));
  t->data = buf;
  t->bytes = count * es;
  return GS_OK;
}

/* The model's input name is (each given once) with dtname its datatype:
 * the next of req's tensors gets name and dtype. */
static int input_begin(gs__infer_request_t *req, const gs__model_io_t *io,
                       const char *name, const char *dtname, bool *seen,
                       const gs_tensor_info_t **info, gs_error_t *err) {
  int k = find_info(io->inputs, io->n_inputs, name);
  if (k < 0)
    return BAD(err, "unexpected inference input '%s' for model '%s'", name,
               io->model_name);
  if (seen[k])
    return BAD(err, "input '%s' is given more than once", name);
  seen[k] = true;
  *info = &io->inputs[k];
  gs_tensor_t *t = &req->inputs[req->n_inputs];
  t->name = (*info)->name;
  t->dtype = gs_dtype_from_name(dtname);
  if (t->dtype != (*info)->dtype)
    return BAD(err,
               "inference input '%s' data-type is '%s', but model '%s' "
               "expects '%s'",
               name, dtname, io->model_name, gs_dtype_name((*info)->dtype));
  return GS_OK;
}

/* Input k's data into an aligned copy the request owns. */
static int align_input(gs__infer_request_t *req, size_t k, gs_error_t *err) {
  gs_tensor_t *t = &req->inputs[k];
  if (!(req->owned[k] = malloc(t->bytes + 1)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  t->data = memcpy(req->owned[k], t->data, t->bytes);
  return GS_OK;
}

/* Binary data for t: used in place when aligned, else copied (kernels read
 * whole elements) now or, with align_later, when a reader needs it. */
static int attach_data(gs__infer_request_t *req, gs_tensor_t *t,
                       const void *data, size_t bytes, gs_error_t *err) {
  static _Alignas(16) const char empty[16];
  if (!data)
    data = empty; /* no bytes (a zero dimension): still a valid pointer */
  t->bytes = bytes;
  t->data = data;
  if ((uintptr_t)data % 16 != 0 && !req->align_later)
    return align_input(req, req->n_inputs, err);
  return GS_OK;
}

int gs__infer_request_align(gs__infer_request_t *req, gs_error_t *err) {
  for (size_t k = 0; k < req->n_inputs; k++) {
    int rc = GS_OK;
    if ((uintptr_t)req->inputs[k].data % 16 != 0 && !req->owned[k] &&
        req->inputs[k].mem != GS_MEM_DEVICE) /* a CUDA region's, on the GPU */
      rc = align_input(req, k, err);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

/* One input of the "inputs" array; binary data comes from *bin. */
static int decode_input(gs__infer_request_t *req, const gs__model_io_t *io,
                        json_t *jin, const char **bin, size_t *bin_left,
                        bool *seen, gs_error_t *err) {
  const char *name = json_string_value(json_object_get(jin, "name"));
  const char *dtname = json_string_value(json_object_get(jin, "datatype"));
  if (!json_is_object(jin) || !name || !dtname)
    return BAD(err, "each input needs a name, a datatype and a shape");
  const gs_tensor_info_t *info;
  gs_tensor_t *t = &req->inputs[req->n_inputs];
  int rc = input_begin(req, io, name, dtname, seen, &info, err);
  if (rc != GS_OK)
    return rc;
  size_t count = 0;
  rc = read_shape(json_object_get(jin, "shape"), t, err);
  if (rc == GS_OK)
    rc = check_shape(info, t, io->model_name, &count, err);
  bool shm = false; /* data in a shared-memory region (shm_infer.c) */
  if (rc == GS_OK)
    rc = gs__shm_input_json(req, t, jin, count, &shm, err);
  if (rc != GS_OK || shm)
    return req->n_inputs++, rc;
  json_t *size =
      json_object_get(json_object_get(jin, "parameters"), "binary_data_size");
  bool var = t->dtype == GS_DTYPE_BYTES; /* elements carry their lengths */
  if (!size)
    rc = decode_json_data(req, t, json_object_get(jin, "data"), count, err);
  else if (var && (!json_is_integer(size) || json_integer_value(size) < 0))
    rc = BAD(err, "input '%s': binary_data_size must be a byte count", name);
  else if (!json_is_integer(size) || json_integer_value(size) < 0 ||
           (!var && (size_t)json_integer_value(size) !=
                        count * gs_dtype_size(t->dtype)))
    rc = BAD(err,
             "input '%s': binary_data_size must be %zu bytes for its "
             "shape and datatype",
             name, count * gs_dtype_size(t->dtype));
  else if ((size_t)json_integer_value(size) > *bin_left)
    rc = BAD(err,
             "input '%s': the body ends before its %lld bytes of "
             "binary data",
             name, (long long)json_integer_value(size));
  else {
    /* data after a JSON header of odd length is copied to be aligned */
    rc = attach_data(req, t, *bin, (size_t)json_integer_value(size), err);
    *bin += t->bytes;
    *bin_left -= t->bytes;
    if (rc == GS_OK && var)
      rc = gs__bytes_check(t->data, t->bytes, count, "input", name, err);
  }
  req->n_inputs++;
  return rc;
}

/* Output k (of the model's, -1: none) named name is asked for: once, as
 * Triton refuses a second request for one output. */
static int output_begin(gs__infer_request_t *req, const gs__model_io_t *io,
                        const char *name, int k, gs_error_t *err) {
  if (k < 0)
    return BAD(err, "unexpected inference output '%s' for model '%s'",
               name ? name : "(no name)", io->model_name);
  if (req->want_output[k])
    return BAD(err, "output '%s' already exists in request", name);
  req->want_output[k] = true;
  return GS_OK;
}

static int decode_outputs(gs__infer_request_t *req, const gs__model_io_t *io,
                          json_t *root, gs_error_t *err) {
  json_t *bdo = json_object_get(json_object_get(root, "parameters"),
                                "binary_data_output");
  bool all_binary = json_is_true(bdo);
  json_t *outs = json_object_get(root, "outputs");
  if (outs && !json_is_array(outs))
    return BAD(err, "outputs must be an array");
  for (size_t i = 0; i < io->n_outputs; i++) {
    req->want_output[i] = !outs || json_array_size(outs) == 0;
    req->binary_output[i] = all_binary;
  }
  for (size_t i = 0; outs && i < json_array_size(outs); i++) {
    json_t *jo = json_array_get(outs, i);
    const char *name = json_string_value(json_object_get(jo, "name"));
    json_t *params = json_object_get(jo, "parameters");
    json_t *cls = json_object_get(params, "classification");
    int k = name ? find_info(io->outputs, io->n_outputs, name) : -1;
    int rc = output_begin(req, io, name, k, err);
    if (rc != GS_OK)
      return rc;
    if (cls && (!json_is_integer(cls) || json_integer_value(cls) < 0 ||
                json_integer_value(cls) > UINT32_MAX))
      return BAD(err,
                 "output '%s': classification must be a class count "
                 "(0..%u)",
                 name, UINT32_MAX);
    req->class_count[k] = cls ? (uint32_t)json_integer_value(cls) : 0;
    bool shm; /* written to a shared-memory region (shm_infer.c) */
    rc = gs__shm_ref_json(req, false, (size_t)k, name, params, &shm, err);
    if (rc != GS_OK)
      return rc;
    json_t *b = json_object_get(params, "binary_data");
    if (b)
      req->binary_output[k] = json_is_true(b);
  }
  return GS_OK;
}

/* Inference-Header-Content-Length: 0: the body is the one input's tensor;
 * a single variable dimension takes what the size gives. */
static int decode_raw(gs__infer_request_t *req, const gs__model_io_t *io,
                      const char *body, size_t len, gs_error_t *err) {
  if (io->n_inputs != 1)
    return BAD(err,
               "a raw binary body needs a model with one input; '%s' "
               "has %zu",
               io->model_name, io->n_inputs);
  const gs_tensor_info_t *info = &io->inputs[0];
  gs_tensor_t *t = &req->inputs[0];
  size_t es = gs_dtype_size(info->dtype), fixed = es;
  int var = -1;
  if (info->dtype == GS_DTYPE_BYTES)
    return BAD(err,
               "input '%s' is BYTES, whose shape a raw body cannot give: "
               "send a JSON header (Inference-Header-Content-Length > 0)",
               info->name);
  if (info->rank < 0 || es == 0)
    return BAD(err, "input '%s' has no declared shape for a raw body",
               info->name);
  for (int d = 0; d < info->rank; d++) {
    if (info->shape[d] < 0 && var >= 0)
      return BAD(err, "input '%s' has more than one variable dimension",
                 info->name);
    if (info->shape[d] < 0)
      var = d;
    else if (info->shape[d] && fixed > SIZE_MAX / (size_t)info->shape[d])
      return BAD(err, "input '%s' is too large", info->name);
    else
      fixed *= (size_t)info->shape[d];
  }
  if ((fixed == 0 && len) || (fixed && len % fixed) ||
      (var < 0 && len != fixed))
    return BAD(err, "a raw body of %zu bytes does not fit input '%s'", len,
               info->name);
  t->name = info->name;
  t->dtype = info->dtype;
  t->rank = (unsigned)info->rank;
  for (int d = 0; d < info->rank; d++)
    t->shape[d] =
        d == var ? (int64_t)(fixed ? len / fixed : 0) : info->shape[d];
  t->data = body;
  t->bytes = len;
  req->n_inputs = 1;
  for (size_t i = 0; i < io->n_outputs; i++)
    req->want_output[i] = req->binary_output[i] = true;
  return GS_OK;
}

/* A shape given as integers, checked as the JSON shape is. */
static int copy_shape(gs_tensor_t *t, const int64_t *shape, size_t rank,
                      gs_error_t *err) {
  if (rank > GS_TENSOR_MAX_RANK)
    return BAD(err,
               "input '%s': shape must be an array of at most %d "
               "integers",
               t->name, GS_TENSOR_MAX_RANK);
  t->rank = (unsigned)rank;
  for (size_t d = 0; d < rank; d++) {
    if (shape[d] < 0)
      return BAD(err, "input '%s': shape must hold non-negative integers",
                 t->name);
    t->shape[d] = shape[d];
  }
  return GS_OK;
}

static int tensor_input(gs__infer_request_t *req, const gs__model_io_t *io,
                        const gs__infer_input_t *in, bool *seen,
                        gs_error_t *err) {
  const gs_tensor_info_t *info;
  gs_tensor_t *t = &req->inputs[req->n_inputs];
  size_t count = 0;
  int rc = input_begin(req, io, in->name, in->datatype, seen, &info, err);
  if (rc == GS_OK)
    rc = copy_shape(t, in->shape, in->rank, err);
  if (rc == GS_OK)
    rc = check_shape(info, t, io->model_name, &count, err);
  /* No data: in a shared-memory region, checked there (gs__shm_resolve). */
  if (rc == GS_OK && t->dtype == GS_DTYPE_BYTES)
    rc = in->data ? gs__bytes_check(in->data, in->bytes, count, "input",
                                    in->name, err)
                  : GS_OK;
  else if (rc == GS_OK && in->bytes != count * gs_dtype_size(t->dtype))
    rc = BAD(err,
             "input '%s': binary_data_size must be %zu bytes for its "
             "shape and datatype",
             in->name, count * gs_dtype_size(t->dtype));
  if (rc == GS_OK)
    rc = attach_data(req, t, in->data, in->bytes, err);
  req->n_inputs++;
  return rc;
}

static int decode_tensors(gs__infer_request_t *req, const gs__model_io_t *io,
                          const gs__infer_tensors_t *in, gs_error_t *err) {
  memset(req, 0, sizeof *req);
  req->grpc = in->grpc;
  if (io->n_inputs > GS__INFER_MAX_TENSORS ||
      io->n_outputs > GS__INFER_MAX_TENSORS)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "model '%s' has more than %d "
                        "inputs or outputs",
                        io->model_name, GS__INFER_MAX_TENSORS),
           400;
  int rc = GS_OK;
  if (in->id && !(req->id = strdup(in->id)))
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  bool seen[GS__INFER_MAX_TENSORS] = {0};
  for (size_t i = 0; rc == GS_OK && i < in->n_inputs; i++)
    if (i >= io->n_inputs)
      rc = BAD(err, "expected %zu inputs but got %zu inputs for model '%s'",
               io->n_inputs, in->n_inputs, io->model_name);
    else
      rc = tensor_input(req, io, &in->inputs[i], seen, err);
  if (rc == GS_OK && req->n_inputs != io->n_inputs)
    rc = BAD(err, "expected %zu inputs but got %zu inputs for model '%s'",
             io->n_inputs, req->n_inputs, io->model_name);
  for (size_t i = 0; i < io->n_outputs; i++) {
    req->want_output[i] = in->n_outputs == 0;
    req->binary_output[i] = true;
  }
  for (size_t i = 0; rc == GS_OK && i < in->n_outputs; i++) {
    int k = find_info(io->outputs, io->n_outputs, in->outputs[i]);
    rc = output_begin(req, io, in->outputs[i], k, err);
    if (rc == GS_OK)
      req->class_count[k] = in->class_counts[i];
  }
  return rc == GS_OK ? 0 : gs_error_http_status(rc);
}

/* The request's "timeout" parameter, microseconds (tritonclient's
 * infer(timeout=N)), which a queue policy may take (batch.c). */
static int read_timeout(gs__infer_request_t *req, json_t *root,
                        gs_error_t *err) {
  json_t *t = json_object_get(json_object_get(root, "parameters"), "timeout");
  if (t && (!json_is_integer(t) || json_integer_value(t) < 0))
    return BAD(err, "parameter 'timeout' must be a non-negative integer "
                    "(microseconds)");
  req->timeout_us = t ? (uint64_t)json_integer_value(t) : 0;
  return GS_OK;
}

static int decode_body(gs__infer_request_t *req, const gs__model_io_t *io,
                       const char *body, size_t body_len, long long header_len,
                       bool align_later, gs_error_t *err) {
  memset(req, 0, sizeof *req);
  req->align_later = align_later;
  if (io->n_inputs > GS__INFER_MAX_TENSORS ||
      io->n_outputs > GS__INFER_MAX_TENSORS)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "model '%s' has more than %d "
                        "inputs or outputs",
                        io->model_name, GS__INFER_MAX_TENSORS);
  if (header_len == 0)
    return decode_raw(req, io, body, body_len, err) == GS_OK ? 0 : 400;
  size_t json_len = header_len < 0 ? body_len : (size_t)header_len;
  if (header_len > 0 && (unsigned long long)header_len > body_len)
    return BAD(err,
               "Inference-Header-Content-Length %lld is larger than the "
               "body (%zu bytes)",
               header_len, body_len),
           400;
  json_error_t jerr;
  json_t *root = json_loadb(body, json_len,
                            JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (!json_is_object(root)) {
    json_decref(root);
    return BAD(err, "failed to parse the request JSON: %s", jerr.text), 400;
  }
  int rc = read_timeout(req, root, err);
  json_t *jid = json_object_get(root, "id");
  if (rc == GS_OK && json_is_string(jid) &&
      !(req->id = strdup(json_string_value(jid))))
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  json_t *inputs = json_object_get(root, "inputs");
  if (rc == GS_OK && !json_is_array(inputs))
    rc = BAD(err, "the request needs an inputs array");
  const char *bin = body + json_len;
  size_t bin_left = body_len - json_len;
  bool seen[GS__INFER_MAX_TENSORS] = {0};
  for (size_t i = 0; rc == GS_OK && i < json_array_size(inputs); i++)
    if (i >= io->n_inputs)
      rc = BAD(err, "expected %zu inputs but got %zu inputs for model '%s'",
               io->n_inputs, json_array_size(inputs), io->model_name);
    else
      rc = decode_input(req, io, json_array_get(inputs, i), &bin, &bin_left,
                        seen, err);
  if (rc == GS_OK && req->n_inputs != io->n_inputs)
    rc = BAD(err, "expected %zu inputs but got %zu inputs for model '%s'",
             io->n_inputs, req->n_inputs, io->model_name);
  if (rc == GS_OK && bin_left)
    rc = BAD(err, "%zu bytes of binary data follow the inputs' data", bin_left);
  if (rc == GS_OK)
    rc = decode_outputs(req, io, root, err);
  json_decref(root);
  return rc == GS_OK ? 0 : gs_error_http_status(rc);
}

/* The decoders' results go to the engine in the model's shapes:
 * config.pbtxt's reshape (reshape.c) turns each input's dims into them. */
int gs__infer_decode_tensors(gs__infer_request_t *req, const gs__model_io_t *io,
                             const gs__infer_tensors_t *in, gs_error_t *err) {
  int status = decode_tensors(req, io, in, err);
  if (status == 0 && gs__reshape_inputs(req, io, err) != GS_OK)
    status = 400;
  return status;
}

static int decode_reshaped(gs__infer_request_t *req, const gs__model_io_t *io,
                           const char *body, size_t body_len,
                           long long header_len, bool align_later,
                           gs_error_t *err) {
  int status =
      decode_body(req, io, body, body_len, header_len, align_later, err);
  if (status == 0 && gs__reshape_inputs(req, io, err) != GS_OK)
    status = 400;
  return status;
}

int gs__infer_decode(gs__infer_request_t *req, const gs__model_io_t *io,
                     const char *body, size_t body_len, long long header_len,
                     gs_error_t *err) {
  return decode_reshaped(req, io, body, body_len, header_len, false, err);
}

int gs__infer_decode_unaligned(gs__infer_request_t *req,
                               const gs__model_io_t *io, const char *body,
                               size_t body_len, long long header_len,
                               gs_error_t *err) {
  return decode_reshaped(req, io, body, body_len, header_len, true, err);
}

/* {"name":..,"datatype":..,"shape":[..] : the part every output has.
 * GS_EINVAL (err set) for a name JSON cannot carry. */
static int output_head(gs_buf_t *b, const gs_tensor_t *t, gs_error_t *err) {
  gs_buf_adds(b, "{\"name\":");
  if (gs_json_strz(b, t->name) == GS_EINVAL) /* the model's fault: 500 */
    return gs_error_set(err, GS_ECORRUPT,
                        "output name '%s' is not valid UTF-8, which JSON "
                        "cannot carry",
                        t->name);
  gs_buf_adds(b, ",\"datatype\":\"");
  gs_buf_adds(b, gs_dtype_name(t->dtype));
  gs_buf_adds(b, "\",\"shape\":[");
  for (unsigned d = 0; d < t->rank; d++) {
    if (d)
      gs_buf_add(b, ",", 1);
    gs_json_int(b, t->shape[d]);
  }
  gs_buf_add(b, "]", 1);
  return GS_OK;
}

static int output_json(gs_buf_t *b, const gs_tensor_t *t, bool binary,
                       gs_error_t *err) {
  int rc = output_head(b, t, err);
  if (rc != GS_OK)
    return rc;
  if (binary) {
    gs_buf_adds(b, ",\"parameters\":{\"binary_data_size\":");
    gs_json_uint(b, t->bytes);
    gs_buf_add(b, "}}", 2);
    return GS_OK;
  }
  if (t->dtype == GS_DTYPE_FP16 || t->dtype == GS_DTYPE_BF16)
    return BAD(err, "output '%s' is %s: ask for it as binary data", t->name,
               gs_dtype_name(t->dtype));
  size_t count = 1, bad = 0;
  for (unsigned d = 0; d < t->rank; d++)
    count *= (size_t)t->shape[d];
  if (t->dtype == GS_DTYPE_BYTES &&
      gs__bytes_check(t->data, t->bytes, count, "output", t->name, err))
    return gs_error_code(err, GS_ECORRUPT);
  gs_buf_adds(b, ",\"data\":");
  switch (gs__tensor_json(b, t->dtype, t->data, t->bytes, count, &bad)) {
  case GS_OK:
    break;
  case GS_EINVAL: /* Triton writes the bytes as they are: invalid JSON */
    return BAD(err,
               "output '%s': element %zu is not valid UTF-8, which JSON "
               "cannot carry: ask for the output as binary data",
               t->name, bad);
  default:
    return BAD(err, "output '%s' is %s, which JSON cannot carry", t->name,
               gs_dtype_name(t->dtype));
  }
  gs_buf_add(b, "}", 1);
  return GS_OK;
}

/* Output i goes as binary data after the JSON header. */
static bool binary_out(const gs__infer_request_t *req, size_t i) {
  return req->want_output[i] && req->binary_output[i] &&
         !gs__shm_output_wanted(req, i);
}

/* The JSON header, written in place (json_out.c: the answer every request
 * gets is not built as a jansson tree), then each binary output's bytes in
 * order. Key order as before: model_name, model_version, outputs, id. */
static int encode_http(gs__http_response_t *resp,
                       const gs__infer_request_t *req, const gs__model_io_t *io,
                       const gs_tensor_t *outputs, gs_error_t *err) {
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_INFER_RESPONSE);
  size_t bin_bytes = 0; /* one allocation for header and binary outputs */
  for (size_t i = 0; i < io->n_outputs; i++)
    if (binary_out(req, i))
      bin_bytes += outputs[i].bytes;
  gs_buf_reserve(&b, 1024 + bin_bytes);
  gs_buf_adds(&b, "{\"model_name\":");
  int rc = gs_json_strz(&b, io->model_name);
  gs_buf_adds(&b, ",\"model_version\":");
  if (rc != GS_EINVAL)
    rc = gs_json_strz(&b, io->version);
  if (rc == GS_EINVAL) /* the repository's fault: 500 */
    rc = gs_error_set(err, GS_ECORRUPT,
                      "model '%s': its name or version is not valid UTF-8",
                      io->model_name);
  gs_buf_adds(&b, ",\"outputs\":[");
  bool first = true;
  for (size_t i = 0; rc == GS_OK && i < io->n_outputs; i++) {
    if (!req->want_output[i])
      continue;
    if (!first)
      gs_buf_add(&b, ",", 1);
    first = false;
    if (gs__shm_output_wanted(req, i)) { /* shm_infer.c */
      /* as Triton answers: neither data nor parameters (Triton's C++
       * client reads any output "parameters" as binary data) */
      rc = gs__shm_output_write(req, i, &outputs[i], err);
      if (rc == GS_OK)
        rc = output_head(&b, &outputs[i], err);
      gs_buf_add(&b, "}", 1);
      continue;
    }
    rc = output_json(&b, &outputs[i], req->binary_output[i], err);
  }
  gs_buf_add(&b, "]", 1);
  if (rc == GS_OK && req->id) {
    gs_buf_adds(&b, ",\"id\":");
    if (gs_json_strz(&b, req->id) == GS_EINVAL)
      rc = BAD(err, "the request id is not valid UTF-8");
  }
  gs_buf_add(&b, "}", 1);
  size_t tlen = b.len;
  for (size_t i = 0; rc == GS_OK && i < io->n_outputs; i++)
    if (binary_out(req, i))
      gs_buf_add(&b, outputs[i].data, outputs[i].bytes);
  if (rc == GS_OK)
    rc = gs_buf_error(&b, err);
  if (rc != GS_OK) {
    gs_buf_free(&b);
    return rc;
  }
  gs__http_response_release(resp);
  resp->status = 200;
  resp->body = gs_buf_take(&b, &resp->body_len);
  resp->content_type = "application/json";
  if (bin_bytes) {
    resp->infer_header_len = (long long)tlen;
    resp->content_type = "application/octet-stream";
  }
  return GS_OK;
}

int gs__infer_encode(gs__http_response_t *resp, const gs__infer_request_t *req,
                     const gs__model_io_t *io, const gs_tensor_t *outputs,
                     gs_error_t *err) {
  gs_tensor_t outs[GS__INFER_MAX_TENSORS];
  void *owned[GS__INFER_MAX_TENSORS];
  if (io->n_outputs > GS__INFER_MAX_TENSORS)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "model '%s' has more than %d "
                        "outputs",
                        io->model_name, GS__INFER_MAX_TENSORS);
  /* the model's output shapes back to the config's dims (reshape.c) */
  gs_tensor_t shaped[GS__INFER_MAX_TENSORS];
  int rc = GS_OK;
  memset(owned, 0, sizeof owned);
  for (size_t i = 0; rc == GS_OK && i < io->n_outputs; i++) {
    shaped[i] = outputs[i];
    rc = gs__reshape_tensor(&shaped[i], io, false, false, err);
  }
  if (rc == GS_OK)
    rc = gs__classify_outputs(outs, owned, req, io, shaped, err);
  if (rc == GS_OK)
    rc = req->grpc ? gs__grpc_infer_encode(resp, req, io, outs, err)
                   : encode_http(resp, req, io, outs, err);
  for (size_t i = 0; i < io->n_outputs; i++)
    free(owned[i]);
  return rc;
}
