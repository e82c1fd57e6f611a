/* The sequence batcher on the worker's loop: a request to a model with
 * sequence_batching names its sequence (parameters sequence_id,
 * sequence_start, sequence_end), joins it in the slot table (sequence.c),
 * and runs on the pool when its turn comes, with the control inputs and the
 * sequence's implicit state added to what the client sent; the state
 * output is kept for the next request. Requests of different sequences
 * run side by side, each as a batch of one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"
#include "worker/worker_int.h"

typedef struct gs__seq_model_s {
  gs__seq_table_t table;
  gs__seq_config_t cfg;
  uv_timer_t timer; /* the idle timeout's sweep */
} seq_model_t;

typedef struct seq_req_s {
  gs__seq_item_t item; /* item.data: this */
  gs__infer_job_t *job;
  seq_model_t *sm;
  gs__seq_t *seq; /* NULL: answered without running (job->resp) */
  gs__seq_id_t id;
  uv_work_t work;
} seq_req_t;

/* ---- the request's sequence parameters -----------------------------------
 */

static void param_id_string(gs__seq_params_t *p, const char *s) {
  p->has_id = s[0] != '\0';
  p->id.is_string = true;
  snprintf(p->id.s, sizeof p->id.s, "%s", s);
}

/* HTTP: the JSON header's "parameters". */
static int params_http(gs__seq_params_t *p, const gs__http_request_t *req,
                       gs_error_t *err) {
  size_t len = req->infer_header_len >= 0 ? (size_t)req->infer_header_len
                                          : req->body_len;
  json_t *root = req->body && len <= req->body_len
                     ? json_loadb(req->body, len, 0, NULL)
                     : NULL;
  if (!root)
    return gs_error_set(err, GS_EINVAL, "malformed inference request");
  json_t *params = json_object_get(root, "parameters");
  json_t *id = json_object_get(params, "sequence_id");
  if (json_is_string(id)) {
    param_id_string(p, json_string_value(id));
  } else if (json_is_integer(id)) {
    p->id.is_string = false;
    p->id.u = (uint64_t)json_integer_value(id);
    p->has_id = p->id.u != 0;
  }
  p->start = json_is_true(json_object_get(params, "sequence_start"));
  p->end = json_is_true(json_object_get(params, "sequence_end"));
  json_decref(root);
  return GS_OK;
}

static bool param_true(const Inference__InferParameter *v) {
  return v->parameter_choice_case ==
             INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM &&
         v->bool_param;
}

/* gRPC: the ModelInferRequest's parameters map. */
static void params_grpc(gs__seq_params_t *p, const gs__grpc_infer_t *gi) {
  for (size_t i = 0; i < gi->m->n_parameters; i++) {
    const char *key = gi->m->parameters[i]->key;
    const Inference__InferParameter *v = gi->m->parameters[i]->value;
    if (!v)
      continue;
    if (!strcmp(key, "sequence_id")) {
      switch (v->parameter_choice_case) {
      case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
        param_id_string(p, v->string_param);
        break;
      case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
        p->id.is_string = false;
        p->id.u = (uint64_t)v->int64_param;
        p->has_id = p->id.u != 0;
        break;
      case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM:
        p->id.is_string = false;
        p->id.u = v->uint64_param;
        p->has_id = p->id.u != 0;
        break;
      default:
        break;
      }
    } else if (!strcmp(key, "sequence_start")) {
      p->start = param_true(v);
    } else if (!strcmp(key, "sequence_end")) {
      p->end = param_true(v);
    }
  }
}

int gs__seq_params_read(gs__seq_params_t *p, const gs__infer_job_t *job,
                        gs_error_t *err) {
  memset(p, 0, sizeof *p);
  if (job->grpc) {
    params_grpc(p, job->grpc);
    return GS_OK;
  }
  return params_http(p, &job->req, err);
}

/* ---- on the pool: one request of a sequence ------------------------------
 */

