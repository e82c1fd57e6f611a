/* The dynamic batcher: infer requests for a model with dynamic_batching are
 * decoded on the thread pool, queued per model on the loop thread, and run
 * as one engine call per batch once the batch is full (max_batch_size or a
 * preferred size), cannot grow, or its oldest request has waited the
 * model's queue delay (a libuv timer); outputs are split back by rows. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/pool.h"
#include "worker/worker_int.h"

/* ---- batch assembly (no loop) --------------------------------------------
 */

static const gs_tensor_t *input_named(const gs__infer_request_t *r,
                                      const char *name) {
  for (size_t i = 0; i < r->n_inputs; i++)
    if (r->inputs[i].name && strcmp(r->inputs[i].name, name) == 0)
      return &r->inputs[i];
  return NULL;
}

static bool same_item_shape(const gs_tensor_t *a, const gs_tensor_t *b) {
  if (!a || !b || a->rank != b->rank || a->rank == 0 || a->dtype != b->dtype)
    return false;
  for (unsigned d = 1; d < a->rank; d++)
    if (a->shape[d] != b->shape[d])
      return false;
  return true;
}

bool gs__batch_compatible(const gs__infer_request_t *a,
                          const gs__infer_request_t *b,
                          const gs__model_io_t *io) {
  for (size_t k = 0; k < io->n_inputs; k++) {
    const char *name = io->inputs[k].name;
    if (!same_item_shape(input_named(a, name), input_named(b, name)))
      return false;
  }
  return true;
}

static bool preferred(const gs__batching_t *cfg, uint64_t rows) {
  for (unsigned i = 0; i < cfg->n_preferred; i++)
    if (cfg->preferred[i] == rows)
      return true;
  return false;
}

size_t gs__batch_pick(const uint64_t *rows, const bool *compatible, size_t n,
                      unsigned max_batch_size, const gs__batching_t *cfg,
                      bool due, uint64_t *batch_rows) {
  size_t take = 0, pref_take = 0;
  uint64_t sum = 0, pref_sum = 0;
  bool blocked = false;
  for (size_t i = 0; i < n; i++) {
    if ((i > 0 && !compatible[i]) ||
        (take > 0 && sum + rows[i] > max_batch_size)) {
      blocked = true;
      break;
    }
    sum += rows[i];
    take = i + 1;
    if (preferred(cfg, sum)) {
      pref_take = take;
      pref_sum = sum;
    }
  }
  *batch_rows = 0;
  if (take == 0)
    return 0;
  if (sum >= max_batch_size || blocked || due) {
    *batch_rows = sum;
    return take;
  }
  *batch_rows = pref_sum;
  return pref_take;
}

/* BYTES tensors (each element a 4-byte length, then its bytes) have rows
 * of varying size: elements per row, and where element i starts. */
static size_t row_elements(const gs_tensor_t *t) {
  size_t n = 1;
  for (unsigned d = 1; d < t->rank; d++)
    n *= (size_t)t->shape[d];
  return n;
}

static size_t bytes_offset(const gs_tensor_t *t, size_t element) {
  const uint8_t *p = t->data;
  size_t at = 0;
  for (size_t i = 0; i < element && t->bytes - at >= 4; i++) {
    uint32_t len;
    memcpy(&len, p + at, 4);
    at += 4 + (len < t->bytes - at - 4 ? len : t->bytes - at - 4);
  }
  return at;
}

/* Bytes of one padding row: zeros, which for BYTES are empty strings. */
static size_t pad_row_bytes(const gs_tensor_t *t, size_t bytes, size_t rows) {
  if (t->dtype == GS_DTYPE_BYTES)
    return 4 * row_elements(t);
  return rows ? bytes / rows : 0;
}

static void *malloc_buf(void *ctx, size_t k, size_t bytes, gs_error_t *err) {
  void **bufs = ctx;
  if (!(bufs[k] = malloc(bytes + 1)))
    gs_error_set(err, GS_ENOMEM, "out of memory");
  return bufs[k];
}

int gs__batch_concat(gs_tensor_t *out, void **bufs,
                     const gs__infer_request_t *const *reqs, size_t n,
                     const gs__model_io_t *io, gs_error_t *err) {
  memset(bufs, 0, io->n_inputs * sizeof *bufs);
  return gs__batch_concat_to(out, malloc_buf, bufs, reqs, n, io, 0, err);
}

