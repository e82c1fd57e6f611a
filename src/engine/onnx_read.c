/* Reading ONNX protobufs safely: a bounded file read, a wire-format check
 * that bounds nesting before protobuf-c recurses, a budgeted allocator, and
 * the conversion of TensorProto and ValueInfoProto into engine types. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine_int.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data in ONNX files is little-endian; this host is not"
#endif

int gs__read_file(const char *path, size_t max_bytes, uint8_t **data,
                  size_t *size, gs_error_t *err) {
  int rc = GS_OK;
  uint8_t *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return gs_error_sys(err, errno, "opening '%s'", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = gs_error_sys(err, errno, "reading '%s'", path);
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = gs_error_set(err, GS_EINVAL, "'%s' is not a regular file", path);
    goto out;
  }
  if ((uint64_t)st.st_size > max_bytes) {
    rc = gs_error_set(err, GS_ELIMIT,
                      "'%s' is %lld bytes, over the limit of %zu bytes", path,
                      (long long)st.st_size, max_bytes);
    goto out;
  }
  size_t len = (size_t)st.st_size, got = 0;
  buf = malloc(len ? len : 1);
  if (!buf) {
    rc = gs_error_set(err, GS_ENOMEM, "reading '%s': %zu bytes", path, len);
    goto out;
  }
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = gs_error_sys(err, errno, "reading '%s'", path);
      goto out;
    }
    if (n == 0) {
      rc = gs_error_set(err, GS_EPARSE, "'%s' shrank while being read", path);
      goto out;
    }
    got += (size_t)n;
  }
  *data = buf;
  *size = len;
  buf = NULL;
out:
  free(buf);
  close(fd);
  return rc;
}

static bool read_varint(const uint8_t *p, size_t len, size_t *pos,
                        uint64_t *v) {
  uint64_t value = 0;
  for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
    uint8_t b = p[(*pos)++];
    value |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = value;
      return true;
    }
  }
  return false;
}

/* Walks one message's fields, recursing only into fields the descriptor
 * declares as messages; base is the message's offset, for messages. */
static int wire_check(const uint8_t *p, size_t len,
                      const ProtobufCMessageDescriptor *desc, size_t base,
                      unsigned depth, gs_error_t *err) {
  if (depth > GS__PB_MAX_DEPTH)
    return gs_error_set(err, GS_ELIMIT,
                        "protobuf messages nest deeper than %d at byte %zu",
                        GS__PB_MAX_DEPTH, base);
  size_t pos = 0;
  while (pos < len) {
    size_t at = pos;
    uint64_t key, n;
    if (!read_varint(p, len, &pos, &key) || key >> 3 == 0 ||
        key >> 3 > UINT32_MAX)
      return gs_error_set(err, GS_EPARSE, "bad field key at byte %zu",
                          base + at);
    bool ok = true;
    switch (key & 7) {
    case 0:
      ok = read_varint(p, len, &pos, &n);
      break;
    case 1:
      ok = len - pos >= 8;
      pos += ok ? 8 : 0;
      break;
    case 5:
      ok = len - pos >= 4;
      pos += ok ? 4 : 0;
      break;
    case 2: {
      ok = read_varint(p, len, &pos, &n) && n <= len - pos;
      if (!ok)
        break;
      const ProtobufCFieldDescriptor *f =
          protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        int rc = wire_check(p + pos, (size_t)n, f->descriptor, base + pos,
                            depth + 1, err);
        if (rc != GS_OK)
          return rc;
      }
      pos += (size_t)n;
      break;
    }
    default:
      return gs_error_set(err, GS_EPARSE,
                          "unsupported protobuf wire type %u at byte %zu",
                          (unsigned)(key & 7), base + at);
    }
    if (!ok)
      return gs_error_set(err, GS_EPARSE, "field at byte %zu is truncated",
                          base + at);
  }
  return GS_OK;
}

static void *budget_alloc(void *ctx, size_t size) {
  gs__pb_budget_t *b = ctx;
  if (size > b->budget - b->used) {
    b->used = b->budget;
    return NULL;
  }
  b->used += size;
  return malloc(size);
}

static void budget_free(void *ctx, void *ptr) {
  (void)ctx;
  free(ptr);
}

int gs__pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                  size_t size, gs__pb_budget_t *budget, ProtobufCMessage **out,
                  gs_error_t *err) {
  int rc = wire_check(data, size, desc, 0, 0, err);
  if (rc != GS_OK)
    return rc;
  /* Twice the input covers the copies of raw data and strings; the 64 MiB
   * covers the message structs of any real model. */
  budget->used = 0;
  budget->budget = size > (SIZE_MAX - (64u << 20)) / 2
                       ? SIZE_MAX
                       : 2 * size + ((size_t)64 << 20);
  budget->allocator.alloc = budget_alloc;
  budget->allocator.free = budget_free;
  budget->allocator.allocator_data = budget;
  *out = protobuf_c_message_unpack(desc, &budget->allocator, size, data);
  if (*out)
    return GS_OK;
  if (budget->used >= budget->budget)
    return gs_error_set(err, GS_ELIMIT,
                        "decoding needs more than %zu bytes of memory",
                        budget->budget);
  return gs_error_set(err, GS_EPARSE, "not a valid %s protobuf",
                      desc->short_name);
}

