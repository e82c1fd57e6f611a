/* One batch of the sequence batcher on the thread pool: requests of
 * different sequences (one each) are decoded, each gets its row of the
 * control inputs (START, END, READY, CORRID) and of the implicit state,
 * the rows run as one engine call (padded like the dynamic batcher's on a
 * warm model), and each row's state output is kept for its sequence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/grpc_int.h"
#include "worker/sequence_int.h"
#include "worker/shm.h"

bool gs__seq_is_internal(const gs__seq_config_t *cfg, const char *name,
                         bool input) {
  for (size_t i = 0; input && i < cfg->n_controls; i++)
    if (!strcmp(cfg->controls[i].name, name))
      return true;
  for (size_t i = 0; i < cfg->n_states; i++)
    if (!strcmp(input ? cfg->states[i].input : cfg->states[i].output, name))
      return true;
  return false;
}

/* What the client sends and gets: the model's tensors less the control
 * inputs and the state. */
static void client_io(gs__model_io_t *io, gs_tensor_info_t *in,
                      gs_tensor_info_t *out, const gs__model_io_t *model,
                      const gs__seq_config_t *cfg) {
  *io = *model;
  io->n_inputs = io->n_outputs = 0;
  for (size_t i = 0; i < model->n_inputs; i++)
    if (!gs__seq_is_internal(cfg, model->inputs[i].name, true))
      in[io->n_inputs++] = model->inputs[i];
  for (size_t i = 0; i < model->n_outputs; i++)
    if (!gs__seq_is_internal(cfg, model->outputs[i].name, false))
      out[io->n_outputs++] = model->outputs[i];
  io->inputs = in;
  io->outputs = out;
}

/* The shape of a one-row tensor for info: its variable dims as 1. */
static void one_row_shape(gs_tensor_t *t, const gs_tensor_info_t *info) {
  t->rank = info->rank > 0 ? (unsigned)info->rank : 0;
  for (unsigned d = 0; d < t->rank; d++)
    t->shape[d] = info->shape[d] > 0 ? info->shape[d] : 1;
}

static void put_value(void *buf, gs_dtype_t dtype, double v, uint64_t u) {
  switch (dtype) {
  case GS_DTYPE_INT32: {
    int32_t x = (int32_t)(u ? (int64_t)u : (int64_t)v);
    memcpy(buf, &x, sizeof x);
    break;
  }
  case GS_DTYPE_UINT32: {
    uint32_t x = (uint32_t)u;
    memcpy(buf, &x, sizeof x);
    break;
  }
  case GS_DTYPE_INT64:
  case GS_DTYPE_UINT64:
    memcpy(buf, &u, sizeof u);
    break;
  case GS_DTYPE_FP32: {
    float x = (float)v;
    memcpy(buf, &x, sizeof x);
    break;
  }
  default: /* BOOL */
    *(uint8_t *)buf = v != 0;
  }
}

/* One request of the batch: every model input in model order (the
 * client's, a control value, its sequence's state) as one row. */
typedef struct row_s {
  gs__infer_request_t all; /* inputs: borrowed, never released */
  uint8_t ctl[GS__SEQ_MAX_CONTROLS][8];
  bool pending; /* decoded, not yet run */
} row_t;

static const gs_tensor_t *request_input(const gs__infer_request_t *ir,
                                        const char *name) {
  for (size_t i = 0; i < ir->n_inputs; i++)
    if (!strcmp(ir->inputs[i].name, name))
      return &ir->inputs[i];
  return NULL;
}

/* The bytes a state holds for one row. */
static size_t state_bytes(const gs__seq_state_t *st) {
  size_t n = gs_dtype_size(st->dtype);
  for (int d = 0; d < st->rank; d++)
    n *= (size_t)st->dims[d];
  return n;
}

/* Control input ctl's value for r's row at t. */
static void control_value(row_t *row, size_t c, gs_tensor_t *t,
                          const gs__seq_req_t *r) {
  const gs__seq_control_t *ctl = &r->sm->cfg.controls[c];
  const gs__seq_t *seq = r->seq;
  bool on = ctl->kind == GS__SEQ_CTL_READY ||
            (ctl->kind == GS__SEQ_CTL_START && r->item.start) ||
            (ctl->kind == GS__SEQ_CTL_END && r->item.end);
  uint64_t corrid = 0;
  if (ctl->kind == GS__SEQ_CTL_CORRID)
    corrid = seq->id.is_string ? strtoull(seq->id.s, NULL, 10) /* Triton's */
                               : seq->id.u; /* dyna backends read it so */
  put_value(row->ctl[c], t->dtype, ctl->values[on ? 1 : 0], corrid);
  t->data = row->ctl[c];
  t->bytes = gs_dtype_size(t->dtype);
}

