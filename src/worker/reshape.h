/* config.pbtxt's `reshape` at run time (reshape.c): a request's tensor
 * arrives in the shape of the config's dims and the model takes it in the
 * shape of its reshape; an output goes the other way, as Triton does. */
#ifndef GS_WORKER_RESHAPE_H
#define GS_WORKER_RESHAPE_H

#include "worker/worker_int.h"

struct gs__model_config_s;

/* One tensor's two shapes, both without the batch dimension (batch: one
 * leads both). Variable sizes (-1) carry over in order. */
typedef struct gs__reshape_s {
  char name[128];
  bool input;
  bool batch;
  int dims_rank, model_rank;
  int64_t dims[GS_TENSOR_MAX_RANK], model[GS_TENSOR_MAX_RANK];
} gs__reshape_t;

/* The reshapes cfg declares into *out (malloc'd, the caller frees; NULL
 * and *n 0 when none). */
int gs__reshape_table(const struct gs__model_config_s *cfg, gs__reshape_t **out,
                      size_t *n, gs_error_t *err);

/* t (an input when input, else an output of io's model) from the shape
 * clients use to the model's (to_model), or back; unchanged when io
 * declares no reshape for it. GS_EINVAL naming the tensor when its rank is
 * not the one the config gives. */
int gs__reshape_tensor(gs_tensor_t *t, const gs__model_io_t *io, bool input,
                       bool to_model, gs_error_t *err);

/* Every decoded input of req into the model's shapes. */
int gs__reshape_inputs(gs__infer_request_t *req, const gs__model_io_t *io,
                       gs_error_t *err);

#endif