#define ONNX_TYPE_MAP(XX)                                                      \
  XX(FLOAT, FP32)                                                              \
  XX(UINT8, UINT8)                                                             \
  XX(INT8, INT8)                                                               \
  XX(UINT16, UINT16)                                                           \
  XX(INT16, INT16)                                                             \
  XX(INT32, INT32)                                                             \
  XX(INT64, INT64)                                                             \
  XX(BOOL, BOOL)                                                               \
  XX(FLOAT16, FP16)                                                            \
  XX(DOUBLE, FP64)                                                             \
  XX(UINT32, UINT32)                                                           \
  XX(UINT64, UINT64)                                                           \
  XX(BFLOAT16, BF16)                                                           \
  XX(STRING, BYTES)

gs_dtype_t gs__dtype_from_onnx(int32_t onnx_type) {
  switch (onnx_type) {
#define XX(onnx, gs)                                                           \
  case ONNX__TENSOR_PROTO__DATA_TYPE__##onnx:                                  \
    return GS_DTYPE_##gs;
    ONNX_TYPE_MAP(XX)
#undef XX
  default:
    return GS_DTYPE_INVALID;
  }
}

const char *gs__onnx_type_name(int32_t onnx_type) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
      &onnx__tensor_proto__data_type__descriptor, onnx_type);
  return v ? v->name : "unknown";
}

/* Copies typed (non-raw) data, which must hold exactly count elements. */
static int typed_data(gs__tensor_t *t, const Onnx__TensorProto *tp,
                      gs_error_t *err) {
  size_t have;
  switch (t->dtype) {
  case GS_DTYPE_FP32:
    have = tp->n_float_data;
    break;
  case GS_DTYPE_INT64:
    have = tp->n_int64_data;
    break;
  case GS_DTYPE_FP64:
    have = tp->n_double_data;
    break;
  case GS_DTYPE_UINT32:
  case GS_DTYPE_UINT64:
    have = tp->n_uint64_data;
    break;
  default: /* the narrow types travel in int32_data */
    have = tp->n_int32_data;
    break;
  }
  if (have != t->count)
    return gs_error_set(err, GS_EPARSE, "has %zu values for %zu elements", have,
                        t->count);
  for (size_t i = 0; i < t->count; i++) {
    switch (t->dtype) {
#define CASE(dt, ctype, field)                                                 \
  case GS_DTYPE_##dt:                                                          \
    ((ctype *)t->data)[i] = (ctype)tp->field[i];                               \
    break;
      CASE(FP32, float, float_data)
      CASE(INT64, int64_t, int64_data)
      CASE(FP64, double, double_data)
      CASE(UINT32, uint32_t, uint64_data)
      CASE(UINT64, uint64_t, uint64_data)
      CASE(INT32, int32_t, int32_data)
      CASE(INT16, int16_t, int32_data)
      CASE(INT8, int8_t, int32_data)
      CASE(UINT16, uint16_t, int32_data)
      CASE(FP16, uint16_t, int32_data)
      CASE(BF16, uint16_t, int32_data)
      CASE(UINT8, uint8_t, int32_data)
#undef CASE
    case GS_DTYPE_BOOL:
      ((uint8_t *)t->data)[i] = tp->int32_data[i] != 0;
      break;
    default:
      break;
    }
  }
  return GS_OK;
}

static int tensor_header(gs__tensor_t *t, const Onnx__TensorProto *tp,
                         size_t max_bytes, gs_error_t *err) {
  int32_t type = tp->has_data_type ? tp->data_type : 0;
  t->dtype = gs__dtype_from_onnx(type);
  if (t->dtype == GS_DTYPE_INVALID)
    return gs_error_set(err, GS_EUNSUPPORTED, "has type %s (%d)",
                        gs__onnx_type_name(type), (int)type);
  if (tp->n_dims > GS_TENSOR_MAX_RANK)
    return gs_error_set(err, GS_EUNSUPPORTED, "has rank %zu, over %d",
                        tp->n_dims, GS_TENSOR_MAX_RANK);
  t->rank = (unsigned)tp->n_dims;
  for (unsigned i = 0; i < t->rank; i++) {
    if (tp->dims[i] < 0)
      return gs_error_set(err, GS_EPARSE, "has negative dimension %lld",
                          (long long)tp->dims[i]);
    t->dims[i] = tp->dims[i];
  }
  if (!gs__count(t->dims, t->rank, gs_dtype_size(t->dtype), max_bytes,
                 &t->count))
    return gs_error_set(err, GS_ELIMIT, "is over the limit of %zu bytes",
                        max_bytes);
  if (tp->has_data_location &&
      tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "keeps its data in an external file");
  if (tp->segment)
    return gs_error_set(err, GS_EUNSUPPORTED, "is segmented");
  return GS_OK;
}

