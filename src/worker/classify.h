/* Triton's classification extension: an output asked for with
 * {"classification": N} is answered as the top N of its values per batch row,
 * BYTES strings "value:index[:label]", the labels read at load from the
 * output's label_filename in config.pbtxt (classify.c). */
#ifndef GS_WORKER_CLASSIFY_H
#define GS_WORKER_CLASSIFY_H

#include "worker/model_config.h"
#include "worker/worker_int.h"

/* Triton refuses to classify an output of more elements per row. */
#define GS__CLASSIFY_MAX_ELEMENTS 1000000

/* Reads the label files cfg's outputs name (in cfg->dir) into *out (NULL
 * when none does), by io's output index. A file that cannot be read fails
 * the load, as in Triton. */
int gs__labels_load(gs__labels_t **out, const gs__model_io_t *io,
                    const gs__model_config_t *cfg, gs_error_t *err);
void gs__labels_destroy(gs__labels_t *labels);
/* Label `index` of model output `output`; NULL when it has none (no file,
 * past its last line, or an empty line). */
const char *gs__labels_get(const gs__labels_t *labels, size_t output,
                           size_t index);

/* Output `output`'s label_filename (as config.pbtxt gives it), or NULL. */
const char *gs__labels_file(const gs__labels_t *labels, size_t output);

/* outputs (model order) as they are encoded for req: each output asked for
 * with a class count becomes a BYTES tensor of shape [rows, count] (or
 * [count] when req->batch_first_dim is false) whose data is owned[i]; the
 * others are copied as they are. The caller frees owned[0..n_outputs).
 * GS_EINVAL for a datatype that has no order (BOOL, FP16, BF16, BYTES). */
int gs__classify_outputs(gs_tensor_t *out, void **owned,
                         const gs__infer_request_t *req,
                         const gs__model_io_t *io, const gs_tensor_t *outputs,
                         gs_error_t *err);

#endif
