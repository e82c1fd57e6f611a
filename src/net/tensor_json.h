/* A tensor's elements as the KServe v2 JSON "data" array, written with
 * core/json_out (the worker's JSON outputs, perf's JSON inputs). */
#ifndef GS_NET_TENSOR_JSON_H
#define GS_NET_TENSOR_JSON_H

#include <stddef.h>

#include "core/buf.h"
#include "gpuslice/engine.h"

/* Writes [e0,e1,...] for count elements of type dt at data (bytes long;
 * BYTES: engine.h's 4-byte length + bytes per element, lengths already
 * checked against bytes by the caller). BOOL as true/false, integers in
 * full, reals as json_out does (NaN and infinities as null), BYTES as
 * strings. Returns GS_OK; GS_EUNSUPPORTED for a type JSON cannot carry
 * (FP16, BF16); GS_EINVAL with *bad the element's index for a BYTES
 * element that is not UTF-8. The buffer's own failure (its limit, memory)
 * is never returned here: the caller checks it once (gs_buf_error). */
int gs__tensor_json(gs_buf_t *b, gs_dtype_t dt, const void *data, size_t bytes,
                    size_t count, size_t *bad);

#endif