int gs__batch_concat_to(gs_tensor_t *out, gs__batch_buf_fn buf_for, void *ctx,
                        const gs__infer_request_t *const *reqs, size_t n,
                        const gs__model_io_t *io, uint64_t padded,
                        gs_error_t *err) {
  for (size_t k = 0; k < io->n_inputs; k++) {
    const char *name = io->inputs[k].name;
    const gs_tensor_t *first = n ? input_named(reqs[0], name) : NULL;
    if (!first)
      return gs_error_set(err, GS_EINVAL, "no input '%s' to batch", name);
    size_t bytes = 0;
    int64_t rows = 0;
    for (size_t r = 0; r < n; r++) {
      const gs_tensor_t *t = input_named(reqs[r], name);
      if (!same_item_shape(first, t))
        return gs_error_set(err, GS_EINVAL,
                            "input '%s' differs in shape within a batch", name);
      if (t->bytes > SIZE_MAX - 1 - bytes)
        return gs_error_set(err, GS_ELIMIT, "a batch of '%s' is too large",
                            name);
      bytes += t->bytes;
      rows += t->shape[0];
    }
    size_t row_bytes = pad_row_bytes(first, bytes, (size_t)rows), total = bytes;
    if (padded > (uint64_t)rows && rows > 0) {
      if (row_bytes && padded > (SIZE_MAX - 1 - bytes) / row_bytes)
        return gs_error_set(err, GS_ELIMIT, "a padded batch is too large");
      total = bytes + (size_t)(padded - (uint64_t)rows) * row_bytes;
    }
    uint8_t *buf = buf_for(ctx, k, total, err);
    if (!buf)
      return err && err->code ? err->code : GS_ENOMEM;
    size_t at = 0;
    for (size_t r = 0; r < n; r++) {
      const gs_tensor_t *t = input_named(reqs[r], name);
      if (t->bytes)
        memcpy(buf + at, t->data, t->bytes);
      at += t->bytes;
    }
    if (total > bytes)
      memset(buf + bytes, 0, total - bytes);
    out[k] = *first;
    out[k].shape[0] = total > bytes ? (int64_t)padded : rows;
    out[k].data = buf;
    out[k].bytes = total;
  }
  return GS_OK;
}

uint64_t gs__batch_padded_rows(const gs__model_slot_t *slot, uint64_t rows) {
  uint64_t max = slot->max_batch_size, best = max;
  bool graphs = slot->provider == GS_PROVIDER_CUDA || slot->warm;
  if (!graphs || max == 0 || rows >= max)
    return rows;
  for (uint64_t p = 1; p < max; p *= 2)
    if (p >= rows && p < best)
      best = p;
  for (unsigned i = 0; i < slot->batching.n_preferred; i++)
    if (slot->batching.preferred[i] >= rows &&
        slot->batching.preferred[i] < best)
      best = slot->batching.preferred[i];
  return best;
}

int gs__batch_pad(gs_tensor_t *out, void **bufs, size_t n, uint64_t rows,
                  uint64_t padded, gs_error_t *err) {
  for (size_t k = 0; k < n && padded > rows && rows > 0; k++) {
    size_t row_bytes = pad_row_bytes(&out[k], out[k].bytes, rows);
    if (row_bytes && padded > (SIZE_MAX - 1 - out[k].bytes) / row_bytes)
      return gs_error_set(err, GS_ELIMIT, "a padded batch is too large");
    size_t total = out[k].bytes + (padded - rows) * row_bytes;
    uint8_t *buf = realloc(bufs[k], total + 1);
    if (!buf)
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    memset(buf + out[k].bytes, 0, (padded - rows) * row_bytes);
    bufs[k] = buf;
    out[k].data = buf;
    out[k].bytes = total;
    out[k].shape[0] = (int64_t)padded;
  }
  return GS_OK;
}