/* STRING data (string_data, never raw_data) in the BYTES form: each element
 * a 4-byte little-endian length and its bytes. */
static int string_data(gs__tensor_t *t, const Onnx__TensorProto *tp,
                       size_t max_bytes, gs_error_t *err) {
  if (tp->n_string_data != t->count)
    return gs_error_set(err, GS_EPARSE, "has %zu strings for %zu elements",
                        tp->n_string_data, t->count);
  size_t total = 0;
  for (size_t i = 0; i < t->count; i++) {
    size_t len = tp->string_data[i].len;
    if (len > UINT32_MAX || len + 4 > max_bytes - total)
      return gs_error_set(err, GS_ELIMIT, "is over the limit of %zu bytes",
                          max_bytes);
    total += 4 + len;
  }
  uint8_t *p = malloc(total ? total : 1);
  if (!p)
    return gs_error_set(err, GS_ENOMEM, "needs %zu bytes", total);
  t->data = p;
  t->bytes = total;
  for (size_t i = 0; i < t->count; i++) {
    uint32_t len = (uint32_t)tp->string_data[i].len;
    memcpy(p, &len, 4);
    if (len)
      memcpy(p + 4, tp->string_data[i].data, len);
    p += 4 + len;
  }
  return GS_OK;
}

int gs__tensor_from_proto(gs__tensor_t *t, Onnx__TensorProto *tp,
                          size_t max_bytes, gs_error_t *err) {
  memset(t, 0, sizeof *t);
  int rc = tensor_header(t, tp, max_bytes, err);
  if (rc != GS_OK)
    return rc;
  if (t->dtype == GS_DTYPE_BYTES)
    return string_data(t, tp, max_bytes, err);
  size_t bytes = t->count * gs_dtype_size(t->dtype);
  if (tp->has_raw_data && tp->raw_data.len > 0) {
    if (tp->raw_data.len != bytes)
      return gs_error_set(err, GS_EPARSE,
                          "has %zu bytes of raw data for %zu elements",
                          tp->raw_data.len, t->count);
    /* protobuf-c allocated it with malloc (budget_alloc): take it over. */
    t->data = tp->raw_data.data;
    tp->raw_data.data = NULL;
    tp->raw_data.len = 0;
    return GS_OK;
  }
  t->data = malloc(bytes ? bytes : 1);
  if (!t->data)
    return gs_error_set(err, GS_ENOMEM, "needs %zu bytes", bytes);
  rc = typed_data(t, tp, err);
  if (rc != GS_OK) {
    free(t->data);
    t->data = NULL;
  }
  return rc;
}

int gs__tensor_decode(gs__tensor_t *t, char **name, const void *data,
                      size_t size, size_t max_bytes, gs_error_t *err) {
  gs__pb_budget_t budget;
  ProtobufCMessage *msg = NULL;
  memset(t, 0, sizeof *t);
  *name = NULL;
  int rc = gs__pb_unpack(&onnx__tensor_proto__descriptor, data, size, &budget,
                         &msg, err);
  if (rc != GS_OK)
    return rc;
  Onnx__TensorProto *tp = (Onnx__TensorProto *)msg;
  rc = gs__tensor_from_proto(t, tp, max_bytes, err);
  if (rc == GS_OK && !(*name = strdup(tp->name ? tp->name : ""))) {
    free(t->data);
    t->data = NULL;
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  if (rc != GS_OK)
    gs_error_prefix(err, "tensor '%s' ", tp->name ? tp->name : "");
  protobuf_c_message_free_unpacked(msg, &budget.allocator);
  return rc;
}

int gs__info_from_value(gs_tensor_info_t *info, const Onnx__ValueInfoProto *v,
                        gs_error_t *err) {
  const Onnx__TypeProto *type = v->type;
  if (!type || type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      !type->tensor_type)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "is not a tensor (sequences, maps, optionals and "
                        "sparse tensors are not supported)");
  const Onnx__TypeProto__Tensor *tt = type->tensor_type;
  int32_t elem = tt->has_elem_type ? tt->elem_type : 0;
  info->dtype = gs__dtype_from_onnx(elem);
  if (info->dtype == GS_DTYPE_INVALID)
    return gs_error_set(err, GS_EUNSUPPORTED, "has type %s (%d)",
                        gs__onnx_type_name(elem), (int)elem);
  info->rank = -1;
  if (!tt->shape)
    return GS_OK;
  if (tt->shape->n_dim > GS_TENSOR_MAX_RANK)
    return gs_error_set(err, GS_EUNSUPPORTED, "has rank %zu, over %d",
                        tt->shape->n_dim, GS_TENSOR_MAX_RANK);
  info->rank = (int)tt->shape->n_dim;
  for (int i = 0; i < info->rank; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    info->shape[i] = -1;
    if (d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      continue;
    if (d->dim_value < 0)
      return gs_error_set(err, GS_EPARSE, "has negative dimension %lld",
                          (long long)d->dim_value);
    info->shape[i] = d->dim_value;
  }
  return GS_OK;
}
