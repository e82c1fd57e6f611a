/* KServe v2 JSON tensor data (tensor_json.h): one element at a time into
 * the buffer, nothing allocated per element. */
#include "net/tensor_json.h"

#include <stdint.h>
#include <string.h>

#include "core/json_out.h"
#include "gpuslice/error.h"

static int element(gs_buf_t *b, const uint8_t *p, gs_dtype_t dt) {
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
  } v;
  memcpy(&v, p, gs_dtype_size(dt));
  switch (dt) {
  case GS_DTYPE_BOOL:
    return gs_json_bool(b, v.u8);
  case GS_DTYPE_UINT8:
    return gs_json_uint(b, v.u8);
  case GS_DTYPE_UINT16:
    return gs_json_uint(b, v.u16);
  case GS_DTYPE_UINT32:
    return gs_json_uint(b, v.u32);
  case GS_DTYPE_UINT64:
    return gs_json_uint(b, v.u64);
  case GS_DTYPE_INT8:
    return gs_json_int(b, v.i8);
  case GS_DTYPE_INT16:
    return gs_json_int(b, v.i16);
  case GS_DTYPE_INT32:
    return gs_json_int(b, v.i32);
  case GS_DTYPE_INT64:
    return gs_json_int(b, v.i64);
  case GS_DTYPE_FP32:
    return gs_json_real(b, v.f);
  case GS_DTYPE_FP64:
    return gs_json_real(b, v.d);
  default:
    return GS_EUNSUPPORTED;
  }
}

static int strings(gs_buf_t *b, const uint8_t *p, size_t count, size_t *bad) {
  for (size_t i = 0, at = 0; i < count; i++) {
    uint32_t len;
    memcpy(&len, p + at, 4);
    if (i)
      gs_buf_add(b, ",", 1);
    if (gs_json_str(b, (const char *)p + at + 4, len) == GS_EINVAL) {
      *bad = i;
      return GS_EINVAL;
    }
    at += 4 + len;
  }
  return GS_OK;
}

int gs__tensor_json(gs_buf_t *b, gs_dtype_t dt, const void *data, size_t bytes,
                    size_t count, size_t *bad) {
  size_t es = gs_dtype_size(dt);
  if (dt != GS_DTYPE_BYTES &&
      (!es || dt == GS_DTYPE_FP16 || dt == GS_DTYPE_BF16))
    return GS_EUNSUPPORTED;
  gs_buf_add(b, "[", 1);
  int rc = GS_OK;
  if (dt == GS_DTYPE_BYTES) {
    rc = strings(b, data, count, bad);
  } else {
    for (size_t i = 0; i < bytes / es && !b->failed; i++) {
      if (i)
        gs_buf_add(b, ",", 1);
      element(b, (const uint8_t *)data + i * es, dt); /* dt checked above */
    }
  }
  gs_buf_add(b, "]", 1);
  return rc;
}