int gs__batch_split(gs_tensor_t *slices, const gs_tensor_t *outputs, size_t n,
                    uint64_t row, uint64_t rows, uint64_t total_rows,
                    gs_error_t *err) {
  for (size_t i = 0; i < n; i++) {
    const gs_tensor_t *t = &outputs[i];
    if (t->rank == 0 || (uint64_t)t->shape[0] != total_rows ||
        row + rows > total_rows)
      return gs_error_set(err, GS_EINVAL,
                          "output '%s' does not have the batch's %llu rows "
                          "as its first dimension",
                          t->name, (unsigned long long)total_rows);
    size_t row_bytes = total_rows ? t->bytes / total_rows : 0;
    size_t from = row * row_bytes, to = (row + rows) * row_bytes;
    if (t->dtype == GS_DTYPE_BYTES) {
      from = bytes_offset(t, row * row_elements(t));
      to = bytes_offset(t, (row + rows) * row_elements(t));
    }
    slices[i] = *t;
    slices[i].shape[0] = (int64_t)rows;
    slices[i].data = (const uint8_t *)t->data + from;
    slices[i].bytes = to - from;
  }
  return GS_OK;
}

/* ---- running batches ------------------------------------------------------
 */

typedef struct batch_s {
  uv_work_t work;
  gs__model_entry_t *entry;
  gs__infer_job_t *jobs; /* through next, oldest first */
  size_t n;
  uint64_t rows;
  uint64_t padded; /* rows the engine ran: rows, or a GPU graph's size */
  uint64_t t_started, t_input_done, t_infer_done, t_done;
  bool ran; /* the engine ran: an execution for the statistics */
} batch_t;

static void job_fail(gs__infer_job_t *job, int status, const gs_error_t *err) {
  gs__http_response_error(&job->resp, status,
                          err->msg[0] ? err->msg : "inference failed");
  job->ok = false;
  job->t_done = gs__now_ns();
}

/* Encodes each job's rows of the batch outputs. */
static void answer_jobs(batch_t *b, gs_session_t *s) {
  const gs__model_io_t *io = &b->jobs->slot->io;
  gs_tensor_t outs[GS__INFER_MAX_TENSORS], slices[GS__INFER_MAX_TENSORS];
  gs_error_t err = {0};
  for (size_t i = 0; i < io->n_outputs; i++) {
    const gs_tensor_t *t = gs_session_output(s, i);
    if (!t) {
      gs_error_set(&err, GS_ECORRUPT, "output %zu is missing", i);
      break;
    }
    outs[i] = *t;
  }
  uint64_t row = 0;
  for (gs__infer_job_t *j = b->jobs; j; j = j->next) {
    j->t_started = b->t_started;
    j->t_input_done = b->t_input_done;
    j->t_infer_done = b->t_infer_done;
    gs_error_t jerr = err;
    int status = err.msg[0] ? 500 : 0;
    if (status == 0 && gs__batch_split(slices, outs, io->n_outputs, row,
                                       j->batch, b->padded, &jerr) != GS_OK)
      status = 500;
    if (status == 0 && gs__infer_encode(&j->resp, &j->ir, io, slices, &jerr))
      status = gs_error_http_status_run(jerr.code, false);
    row += j->batch;
    if (status != 0)
      job_fail(j, status, &jerr);
    j->ok = status == 0;
    j->t_done = gs__now_ns();
  }
}

/* The batch is written straight into the session's input buffers (on a
 * GPU its pinned staging: the run then copies nothing on the host). */
void *gs__batch_session_buf(void *ctx, size_t k, size_t bytes,
                            gs_error_t *err) {
  void *buf = NULL;
  return gs_session_input_buffer(ctx, k, bytes, &buf, err) == GS_OK ? buf
                                                                    : NULL;
}

