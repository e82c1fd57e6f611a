/* Element conversions: BYTES elements (KServe's 4-byte length + bytes form),
 * FP16 and BF16 to and from float with rounding to nearest even, and the
 * Cast op between every engine type, numbers and decimal strings included. */
#include <string.h>

#include "engine/engine_int.h"

bool gs__bytes_valid(const void *data, size_t size, size_t count, size_t *bad) {
  const uint8_t *p = data;
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t len;
    if (size - at < 4) {
      *bad = i;
      return false;
    }
    memcpy(&len, p + at, 4);
    at += 4;
    if (len > size - at) {
      *bad = i;
      return false;
    }
    at += len;
  }
  *bad = count;
  return at == size;
}

/* IEEE binary16 to binary32, exact (subnormals, infinities, NaN). */
float gs__half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f,
           man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | man << 13;
  } else if (exp) {
    bits = sign | (exp + 112) << 23 | man << 13;
  } else if (man == 0) {
    bits = sign;
  } else { /* subnormal: normalize */
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400));
    bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t gs__float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) /* NaN: quiet, top payload bits kept */
    return (uint16_t)(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
  if (abs >= 0x477ff000u) /* 65520 and up round to infinity */
    return sign | 0x7c00;
  if (abs < 0x38800000u) { /* under 2^-14: a subnormal in units of 2^-24 */
    float a, r;
    memcpy(&a, &abs, sizeof a);
    r = a * 16777216.0f; /* exact: a power of two */
    uint32_t m = (uint32_t)r;
    float frac = r - (float)m;
    if (frac > 0.5f || (frac == 0.5f && (m & 1)))
      m++;
    return (uint16_t)(sign | m);
  }
  uint32_t h = ((abs >> 23) - 112) << 10 | (abs & 0x7fffff) >> 13;
  uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
    h++; /* a carry into the exponent is right */
  return (uint16_t)(sign | h);
}

float gs__bf16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t gs__float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}