static bool is_control_or_state(const gs__seq_config_t *cfg, const char *name,
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
    if (!is_control_or_state(cfg, model->inputs[i].name, true))
      in[io->n_inputs++] = model->inputs[i];
  for (size_t i = 0; i < model->n_outputs; i++)
    if (!is_control_or_state(cfg, model->outputs[i].name, false))
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

typedef struct run_inputs_s {
  gs_tensor_t t[GS__INFER_MAX_TENSORS];
  uint8_t ctl[GS__SEQ_MAX_CONTROLS][8];
} run_inputs_t;

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

/* Each model input: the client's, a control value, or the state. */
static int build_inputs(run_inputs_t *ri, const seq_req_t *r,
                        const gs__infer_request_t *ir,
                        const gs__model_io_t *model, gs_error_t *err) {
  const gs__seq_config_t *cfg = &r->sm->cfg;
  gs__seq_t *seq = r->seq;
  for (size_t k = 0; k < model->n_inputs; k++) {
    const gs_tensor_info_t *info = &model->inputs[k];
    gs_tensor_t *t = &ri->t[k];
    const gs_tensor_t *given = request_input(ir, info->name);
    if (given) {
      *t = *given;
      continue;
    }
    memset(t, 0, sizeof *t);
    t->name = info->name;
    t->dtype = info->dtype;
    one_row_shape(t, info);
    for (size_t c = 0; c < cfg->n_controls; c++) {
      const gs__seq_control_t *ctl = &cfg->controls[c];
      if (strcmp(ctl->name, info->name))
        continue;
      bool on = ctl->kind == GS__SEQ_CTL_READY ||
                (ctl->kind == GS__SEQ_CTL_START && r->item.start) ||
                (ctl->kind == GS__SEQ_CTL_END && r->item.end);
      uint64_t corrid =
          ctl->kind == GS__SEQ_CTL_CORRID && !seq->id.is_string ? seq->id.u : 0;
      if (ctl->kind == GS__SEQ_CTL_CORRID && seq->id.is_string)
        corrid = strtoull(seq->id.s, NULL, 10); /* Triton's dyna backends */
      put_value(ri->ctl[c], info->dtype, ctl->values[on ? 1 : 0], corrid);
      t->data = ri->ctl[c];
      t->bytes = gs_dtype_size(info->dtype);
    }
    for (size_t s = 0; s < cfg->n_states; s++)
      if (!strcmp(cfg->states[s].input, info->name)) {
        size_t off = 0;
        for (size_t j = 0; j < s; j++)
          off += state_bytes(&cfg->states[j]);
        t->data = (uint8_t *)seq->state + off;
        t->bytes = state_bytes(&cfg->states[s]);
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
static int state_prepare(seq_req_t *r, gs_error_t *err) {
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

/* Keeps each state output for the next request of the sequence. */
static int state_keep(seq_req_t *r, gs_session_t *s, const gs__model_io_t *m,
                      gs_error_t *err) {
  const gs__seq_config_t *cfg = &r->sm->cfg;
  size_t off = 0;
  for (size_t st = 0; st < cfg->n_states; st++) {
    size_t want = state_bytes(&cfg->states[st]);
    const gs_tensor_t *t = NULL;
    for (size_t i = 0; i < m->n_outputs && !t; i++)
      if (!strcmp(m->outputs[i].name, cfg->states[st].output))
        t = gs_session_output(s, i);
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

static int run_outputs(gs__infer_job_t *job, gs_session_t *s,
                       const gs__model_io_t *model, const gs__model_io_t *io,
                       gs_error_t *err) {
  gs_tensor_t outs[GS__INFER_MAX_TENSORS];
  for (size_t i = 0; i < io->n_outputs; i++)
    for (size_t k = 0; k < model->n_outputs; k++)
      if (!strcmp(model->outputs[k].name, io->outputs[i].name)) {
        const gs_tensor_t *t = gs_session_output(s, k);
        if (!t)
          return gs_error_set(err, GS_EINVAL, "no output '%s'",
                              io->outputs[i].name);
        outs[i] = *t;
      }
  return gs__infer_encode(&job->resp, &job->ir, io, outs, err);
}

/* Decodes what the client sent (the model's tensors less the sequence's),
 * one row at most. 0, or an HTTP status with err. */
static int decode(gs__infer_job_t *job, const gs__model_io_t *io,
                  gs_error_t *err) {
  int status = job->grpc ? gs__grpc_infer_decode(&job->ir, io, job->grpc, err)
                         : gs__infer_decode(&job->ir, io, job->req.body,
                                            job->req.body_len,
                                            job->req.infer_header_len, err);
  job->batch = 1;
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

static void work_run(uv_work_t *w) {
  seq_req_t *r = w->data;
  gs__infer_job_t *job = r->job;
  const gs__model_io_t *model = &job->slot->io;
  gs_tensor_info_t in[GS__INFER_MAX_TENSORS], out[GS__INFER_MAX_TENSORS];
  gs__model_io_t io;
  run_inputs_t ri;
  gs_error_t err = {0};
  gs_session_t *s = NULL;
  client_io(&io, in, out, model, &r->sm->cfg);
  job->t_started = gs__now_ns();
  int status = decode(job, &io, &err);
  if (status == 0 && (state_prepare(r, &err) != GS_OK ||
                      build_inputs(&ri, r, &job->ir, model, &err) != GS_OK))
    status = gs_error_http_status_run(err.code, false);
  job->t_input_done = gs__now_ns();
  if (status == 0 && !(s = gs__slot_get(job->slot, &err)))
    status = 500;
  int rc;
  if (status == 0 &&
      (rc = gs_session_run(s, ri.t, model->n_inputs, &err)) != GS_OK) {
    status = gs_error_http_status_run(rc, true);
    gs__infer_job_note_error(job, &err);
  }
  job->t_infer_done = gs__now_ns();
  if (status == 0 && (state_keep(r, s, model, &err) != GS_OK ||
                      run_outputs(job, s, model, &io, &err) != GS_OK))
    status = gs_error_http_status_run(err.code, false);
  if (s)
    gs__slot_put(job->slot, s);
  if (status != 0)
    gs__http_response_error(&job->resp, status,
                            err.msg[0] ? err.msg : "inference failed");
  job->ok = status == 0;
  job->t_done = gs__now_ns();
  gs__infer_request_release(&job->ir);
}

/* ---- on the loop ----------------------------------------------------------
 */

static void pump(seq_model_t *sm, gs__seq_t *seq);

static void after_run(uv_work_t *w, int status) {
  seq_req_t *r = w->data;
  seq_model_t *sm = r->sm;
  gs__seq_t *seq = r->seq, *woken = NULL;
  (void)status;
  bool freed = seq && gs__seq_table_done(&sm->table, seq, gs__now_ns(), &woken);
  r->job->done(r->job); /* may free the job */
  free(r);
  if (seq && !freed)
    pump(sm, seq);
  if (woken)
    pump(sm, woken);
}

static void work_none(uv_work_t *w) {
  (void)w;
}

/* Answers job with an error without running it (done is called from the
 * loop, never from inside gs__infer_submit). */
static int answer_error(uv_loop_t *loop, seq_req_t *r, int status,
                        const char *msg) {
  gs__infer_job_t *job = r->job;
  gs__http_response_error(&job->resp, status, msg);
  job->ok = false;
  job->t_started = job->t_input_done = job->t_infer_done = job->t_done =
      gs__now_ns();
  r->seq = NULL;
  r->work.data = r;
  int rc = uv_queue_work(loop, &r->work, work_none, after_run);
  if (rc != 0)
    free(r);
  return rc;
}

/* Starts seq's next request if it may run now. */
static void pump(seq_model_t *sm, gs__seq_t *seq) {
  gs__seq_item_t *item = gs__seq_table_next(&sm->table, seq);
  if (!item)
    return;
  seq_req_t *r = item->data;
  r->work.data = r;
  if (uv_queue_work(sm->timer.loop, &r->work, work_run, after_run) != 0) {
    gs__http_response_error(&r->job->resp, 500, "cannot queue the inference");
    r->job->ok = false;
    r->job->t_done = gs__now_ns();
    after_run(&r->work, 0);
  }
}

static void on_sweep(uv_timer_t *t) {
  seq_model_t *sm = t->data;
  gs__seq_t *woken[64];
  size_t n;
  do {
    gs__seq_table_expire(&sm->table, gs__now_ns(), woken, 64, &n);
    for (size_t i = 0; i < n; i++)
      pump(sm, woken[i]);
  } while (n == 64);
}

/* The table for cfg: direct gives each instance max_batch_size slots,
 * oldest max_candidate_sequences. */
static int table_for(seq_model_t *sm, const gs__model_slot_t *slot,
                     gs_error_t *err) {
  unsigned per = slot->max_batch_size ? slot->max_batch_size : 1;
  unsigned count = slot->placement.count ? slot->placement.count : 1;
  unsigned n = sm->cfg.oldest ? sm->cfg.max_sequences : per * count;
  return gs__seq_table_init(&sm->table,
                            n > GS__SEQ_MAX_SLOTS ? GS__SEQ_MAX_SLOTS : n,
                            sm->cfg.idle_us, err);
}

/* The model's sequences, made at its first request. A reload that changed
 * sequence_batching takes effect once no sequence of the old one lives
 * (their requests read the old configuration on the pool). */
static seq_model_t *seq_model(uv_loop_t *loop, gs__model_entry_t *m,
                              const gs__model_slot_t *slot, gs_error_t *err) {
  seq_model_t *sm = m->seq;
  if (sm && !sm->table.live &&
      memcmp(&sm->cfg, &m->sequence, sizeof sm->cfg) != 0) {
    gs__seq_table_release(&sm->table);
    sm->cfg = m->sequence;
    if (table_for(sm, slot, err) != GS_OK)
      return NULL; /* the table stays empty: the next request tries again */
  }
  if (sm && !sm->table.slots && table_for(sm, slot, err) != GS_OK)
    return NULL;
  if (sm)
    return sm;
  if (!(sm = calloc(1, sizeof *sm))) {
    gs_error_set(err, GS_ENOMEM, "out of memory");
    return NULL;
  }
  sm->cfg = m->sequence;
  if (table_for(sm, slot, err) != GS_OK) {
    free(sm);
    return NULL;
  }
  uint64_t every_ms = sm->cfg.idle_us / 4000;
  every_ms = every_ms < 10 ? 10 : every_ms > 1000 ? 1000 : every_ms;
  uv_timer_init(loop, &sm->timer);
  sm->timer.data = sm;
  uv_timer_start(&sm->timer, on_sweep, every_ms, every_ms);
  uv_unref((uv_handle_t *)&sm->timer);
  m->seq = sm;
  return sm;
}

int gs__seq_submit(uv_loop_t *loop, gs__infer_job_t *job,
                   void (*done)(gs__infer_job_t *job)) {
  gs__model_entry_t *m = job->entry;
  gs_error_t err = {0};
  gs__seq_params_t p;
  seq_req_t *r = calloc(1, sizeof *r);
  if (!r)
    return UV_ENOMEM;
  job->done = done;
  r->job = job;
  r->item.data = r;
  if (!(r->sm = seq_model(loop, m, job->slot, &err)))
    return answer_error(loop, r, 500, err.msg);
  if (gs__seq_params_read(&p, job, &err) != GS_OK)
    return answer_error(loop, r, 400, err.msg);
  if (!p.has_id) {
    snprintf(err.msg, sizeof err.msg,
             "inference request to model '%s' must specify a non-zero or "
             "non-empty correlation ID (the sequence_id parameter)",
             m->name);
    return answer_error(loop, r, 400, err.msg);
  }
  r->item.start = p.start;
  r->item.end = p.end;
  if (gs__seq_table_add(&r->sm->table, &p.id, &r->item, gs__now_ns(), &r->seq,
                        m->name, &err) != GS_OK)
    return answer_error(loop, r, 400, err.msg);
  pump(r->sm, r->seq);
  return 0;
}

void gs__seq_flush(gs__model_entry_t *m) {
  seq_model_t *sm = m->seq;
  if (!sm)
    return;
  for (gs__seq_t *seq = sm->table.live; seq; seq = seq->next) {
    if (seq->slot >= 0)
      continue; /* its requests run in turn */
    while (seq->head) {
      gs__seq_item_t *item = seq->head;
      seq->head = item->next;
      seq_req_t *r = item->data;
      answer_error(sm->timer.loop, r, 503,
                   "the worker is shutting down before the sequence got a "
                   "slot");
    }
    seq->tail = NULL;
  }
}

void gs__seq_model_destroy(gs__model_entry_t *m) {
  if (!m->seq)
    return;
  gs__seq_table_release(&m->seq->table);
  free(m->seq);
  m->seq = NULL;
}

/* ---- metadata and config --------------------------------------------------
 */

/* Drops from the tensors array a the ones the sequence batcher gives. */
static void drop_internal(json_t *a, const gs__seq_config_t *cfg, bool input) {
  for (size_t i = json_array_size(a); i-- > 0;) {
    const char *name =
        json_string_value(json_object_get(json_array_get(a, i), "name"));
    if (name && is_control_or_state(cfg, name, input))
      json_array_remove(a, i);
  }
}

static json_t *sequence_json(const gs__seq_config_t *cfg) {
  static const char *const kinds[] = {
      "CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_READY",
      "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID"};
  json_t *controls = json_array(), *states = json_array();
  for (size_t i = 0; i < cfg->n_controls; i++) {
    const gs__seq_control_t *c = &cfg->controls[i];
    char type[32];
    json_t *ctl = json_pack("{s:s}", "kind", kinds[c->kind]);
    snprintf(type, sizeof type, "TYPE_%s", gs_dtype_name(c->dtype));
    if (c->kind == GS__SEQ_CTL_CORRID)
      json_object_set_new(ctl, "data_type", json_string(type));
    else
      json_object_set_new(
          ctl,
          c->dtype == GS_DTYPE_INT32  ? "int32_false_true"
          : c->dtype == GS_DTYPE_FP32 ? "fp32_false_true"
                                      : "bool_false_true",
          c->dtype == GS_DTYPE_BOOL
              ? json_pack("[b, b]", c->values[0] != 0, c->values[1] != 0)
          : c->dtype == GS_DTYPE_INT32
              ? json_pack("[I, I]", (json_int_t)c->values[0],
                          (json_int_t)c->values[1])
              : json_pack("[f, f]", c->values[0], c->values[1]));
    json_array_append_new(
        controls, json_pack("{s:s, s:[o]}", "name", c->name, "control", ctl));
  }
  for (size_t i = 0; i < cfg->n_states; i++) {
    char type[32];
    snprintf(type, sizeof type, "TYPE_%s", gs_dtype_name(cfg->states[i].dtype));
    json_array_append_new(states,
                          json_pack("{s:s, s:s, s:s}", "input_name",
                                    cfg->states[i].input, "output_name",
                                    cfg->states[i].output, "data_type", type));
  }
  return json_pack("{s:I, s:o, s:o, s:{}}", "max_sequence_idle_microseconds",
                   (json_int_t)cfg->idle_us, "control_input", controls, "state",
                   states, cfg->oldest ? "oldest" : "direct");
}

void gs__seq_json(const gs__model_entry_t *m, json_t *j, bool config) {
  const gs__seq_config_t *cfg = &m->sequence;
  if (!j || !cfg->enabled)
    return;
  drop_internal(json_object_get(j, config ? "input" : "inputs"), cfg, true);
  drop_internal(json_object_get(j, config ? "output" : "outputs"), cfg, false);
  if (config)
    json_object_set_new(j, "sequence_batching", sequence_json(cfg));
}