/* On a thread of the pool: concatenate, run once, split and encode. */
static void work_batch(uv_work_t *w) {
  batch_t *b = w->data;
  gs__model_slot_t *slot = b->jobs->slot;
  const gs__infer_request_t *reqs[64], **rp = reqs;
  gs_tensor_t ins[GS__INFER_MAX_TENSORS];
  gs_error_t err = {0};
  gs_session_t *s = NULL;
  int status = 0;
  b->t_started = gs__now_ns();
  if (b->n > 64 && !(rp = malloc(b->n * sizeof *rp)))
    status = 500;
  size_t i = 0;
  for (gs__infer_job_t *j = b->jobs; status == 0 && j; j = j->next)
    rp[i++] = &j->ir;
  if (status == 0 && !(s = gs__slot_get(slot, &err))) {
    status = err.code == GS_ENODEV ? 503 : 500; /* 503: the device failed */
    for (gs__infer_job_t *j = b->jobs; j; j = j->next)
      gs__infer_job_note_error(j, &err); /* a session on a dead device */
  }
  b->padded = gs__batch_padded_rows(slot, b->rows);
  if (status == 0 &&
      gs__batch_concat_to(ins, gs__batch_session_buf, s, rp, b->n, &slot->io,
                          b->padded, &err) != GS_OK)
    status = gs_error_http_status_run(err.code, false);
  b->t_input_done = gs__now_ns();
  if (status == 0 &&
      (gs__test_device_fault(&err) ||
       gs_session_run(s, ins, slot->io.n_inputs, &err) != GS_OK)) {
    status = gs_error_http_status_run(err.code, true);
    for (gs__infer_job_t *j = b->jobs; j; j = j->next)
      gs__infer_job_note_error(j, &err);
  }
  b->t_infer_done = gs__now_ns();
  b->ran = status == 0;
  if (status == 0)
    answer_jobs(b, s);
  for (gs__infer_job_t *j = b->jobs; status != 0 && j; j = j->next)
    job_fail(j, status, &err);
  if (s)
    gs__slot_put(slot, s);
  if (rp != reqs)
    free(rp);
  b->t_done = gs__now_ns();
}

static void schedule(uv_loop_t *loop, gs__model_entry_t *m, bool force);

static void after_batch(uv_work_t *w, int status) {
  batch_t *b = w->data;
  gs__model_entry_t *m = b->entry;
  (void)status;
  if (b->ran) {
    b->entry->stats.execution_count++;
    gs__batch_stats_add(
        &b->entry->stats, b->rows, b->t_input_done - b->t_started,
        b->t_infer_done - b->t_input_done, b->t_done - b->t_infer_done);
  }
  for (gs__infer_job_t *j = b->jobs, *next; j; j = next) {
    next = j->next; /* done may free j */
    j->next = NULL;
    j->done(j);
  }
  uv_loop_t *loop = w->loop; /* w lies in b */
  free(b);
  /* An instance is free: what waited for one may start. */
  m->in_flight--;
  if (m->queue_head && m->timer_ready)
    schedule(loop, m, m->draining);
}

/* Starts the first n jobs of list as one batch. */
static void start_batch(uv_loop_t *loop, gs__model_entry_t *m,
                        gs__infer_job_t *list, size_t n, uint64_t rows) {
  batch_t *b = calloc(1, sizeof *b);
  gs_error_t err = {0};
  if (b) {
    b->entry = m;
    b->jobs = list;
    b->n = n;
    b->rows = rows;
    b->work.data = b;
    if (gs__queue_work(loop, &b->work, work_batch, after_batch) == 0) {
      m->in_flight++;
      return;
    }
  }
  free(b);
  gs_error_set(&err, GS_ENOMEM, "cannot queue the inference");
  for (gs__infer_job_t *j = list, *next; j; j = next) {
    next = j->next;
    j->next = NULL;
    job_fail(j, 500, &err);
    j->done(j);
  }
}

/* ---- the queue and its policy (Triton's ModelQueuePolicy) ---------------
 */

uint64_t gs__queue_timeout_us(const gs__queue_policy_t *p, uint64_t requested) {
  /* Triton: the request's own timeout can only shorten the default (so
   * with no default there is none). */
  if (p->allow_timeout_override && requested &&
      requested < p->default_timeout_us)
    return requested;
  return p->default_timeout_us;
}

/* Answers job now, UNAVAILABLE (503; gRPC's UNAVAILABLE) with Triton's
 * message; job->done may free it. */
static void job_refuse(gs__infer_job_t *job, const char *why) {
  gs_error_t err = {0};
  snprintf(err.msg, sizeof err.msg, "%s", why);
  job_fail(job, 503, &err);
  job->done(job);
}

/* Queues job behind the other fresh requests, ahead of those DELAY moved
 * back: Triton keeps those in a queue of their own, served after. */
void gs__queue_add(gs__model_entry_t *m, gs__infer_job_t *job) {
  gs__infer_job_t **at =
      m->queue_fresh_tail ? &m->queue_fresh_tail->next : &m->queue_head;
  job->next = *at;
  *at = job;
  if (!job->next)
    m->queue_tail = job;
  m->queue_fresh_tail = job;
  if (job->timeout_ns &&
      (!m->queue_expiry_ns || job->timeout_ns < m->queue_expiry_ns))
    m->queue_expiry_ns = job->timeout_ns;
}

