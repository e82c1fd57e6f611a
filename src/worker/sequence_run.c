/* The sequence batcher on the worker's loop: a request to a model with
 * sequence_batching names its sequence (parameters sequence_id,
 * sequence_start, sequence_end) and joins it in the slot table
 * (sequence.c); a sequence's requests run one at a time, in order, with
 * the control inputs and its implicit state added (sequence_batch.c).
 * direct: each request runs when its turn comes, alone. oldest: the next
 * requests of up to max_batch_size sequences, oldest first, run as one
 * batch, once it reaches a preferred size or max_batch_size, or its
 * oldest request has waited max_queue_delay_microseconds; at most one
 * batch per model instance runs at a time. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"
#include "worker/pool.h"
#include "worker/sequence_int.h"

typedef gs__seq_model_t seq_model_t;
typedef gs__seq_req_t seq_req_t;

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

/* ---- on the loop ----------------------------------------------------------
 */

static void pump(seq_model_t *sm, gs__seq_t *seq);
static void schedule_oldest(seq_model_t *sm);

static bool batches(const seq_model_t *sm) {
  return sm->cfg.oldest;
}

/* Each request's sequence moves on (freed at its END), the request is
 * answered; direct: its sequence's next, or a woken one's, starts. */
static void finish(seq_model_t *sm, seq_req_t **reqs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    seq_req_t *r = reqs[i];
    gs__seq_t *seq = r->seq, *woken = NULL;
    bool freed = gs__seq_table_done(&sm->table, seq, gs__now_ns(), &woken);
    r->job->done(r->job); /* may free the job */
    free(r);
    if (!batches(sm) && !freed)
      pump(sm, seq);
    if (!batches(sm) && woken)
      pump(sm, woken);
  }
}

/* Answers n requests taken from their sequences with msg, unrun. */
static void fail_all(seq_model_t *sm, seq_req_t **reqs, size_t n,
                     const char *msg) {
  for (size_t i = 0; i < n; i++) {
    gs__http_response_error(&reqs[i]->job->resp, 500, msg);
    reqs[i]->job->ok = false;
    reqs[i]->job->t_done = gs__now_ns();
  }
  finish(sm, reqs, n);
}

/* The batch ran: its executions counted, its requests finished; then
 * oldest's next batch. */
static void after_batch(uv_work_t *w, int status) {
  gs__seq_batch_t *b = w->data;
  seq_model_t *sm = b->sm;
  gs__model_stats_t *st = &b->entry->stats;
  (void)status;
  for (size_t i = 0; i < b->n_execs; i++) {
    const gs__seq_exec_t *ex = &b->execs[i];
    st->execution_count++;
    gs__batch_stats_add(st, ex->rows, ex->input_ns, ex->infer_ns,
                        ex->output_ns);
  }
  finish(sm, b->reqs, b->n);
  free(b->reqs);
  free(b->execs);
  free(b);
  if (batches(sm)) {
    sm->in_flight--;
    schedule_oldest(sm);
  }
}

/* Queues reqs (n, each its sequence's next, taken; the batch owns the
 * array) as a batch. */
static void start_batch(seq_model_t *sm, seq_req_t **reqs, size_t n) {
  gs__seq_batch_t *b = calloc(1, sizeof *b);
  gs__seq_exec_t *execs = calloc(n, sizeof *execs);
  if (b && execs) {
    b->sm = sm;
    b->entry = sm->entry;
    b->reqs = reqs;
    b->n = n;
    b->execs = execs;
    b->work.data = b;
    if (gs__queue_work(sm->timer.loop, &b->work, gs__seq_batch_work,
                       after_batch) == 0) {
      sm->in_flight += batches(sm);
      return;
    }
  }
  free(b);
  free(execs);
  fail_all(sm, reqs, n, "cannot queue the inference");
  free(reqs);
}

/* direct: starts seq's next request alone if it may run now. */
static void pump(seq_model_t *sm, gs__seq_t *seq) {
  if (batches(sm)) {
    schedule_oldest(sm);
    return;
  }
  seq_req_t **one = malloc(sizeof *one);
  gs__seq_item_t *item = one ? gs__seq_table_next(&sm->table, seq) : NULL;
  if (!item) { /* out of memory: the next completion or request retries */
    free(one);
    return;
  }
  one[0] = item->data;
  start_batch(sm, one, 1);
}

static uint64_t arrival(const gs__seq_t *seq) {
  return ((const seq_req_t *)seq->head->data)->arrival_ns;
}

static int by_arrival(const void *a, const void *b) {
  uint64_t x = arrival(*(gs__seq_t *const *)a);
  uint64_t y = arrival(*(gs__seq_t *const *)b);
  return x < y ? -1 : x > y;
}

static void on_delay(uv_timer_t *t) {
  schedule_oldest(t->data);
}

/* The sequences whose next request may run now (a slot, none running),
 * oldest request first, into sm->ready; their count. */
static size_t ready_sequences(seq_model_t *sm) {
  size_t n = 0;
  for (gs__seq_t *s = sm->table.live; s && n < sm->table.n_slots; s = s->next)
    if (s->slot >= 0 && !s->busy && s->head)
      sm->ready[n++] = s;
  qsort(sm->ready, n, sizeof *sm->ready, by_arrival);
  return n;
}