/* Each model input of r's row: the client's, a control value, the state. */
static int build_row(row_t *row, const gs__seq_req_t *r,
                     const gs__model_io_t *model, gs_error_t *err) {
  const gs__seq_config_t *cfg = &r->sm->cfg;
  const gs__infer_request_t *ir = &r->job->ir;
  row->all.n_inputs = model->n_inputs;
  for (size_t k = 0; k < model->n_inputs; k++) {
    const gs_tensor_info_t *info = &model->inputs[k];
    gs_tensor_t *t = &row->all.inputs[k];
    const gs_tensor_t *given = request_input(ir, info->name);
    if (given) {
      *t = *given;
      continue;
    }
    memset(t, 0, sizeof *t);
    t->name = info->name;
    t->dtype = info->dtype;
    one_row_shape(t, info);
    for (size_t c = 0; c < cfg->n_controls; c++)
      if (!strcmp(cfg->controls[c].name, info->name))
        control_value(row, c, t, r);
    for (size_t s = 0, off = 0; s < cfg->n_states; s++) {
      if (!strcmp(cfg->states[s].input, info->name)) {
        t->data = (uint8_t *)r->seq->state + off;
        t->bytes = state_bytes(&cfg->states[s]);
      }
      off += state_bytes(&cfg->states[s]);
    }
    if (!t->data)
      return gs_error_set(err, GS_EINVAL,
                          "model '%s' takes input '%s', which neither the "
                          "request nor sequence_batching gives",
                          model->model_name, info->name);
    size_t want = gs_dtype_size(t->dtype);
    for (unsigned d = 0; d < t->rank; d++)
      want *= (size_t)t->shape[d];
    if (want != t->bytes)
      return gs_error_set(err, GS_EINVAL,
                          "model '%s': input '%s' holds %zu bytes but "
                          "sequence_batching gives %zu (check its dims and "
                          "data_type)",
                          model->model_name, info->name, want, t->bytes);
  }
  return GS_OK;
}

/* Zeroes the state at START; makes it at a sequence's first run. */
static int state_prepare(gs__seq_req_t *r, gs_error_t *err) {
  const gs__seq_config_t *cfg = &r->sm->cfg;
  size_t total = 0;
  for (size_t s = 0; s < cfg->n_states; s++)
    total += state_bytes(&cfg->states[s]);
  if (total == 0)
    return GS_OK;
  if (!r->seq->state) {
    if (!(r->seq->state = calloc(1, total)))
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    r->seq->state_bytes = total;
  }
  if (r->item.start)
    memset(r->seq->state, 0, total);
  return GS_OK;
}

/* Keeps each state output of r's row (outs: one row, model order) for the
 * next request of its sequence. */
static int state_keep(gs__seq_req_t *r, const gs_tensor_t *outs,
                      const gs__model_io_t *m, gs_error_t *err) {
  const gs__seq_config_t *cfg = &r->sm->cfg;
  size_t off = 0;
  for (size_t st = 0; st < cfg->n_states; st++) {
    size_t want = state_bytes(&cfg->states[st]);
    const gs_tensor_t *t = NULL;
    for (size_t i = 0; i < m->n_outputs && !t; i++)
      if (!strcmp(m->outputs[i].name, cfg->states[st].output))
        t = &outs[i];
    if (!t || t->bytes != want)
      return gs_error_set(err, GS_EINVAL, "model '%s': state output '%s' %s",
                          m->model_name, cfg->states[st].output,
                          t ? "does not match the state's dims and data_type"
                            : "is not one of the model's outputs");
    memcpy((uint8_t *)r->seq->state + off, t->data, want);
    off += want;
  }
  return GS_OK;
}

/* Answers job with the client's outputs of its row (outs: model order). */
static int encode_row(gs__infer_job_t *job, const gs_tensor_t *outs,
                      const gs__model_io_t *model, const gs__model_io_t *io,
                      gs_error_t *err) {
  gs_tensor_t mine[GS__INFER_MAX_TENSORS];
  for (size_t i = 0; i < io->n_outputs; i++)
    for (size_t k = 0; k < model->n_outputs; k++)
      if (!strcmp(model->outputs[k].name, io->outputs[i].name))
        mine[i] = outs[k];
  return gs__infer_encode(&job->resp, &job->ir, io, mine, err);
}