/* Appends the list head..tail to m's queue. */
static void queue_append_list(gs__model_entry_t *m, gs__infer_job_t *head,
                              gs__infer_job_t *tail) {
  if (!head)
    return;
  if (m->queue_tail)
    m->queue_tail->next = head;
  else
    m->queue_head = head;
  m->queue_tail = tail;
}

/* Takes the fresh requests whose timeout has passed out of the queue: DELAY
 * moves them behind every other, REJECT returns them (through next) to be
 * answered once the queue is whole again. */
gs__infer_job_t *gs__queue_expire(gs__model_entry_t *m, uint64_t now) {
  if (!m->queue_expiry_ns || !m->queue_fresh_tail || now < m->queue_expiry_ns)
    return NULL;
  gs__infer_job_t *j = m->queue_head, *rest = m->queue_fresh_tail->next;
  gs__infer_job_t *rest_tail = rest ? m->queue_tail : NULL;
  gs__infer_job_t *late = NULL, *late_tail = NULL;
  gs__infer_job_t *gone = NULL, *gone_tail = NULL;
  m->queue_head = m->queue_tail = m->queue_fresh_tail = NULL;
  m->queue_expiry_ns = 0;
  for (gs__infer_job_t *next; j != rest; j = next) {
    next = j->next;
    if (!j->timeout_ns || now < j->timeout_ns) {
      gs__queue_add(m, j);
      continue;
    }
    m->stats.queue_timeout++;
    j->timeout_ns = 0; /* DELAY: it waits on, without a timeout */
    if (j->slot->batching.policy.delay) {
      gs__job_append(&late, &late_tail, j);
    } else {
      gs__job_append(&gone, &gone_tail, j);
      m->queue_len--;
    }
  }
  queue_append_list(m, rest, rest_tail);
  queue_append_list(m, late, late_tail);
  return gone;
}

/* The first n jobs of m's queue, through next. queue_expiry_ns may stay
 * earlier than the first timeout left: gs__queue_expire then finds none and
 * sets it right. */
gs__infer_job_t *gs__queue_take(gs__model_entry_t *m, size_t n) {
  gs__infer_job_t *head = m->queue_head, *last = head;
  for (size_t i = 1; i < n; i++)
    last = last->next;
  for (gs__infer_job_t *j = head; j != last->next; j = j->next)
    if (j == m->queue_fresh_tail) { /* every fresh request goes */
      m->queue_fresh_tail = NULL;
      m->queue_expiry_ns = 0;
    }
  m->queue_head = last->next;
  if (!m->queue_head)
    m->queue_tail = NULL;
  m->queue_len -= n;
  last->next = NULL;
  return head;
}

static void on_timer(uv_timer_t *t);

/* Wakes the batcher at wake_ns (the oldest request's queue delay; 0: none)
 * or at the first queue policy timeout, whichever comes first. Triton
 * looks at timeouts only as it forms a batch; waking for them answers a
 * REJECT when its time comes, earlier than Triton would. */
static void arm_timer(uv_loop_t *loop, gs__model_entry_t *m, uint64_t wake_ns) {
  if (uv_is_closing((uv_handle_t *)&m->timer))
    return;
  uint64_t at = wake_ns;
  if (m->queue_expiry_ns && (!at || m->queue_expiry_ns < at))
    at = m->queue_expiry_ns;
  if (!at) {
    uv_timer_stop(&m->timer);
    return;
  }
  uint64_t now = gs__now_ns();
  uint64_t wait_ms = at > now ? (at - now + 999999) / 1000000 : 0;
  uv_update_time(loop);
  uv_timer_start(&m->timer, on_timer, wait_ms ? wait_ms : 1, 0);
}

/* Takes as many batches from m's queue as are ready, once the queue policy
 * has taken out the requests whose timeout passed (gs__queue_expire; REJECT's
 * are answered last, when the queue is whole); arms the timer for the
 * oldest request left or the first timeout. force: every queued request is
 * due. */