/* How many of the n ready sequences start a batch now (gs__batch_pick's
 * rules, one row each); 0: wait, the timer armed for the oldest. */
static size_t pick(seq_model_t *sm, size_t n) {
  const gs__model_slot_t *slot =
      ((seq_req_t *)sm->ready[0]->head->data)->job->slot;
  /* the rows every session has planned (less while larger sizes plan) */
  unsigned max = slot->max_batch_size ? (unsigned)gs__slot_batch_max(slot) : 1;
  size_t window = n < (size_t)max + 1 ? n : (size_t)max + 1;
  uint64_t rows[65], batch_rows = 0, now = gs__now_ns();
  uint64_t due_at = arrival(sm->ready[0]) + sm->cfg.delay_us * 1000u;
  bool compat[65];
  gs__batching_t cfg = {.enabled = true,
                        .max_queue_delay_us = sm->cfg.delay_us,
                        .n_preferred = sm->cfg.n_preferred};
  _Static_assert(sizeof cfg.preferred == sizeof sm->cfg.preferred,
                 "preferred sizes: the same array in both configurations");
  memcpy(cfg.preferred, sm->cfg.preferred, sizeof sm->cfg.preferred);
  if (window > 65)
    window = 65;
  for (size_t i = 0; i < window; i++) {
    rows[i] = 1;
    compat[i] = ((seq_req_t *)sm->ready[i]->head->data)->job->slot == slot;
  }
  bool due =
      sm->draining || now >= due_at || uv_is_closing((uv_handle_t *)&sm->delay);
  size_t take = gs__batch_pick(rows, compat, window, max < 64 ? max : 64, &cfg,
                               due, &batch_rows);
  if (take == 0) {
    uint64_t wait_ms = (due_at - now + 999999) / 1000000;
    uv_update_time(sm->delay.loop);
    uv_timer_start(&sm->delay, on_delay, wait_ms ? wait_ms : 1, 0);
  }
  return take;
}

/* oldest: starts batches while an instance is free and one is ready. */
static void schedule_oldest(seq_model_t *sm) {
  size_t n;
  while ((n = ready_sequences(sm)) > 0) {
    const gs__model_slot_t *slot =
        ((seq_req_t *)sm->ready[0]->head->data)->job->slot;
    unsigned instances = slot->placement.count ? slot->placement.count : 1;
    if (sm->in_flight >= instances)
      return; /* after_batch schedules again */
    size_t take = pick(sm, n);
    if (take == 0)
      return;
    seq_req_t **reqs = malloc(take * sizeof *reqs);
    if (!reqs) /* out of memory: the next completion or request retries */
      return;
    for (size_t i = 0; i < take; i++)
      reqs[i] = gs__seq_table_next(&sm->table, sm->ready[i])->data;
    start_batch(sm, reqs, take);
  }
  if (!uv_is_closing((uv_handle_t *)&sm->delay))
    uv_timer_stop(&sm->delay);
}

static void after_answer(uv_work_t *w, int status) {
  seq_req_t *r = w->data;
  (void)status;
  r->job->done(r->job); /* may free the job */
  free(r);
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
  int rc = gs__queue_work(loop, &r->work, work_none, after_answer);
  if (rc != 0)
    free(r);
  return rc;
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
  free(sm->ready);
  n = n > GS__SEQ_MAX_SLOTS ? GS__SEQ_MAX_SLOTS : n;
  if (!(sm->ready = calloc(n ? n : 1, sizeof *sm->ready)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  return gs__seq_table_init(&sm->table, n, sm->cfg.idle_us, err);
}

/* The model's sequences, made at its first request. A reload that changed
 * sequence_batching takes effect once no sequence of the old one lives
 * (their requests read the old configuration on the pool). */
static seq_model_t *seq_model(uv_loop_t *loop, gs__model_entry_t *m,
                              const gs__model_slot_t *slot, gs_error_t *err) {
  seq_model_t *sm = m->seq;
  if (sm && !sm->table.live && !sm->in_flight &&
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
  sm->entry = m;
  if (table_for(sm, slot, err) != GS_OK) {
    free(sm->ready);
    free(sm);
    return NULL;
  }
  uint64_t every_ms = sm->cfg.idle_us / 4000;
  every_ms = every_ms < 10 ? 10 : every_ms > 1000 ? 1000 : every_ms;
  uv_timer_init(loop, &sm->timer);
  sm->timer.data = sm;
  uv_timer_start(&sm->timer, on_sweep, every_ms, every_ms);
  uv_unref((uv_handle_t *)&sm->timer);
  uv_timer_init(loop, &sm->delay);
  sm->delay.data = sm;
  uv_unref((uv_handle_t *)&sm->delay);
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
  r->arrival_ns = gs__now_ns();
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
  if (gs__seq_table_add(&r->sm->table, &p.id, &r->item, r->arrival_ns, &r->seq,
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
  sm->draining = true; /* oldest: what is queued starts without waiting */
  if (batches(sm))
    schedule_oldest(sm);
}

void gs__seq_model_destroy(gs__model_entry_t *m) {
  if (!m->seq)
    return;
  gs__seq_table_release(&m->seq->table);
  free(m->seq->ready);
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
    if (name && gs__seq_is_internal(cfg, name, input))
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