/* Decodes what the client sent (the model's tensors less the sequence's),
 * one row at most, shared-memory inputs resolved. 0, or an HTTP status. */
static int decode(gs__infer_job_t *job, const gs__model_io_t *io,
                  gs_error_t *err) {
  int status = job->grpc ? gs__grpc_infer_decode(&job->ir, io, job->grpc, err)
                         : gs__infer_decode(&job->ir, io, job->req.body,
                                            job->req.body_len,
                                            job->req.infer_header_len, err);
  job->batch = 1;
  job->ir.labels = job->slot->labels; /* for classification */
  job->ir.batch_first_dim = job->slot->max_batch_size > 0;
  /* inputs in shared memory: point them at their regions' bytes (a batch
   * of sequences is concatenated on the host: device -1) */
  if (status == 0 &&
      gs__shm_resolve(&job->ir, job->shm, -1, NULL, err) != GS_OK)
    status = gs_error_http_status(err->code);
  for (size_t i = 0;
       status == 0 && job->slot->max_batch_size && i < job->ir.n_inputs; i++)
    if (job->ir.inputs[i].rank == 0 || job->ir.inputs[i].shape[0] != 1) {
      gs_error_set(err, GS_EINVAL,
                   "inference request to sequence model '%s' must have "
                   "batch size 1 (input '%s')",
                   job->slot->name, job->ir.inputs[i].name);
      status = 400;
    }
  return status;
}

/* An engine run's error: a limit there is the request's (too large). */
static int status_of(const gs_error_t *err) {
  return gs_error_http_status_run(err->code, true);
}

static void job_fail(gs__infer_job_t *job, int status, const gs_error_t *err) {
  gs__http_response_error(&job->resp, status,
                          err->msg[0] ? err->msg : "inference failed");
  job->ok = false;
  job->t_done = gs__now_ns();
}

/* Decodes request i and builds its row; a request that cannot run is
 * answered at once. */
static void prepare(gs__seq_batch_t *b, size_t i, row_t *row,
                    const gs__model_io_t *io) {
  gs__seq_req_t *r = b->reqs[i];
  gs__infer_job_t *job = r->job;
  gs_error_t err = {0};
  job->batched = true; /* the batch counts its executions */
  job->t_started = gs__now_ns();
  int status = decode(job, io, &err);
  if (status == 0 && (state_prepare(r, &err) != GS_OK ||
                      build_row(row, r, &job->slot->io, &err) != GS_OK))
    status = gs_error_http_status_run(err.code, false);
  row->pending = status == 0;
  if (status != 0)
    job_fail(job, status, &err);
}

/* The rows of one engine call (n of them, listed in idx) and what each
 * gets back: its state kept, its answer encoded. */