static void schedule(uv_loop_t *loop, gs__model_entry_t *m, bool force) {
  /* instance_group count: every instance busy, the queue grows into
   * fuller batches meanwhile and after_batch schedules again. Without a
   * count, batches start as they fill (the thread pool bounds them). */
  unsigned instances = m->placement.count ? m->placement.count : UINT_MAX;
  uint64_t wake_ns = 0;
  gs__infer_job_t *expired = gs__queue_expire(m, gs__now_ns());
  while (m->queue_head && m->in_flight < instances) {
    gs__infer_job_t *head = m->queue_head;
    const gs__model_slot_t *slot = head->slot;
    uint64_t max_rows = gs__slot_batch_max(slot); /* less while planning */
    size_t window = m->queue_len;
    if (window > (size_t)max_rows + 1)
      window = (size_t)max_rows + 1;
    uint64_t *rows = malloc(window * sizeof *rows);
    bool *compat = malloc(window * sizeof *compat);
    uint64_t now = gs__now_ns(), batch_rows = 0;
    bool due = force || now >= head->deadline_ns ||
               uv_is_closing((uv_handle_t *)&m->timer);
    size_t n = 0;
    if (rows && compat) {
      gs__infer_job_t *j = head;
      for (size_t i = 0; i < window; i++, j = j->next) {
        rows[i] = j->batch;
        compat[i] = j->slot == slot &&
                    gs__batch_compatible(&head->ir, &j->ir, &slot->io);
      }
      n = gs__batch_pick(rows, compat, window, (unsigned)max_rows,
                         &slot->batching, due, &batch_rows);
    } else {
      n = 1; /* out of memory: the oldest runs alone */
      batch_rows = head->batch;
    }
    free(rows);
    free(compat);
    if (n == 0) {
      wake_ns = head->deadline_ns;
      break;
    }
    start_batch(loop, m, gs__queue_take(m, n), n, batch_rows);
  }
  arm_timer(loop, m, wake_ns);
  for (gs__infer_job_t *j = expired, *next; j; j = next) {
    next = j->next;
    j->next = NULL;
    job_refuse(j, "Request timeout expired");
  }
}

static void on_timer(uv_timer_t *t) {
  gs__model_entry_t *m = t->data;
  schedule(t->loop, m, false);
}

static void work_decode(uv_work_t *w) {
  gs__infer_job_t *job = w->data;
  gs_error_t err = {0};
  uint64_t t0 = gs__now_ns();
  int status = gs__infer_job_decode(job, -1, &err); /* host: concatenated */
  job->decode_ns = gs__now_ns() - t0;
  if (status != 0)
    job_fail(job, status, &err);
  else
    job->ok = true;
}

static void after_decode(uv_work_t *w, int status) {
  gs__infer_job_t *job = w->data;
  gs__model_entry_t *m = job->entry;
  (void)status;
  if (!job->ok) {
    job->done(job);
    return;
  }
  job->batched = true;
  /* Nothing to batch with, or no timer to wait on after a flush. */
  if (job->batch == 0 || m->draining) {
    start_batch(w->loop, m, job, 1, job->batch);
    return;
  }
  if (!m->timer_ready) {
    uv_timer_init(w->loop, &m->timer);
    m->timer.data = m;
    m->timer_ready = true;
  }
  const gs__queue_policy_t *policy = &job->slot->batching.policy;
  if (policy->max_queue_size && m->queue_len >= policy->max_queue_size) {
    m->stats.queue_full++;
    job_refuse(job, "Exceeds maximum queue size"); /* at once, as Triton */
    return;
  }
  uint64_t now = gs__now_ns();
  uint64_t timeout_us = gs__queue_timeout_us(policy, job->ir.timeout_us);
  job->deadline_ns = now + job->slot->batching.max_queue_delay_us * 1000u;
  /* a timeout past the clock's range is none */
  job->timeout_ns = timeout_us && timeout_us < (UINT64_MAX - now) / 1000
                        ? now + timeout_us * 1000
                        : 0;
  gs__queue_add(m, job);
  m->queue_len++;
  schedule(w->loop, m, false);
}

int gs__batch_submit(uv_loop_t *loop, gs__infer_job_t *job) {
  return gs__queue_work(loop, &job->work, work_decode, after_decode);
}

void gs__batcher_flush(gs__repo_t *repo) {
  for (unsigned i = 0; i < repo->n; i++) {
    gs__model_entry_t *m = &repo->models[i];
    m->draining = true;
    gs__seq_flush(m);
    if (m->timer_ready && m->queue_head)
      schedule(m->timer.loop, m, true);
  }
}
