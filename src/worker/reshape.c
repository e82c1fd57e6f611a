/* config.pbtxt's `reshape` applied to tensors: the request's shape (dims)
 * becomes the model's (reshape) on the way in, the model's output shape
 * becomes the dims on the way out; only shapes change, the bytes are the
 * same (the element counts agree, model_config.c checks it at load). */
#include <stdlib.h>
#include <string.h>

#include "worker/model_config.h"
#include "worker/reshape.h"

int gs__reshape_table(const gs__model_config_t *cfg, gs__reshape_t **out,
                      size_t *n, gs_error_t *err) {
  size_t count = 0;
  *out = NULL;
  *n = 0;
  for (size_t i = 0; i < cfg->n_inputs + cfg->n_outputs; i++) {
    bool input = i < cfg->n_inputs;
    const gs__config_tensor_t *c =
        input ? &cfg->inputs[i] : &cfg->outputs[i - cfg->n_inputs];
    count += c->reshape_rank >= 0;
  }
  if (count == 0)
    return GS_OK;
  gs__reshape_t *t = calloc(count, sizeof *t);
  if (!t)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; i < cfg->n_inputs + cfg->n_outputs; i++) {
    bool input = i < cfg->n_inputs;
    const gs__config_tensor_t *c =
        input ? &cfg->inputs[i] : &cfg->outputs[i - cfg->n_inputs];
    if (c->reshape_rank < 0)
      continue;
    gs__reshape_t *r = &t[(*n)++];
    memcpy(r->name, c->name, sizeof r->name);
    r->input = input;
    r->batch = cfg->max_batch_size > 0;
    r->dims_rank = c->rank;
    r->model_rank = c->reshape_rank;
    memcpy(r->dims, c->dims, sizeof r->dims);
    memcpy(r->model, c->reshape, sizeof r->model);
  }
  *out = t;
  return GS_OK;
}

static const gs__reshape_t *find(const gs__model_io_t *io, const char *name,
                                 bool input) {
  for (size_t i = 0; name && i < io->n_reshapes; i++)
    if (io->reshapes[i].input == input && !strcmp(io->reshapes[i].name, name))
      return &io->reshapes[i];
  return NULL;
}

int gs__reshape_tensor(gs_tensor_t *t, const gs__model_io_t *io, bool input,
                       bool to_model, gs_error_t *err) {
  const gs__reshape_t *r = find(io, t->name, input);
  if (!r)
    return GS_OK;
  int b = r->batch ? 1 : 0;
  int from_rank = to_model ? r->dims_rank : r->model_rank;
  int to_rank = to_model ? r->model_rank : r->dims_rank;
  const int64_t *from = to_model ? r->dims : r->model;
  const int64_t *to = to_model ? r->model : r->dims;
  if ((int)t->rank != b + from_rank)
    return gs_error_set(err, GS_EINVAL,
                        "%s '%s' of model '%s' has %u dimensions, not the %d "
                        "of the config's %s",
                        input ? "input" : "output", t->name, io->model_name,
                        t->rank, b + from_rank, to_model ? "dims" : "reshape");
  /* the sizes at the variable dimensions of one side fill the other's */
  int64_t var[GS_TENSOR_MAX_RANK];
  int n_var = 0, k = 0;
  for (int d = 0; d < from_rank; d++) {
    if (from[d] >= 0 && t->shape[b + d] != from[d])
      return gs_error_set(err, GS_EINVAL,
                          "%s '%s' of model '%s' has size %lld at dimension "
                          "%d, not the config's %s %lld",
                          input ? "input" : "output", t->name, io->model_name,
                          (long long)t->shape[b + d], b + d,
                          to_model ? "dims" : "reshape", (long long)from[d]);
    if (from[d] < 0)
      var[n_var++] = t->shape[b + d];
  }
  for (int d = 0; d < to_rank; d++)
    t->shape[b + d] = to[d] >= 0 ? to[d] : k < n_var ? var[k++] : 1;
  t->rank = (unsigned)(b + to_rank);
  return GS_OK;
}

int gs__reshape_inputs(gs__infer_request_t *req, const gs__model_io_t *io,
                       gs_error_t *err) {
  int rc = GS_OK;
  for (size_t i = 0; rc == GS_OK && io->n_reshapes && i < req->n_inputs; i++)
    rc = gs__reshape_tensor(&req->inputs[i], io, true, true, err);
  return rc;
}