static void run_group(gs__seq_batch_t *b, gs_session_t *s, row_t *rows,
                      const size_t *idx, size_t n, const gs__model_io_t *io) {
  gs_error_t gerr = {0}, *err = &gerr;
  gs__model_slot_t *slot = b->reqs[idx[0]]->job->slot;
  const gs__model_io_t *model = &slot->io;
  const gs__infer_request_t *reqs[64];
  gs_tensor_t ins[GS__INFER_MAX_TENSORS], outs[GS__INFER_MAX_TENSORS];
  gs_tensor_t slices[GS__INFER_MAX_TENSORS];
  gs__seq_exec_t *ex = &b->execs[b->n_execs];
  uint64_t t0 = gs__now_ns(), padded = n;
  bool concat = slot->max_batch_size > 0 && (n > 1 || slot->warm);
  const gs_tensor_t *in = rows[idx[0]].all.inputs;
  int rc = GS_OK;
  for (size_t i = 0; i < n; i++)
    reqs[i] = &rows[idx[i]].all;
  if (concat) {
    padded = gs__batch_padded_rows(slot, n);
    rc = gs__batch_concat_to(ins, gs__batch_session_buf, s, reqs, n, model,
                             padded, err);
    in = ins;
  }
  uint64_t t1 = gs__now_ns();
  if (rc == GS_OK)
    rc = gs_session_run(s, in, model->n_inputs, err);
  uint64_t t2 = gs__now_ns();
  for (size_t k = 0; rc == GS_OK && k < model->n_outputs; k++) {
    const gs_tensor_t *t = gs_session_output(s, k);
    if (!t)
      rc = gs_error_set(err, GS_ECORRUPT, "output '%s' is missing",
                        model->outputs[k].name);
    else
      outs[k] = *t;
  }
  for (size_t i = 0; i < n; i++) {
    gs__seq_req_t *r = b->reqs[idx[i]];
    gs__infer_job_t *job = r->job;
    gs_error_t rerr = *err;
    int status = rc == GS_OK ? 0 : status_of(err);
    rows[idx[i]].pending = false;
    if (status != 0)
      gs__infer_job_note_error(job, err);
    if (status == 0 && concat &&
        gs__batch_split(slices, outs, model->n_outputs, i, 1, padded, &rerr) !=
            GS_OK)
      status = 500;
    const gs_tensor_t *mine = concat ? slices : outs;
    if (status == 0 && (state_keep(r, mine, model, &rerr) != GS_OK ||
                        encode_row(job, mine, model, io, &rerr) != GS_OK))
      status = gs_error_http_status_run(rerr.code, false); /* not the run's */
    job->t_input_done = t1; /* t_started: its decode's start */
    job->t_infer_done = t2;
    if (status != 0)
      job_fail(job, status, &rerr);
    job->ok = status == 0;
    job->t_done = gs__now_ns();
  }
  if (rc == GS_OK) {
    ex->rows = n;
    ex->input_ns = t1 - t0;
    ex->infer_ns = t2 - t1;
    ex->output_ns = gs__now_ns() - t2;
    b->n_execs++;
  }
}

/* The pending rows that can run with the first pending one (same slot,
 * same shapes), at most max_batch_size (1 without a batch dimension) and
 * 64, into idx; their count. */
static size_t next_group(const gs__seq_batch_t *b, const row_t *rows,
                         size_t *idx) {
  unsigned mbs = b->reqs[0]->job->slot->max_batch_size;
  size_t n = 0, first = b->n, max = mbs == 0 ? 1 : mbs < 64 ? mbs : 64;
  for (size_t i = 0; i < b->n && n < max; i++) {
    if (!rows[i].pending)
      continue;
    if (first == b->n)
      first = i;
    const gs__infer_job_t *a = b->reqs[first]->job, *j = b->reqs[i]->job;
    if (i == first ||
        (a->slot == j->slot &&
         gs__batch_compatible(&rows[first].all, &rows[i].all, &a->slot->io)))
      idx[n++] = i;
  }
  return n;
}

void gs__seq_batch_work(uv_work_t *w) {
  gs__seq_batch_t *b = w->data;
  gs__model_slot_t *slot = b->reqs[0]->job->slot;
  gs_tensor_info_t in[GS__INFER_MAX_TENSORS], out[GS__INFER_MAX_TENSORS];
  gs__model_io_t io;
  gs_error_t err = {0};
  gs_session_t *s = NULL;
  size_t idx[64], n;
  row_t *rows = calloc(b->n, sizeof *rows);
  client_io(&io, in, out, &slot->io, &b->sm->cfg);
  if (!rows)
    gs_error_set(&err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; rows && i < b->n; i++)
    prepare(b, i, &rows[i], &io);
  bool any = false;
  for (size_t i = 0; rows && i < b->n; i++)
    any |= rows[i].pending;
  if (any && !(s = gs__slot_get(slot, &err)))
    any = false;
  /* a group that failed in the driver ends the rest: none runs on the
   * dead context */
  while (s && !gs__slot_failed(slot, &err) &&
         (n = next_group(b, rows, idx)) > 0)
    run_group(b, s, rows, idx, n, &io);
  if (s)
    gs__slot_put(slot, s);
  /* No memory or no session: what did not run fails with the reason (the
   * model's device failed: 503, not run). */
  for (size_t i = 0; i < b->n; i++)
    if (!rows || rows[i].pending) {
      gs__infer_job_note_error(b->reqs[i]->job, &err);
      job_fail(b->reqs[i]->job, err.code == GS_ENODEV ? 503 : 500, &err);
    }
  for (size_t i = 0; i < b->n; i++)
    gs__infer_request_release(&b->reqs[i]->job->ir);
  free(rows);
}
