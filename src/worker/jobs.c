/* An infer as a job: submitted to the thread pool (one at a time per free
 * session on a warm model; a model with dynamic or sequence batching hands
 * it to its batcher), where it takes a session from the model's pool,
 * decodes, runs (padded to a planned batch on a warm model) and encodes;
 * then the model's statistics (request durations, batch_stats) on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/test_hooks.h"
#include "worker/grpc_int.h" /* gs__grpc_infer_decode */
#include "worker/pool.h"
#include "worker/shm.h"
#include "worker/worker_int.h"

uint64_t gs__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The rows every input gives as dim 0; they must agree. */
static int batch_rows(const gs__infer_request_t *ir, const char *model,
                      uint64_t *rows, gs_error_t *err) {
  for (size_t i = 0; i < ir->n_inputs; i++) {
    const gs_tensor_t *t = &ir->inputs[i];
    if (t->rank == 0)
      return gs_error_set(err, GS_EINVAL,
                          "input '%s' for model '%s' has no batch dimension",
                          t->name, model);
    if (i > 0 && (uint64_t)t->shape[0] != *rows)
      return gs_error_set(err, GS_EINVAL,
                          "inputs for model '%s' disagree on the batch size "
                          "(%llu and %lld)",
                          model, (unsigned long long)*rows,
                          (long long)t->shape[0]);
    *rows = (uint64_t)t->shape[0];
  }
  return GS_OK;
}

int gs__slot_device(const gs__model_slot_t *slot) {
  return slot->provider == GS_PROVIDER_CUDA ? slot->placement.device : -1;
}

int gs__infer_job_decode(gs__infer_job_t *job, int device, gs_error_t *err) {
  const gs__model_slot_t *slot = job->slot;
  /* binary data is copied once, where it goes (run_padded, the batch) */
  int status =
      job->grpc ? gs__grpc_infer_decode(&job->ir, &slot->io, job->grpc, err)
                : gs__infer_decode_unaligned(&job->ir, &slot->io, job->req.body,
                                             job->req.body_len,
                                             job->req.infer_header_len, err);
  job->ir.labels = slot->labels; /* for classification */
  job->ir.batch_first_dim = slot->max_batch_size > 0;
  job->batch = 1;
  /* inputs in shared memory: point them at their regions' bytes */
  if (status == 0 &&
      gs__shm_resolve(&job->ir, job->shm, device, slot->model, err) != GS_OK)
    status = gs_error_http_status(err->code);
  if (status != 0 || slot->max_batch_size == 0)
    return status;
  if (batch_rows(&job->ir, slot->name, &job->batch, err) != GS_OK)
    return 400;
  /* Triton refuses a request larger than the model's batch. */
  if (job->batch > slot->max_batch_size)
    return gs_error_set(err, GS_EINVAL,
                        "inference request batch-size must be <= %u for "
                        "'%s'",
                        slot->max_batch_size, slot->name),
           400;
  return 0;
}

/* Runs the request on s. A warm model with a batch dimension runs it
 * padded with zero rows to a planned size, as a batch would (a new shape
 * would plan, and on a GPU capture, on this request); *rows is the rows
 * run. CUDA shared memory on the session's GPU stays there (the engine
 * reads and writes the regions) unless padding concatenates on the host. */
static int run_padded(gs__infer_job_t *job, gs_session_t *s, uint64_t *rows,
                      gs_error_t *err) {
  const gs__model_slot_t *slot = job->slot;
  gs__infer_request_t *ir = &job->ir;
  *rows = job->batch;
  bool pad = slot->warm && slot->max_batch_size > 0 && job->batch > 0;
  if (pad)
    *rows = gs__batch_padded_rows(slot, job->batch);
  int device = gs_session_device(s);
  bool on_device = ir->shm && device >= 0 && device == gs__slot_device(slot) &&
                   *rows == job->batch;
  int rc = on_device ? GS_OK : gs__shm_to_host(ir, err);
  if (rc == GS_OK && (on_device || !pad)) /* the engine reads them */
    rc = gs__infer_request_align(ir, err);
  if (rc == GS_OK && on_device) /* last: a binding lasts one run */
    rc = gs__shm_bind_outputs(ir, s, device, err);
  if (rc != GS_OK || on_device || !pad)
    return rc == GS_OK ? gs_session_run(s, ir->inputs, ir->n_inputs, err) : rc;
  const gs__infer_request_t *reqs[1] = {ir};
  gs_tensor_t ins[GS__INFER_MAX_TENSORS];
  rc = gs__batch_concat_to(ins, gs__batch_session_buf, s, reqs, 1, &slot->io,
                           *rows, err);
  return rc == GS_OK ? gs_session_run(s, ins, slot->io.n_inputs, err) : rc;
}

/* ---- sessions: a slot's pool --------------------------------------------
 */

/* Under slot->lock: the device failed, with err saying so (GS_ENODEV). */
static bool failed_locked(const gs__model_slot_t *slot, gs_error_t *err) {
  if (slot->device_failed)
    gs_error_set(err, GS_ENODEV,
                 "not run: the device failed while serving (%s); the worker "
                 "is to be restarted",
                 slot->device_error);
  return slot->device_failed;
}

gs_session_t *gs__slot_get(gs__model_slot_t *slot, gs_error_t *err) {
  gs_session_t *s = NULL;
  pthread_mutex_lock(&slot->lock);
  while (slot->warm && slot->n_idle == 0 && !slot->device_failed) {
    slot->n_getting++;
    pthread_cond_wait(&slot->idle_cond, &slot->lock);
    slot->n_getting--;
  }
  bool failed = failed_locked(slot, err);
  if (!failed && slot->n_idle)
    s = slot->idle[--slot->n_idle];
  pthread_mutex_unlock(&slot->lock);
  if (!s && !failed && gs__slot_session_create(slot, &s, err) != GS_OK)
    return NULL;
  return s;
}

bool gs__slot_failed(gs__model_slot_t *slot, gs_error_t *err) {
  pthread_mutex_lock(&slot->lock);
  bool failed = failed_locked(slot, err);
  pthread_mutex_unlock(&slot->lock);
  return failed;
}

void gs__slot_fail(gs__model_slot_t *slot, const char *why) {
  pthread_mutex_lock(&slot->lock);
  if (!slot->device_failed)
    snprintf(slot->device_error, sizeof slot->device_error, "%s", why);
  slot->device_failed = true;
  pthread_cond_broadcast(&slot->idle_cond);
  pthread_cond_broadcast(&slot->late_cond);
  pthread_mutex_unlock(&slot->lock);
}

void gs__slot_put(gs__model_slot_t *slot, gs_session_t *s) {
  pthread_mutex_lock(&slot->lock);
  if (slot->n_idle < sizeof slot->idle / sizeof slot->idle[0]) {
    slot->idle[slot->n_idle++] = s;
    slot->n_puts++;
    s = NULL;
    pthread_cond_signal(&slot->idle_cond);
    if (slot->late_waiting) /* it waits for one session: maybe this one */
      pthread_cond_signal(&slot->late_cond);
  }
  pthread_mutex_unlock(&slot->lock);
  gs_session_destroy(s);
}

bool gs__slot_take(gs__model_slot_t *slot, gs_session_t *s, gs_error_t *err) {
  bool taken = false;
  pthread_mutex_lock(&slot->lock);
  while (!taken && !slot->late_stop && !failed_locked(slot, err)) {
    /* a request waits and none ran since this thread's last step: its
     * turn first (its put wakes this thread again) */
    bool yield = slot->n_getting > 0 && slot->n_puts == slot->late_mark;
    for (unsigned i = 0; !taken && !yield && i < slot->n_idle; i++)
      if (slot->idle[i] == s) {
        slot->idle[i] = slot->idle[--slot->n_idle];
        slot->late_mark = slot->n_puts + 1; /* after this step's put */
        taken = true;
      }
    if (!taken) {
      slot->late_waiting = true;
      pthread_cond_wait(&slot->late_cond, &slot->lock);
      slot->late_waiting = false;
    }
  }
  if (!taken && slot->late_stop)
    gs_error_set(err, GS_EBUSY, "model '%s' is being unloaded", slot->name);
  pthread_mutex_unlock(&slot->lock);
  return taken;
}

uint64_t gs__slot_batch_max(const gs__model_slot_t *slot) {
  uint64_t cap = __atomic_load_n(&slot->batch_cap, __ATOMIC_ACQUIRE);
  return cap ? cap : slot->max_batch_size;
}

/* ---- one job on the pool -------------------------------------------------
 */

/* On a thread of the pool: decode, run, encode. */
void gs__infer_job_run(gs__infer_job_t *job) {
  gs_error_t err = {0};
  int rc;
  gs__infer_request_t *ir = &job->ir;
  gs__model_io_t *io = &job->slot->io;
  job->t_started = gs__now_ns();
  int status = gs__infer_job_decode(job, gs__slot_device(job->slot), &err);
  job->t_input_done = gs__now_ns();
  gs_session_t *s = NULL;
  if (status == 0 && !(s = gs__slot_get(job->slot, &err))) {
    status = err.code == GS_ENODEV ? 503 : 500; /* 503: the device failed */
    gs__infer_job_note_error(job, &err); /* a new session on a dead device */
  }
  uint64_t rows = 0;
  if (status == 0 && (rc = gs__test_device_fault(&err)
                               ? GS_EDRIVER
                               : run_padded(job, s, &rows, &err)) != GS_OK) {
    status = gs_error_http_status_run(rc, true);
    gs__infer_job_note_error(job, &err);
  }
  job->t_infer_done = gs__now_ns();
  gs_tensor_t outs[GS__INFER_MAX_TENSORS], run_outs[GS__INFER_MAX_TENSORS];
  for (size_t i = 0; status == 0 && i < io->n_outputs; i++) {
    const gs_tensor_t *t = gs_session_output(s, i);
    if (!t)
      status = 500;
    else
      outs[i] = run_outs[i] = *t;
  }
  /* A padded run: the request's rows of each output. */
  if (status == 0 && rows != job->batch &&
      gs__batch_split(outs, run_outs, io->n_outputs, 0, job->batch, rows,
                      &err) != GS_OK)
    status = 500;
  if (status == 0 && gs__infer_encode(&job->resp, ir, io, outs, &err) != 0)
    status = gs_error_http_status_run(err.code, false);
  if (s)
    gs__slot_put(job->slot, s);
  if (status != 0)
    gs__http_response_error(&job->resp, status,
                            err.msg[0] ? err.msg : "inference failed");
  job->ok = status == 0;
  job->t_done = gs__now_ns();
  gs__infer_request_release(ir);
}

static void work_single(uv_work_t *w) {
  gs__infer_job_run(w->data);
}

static void after_single(uv_work_t *w, int status);

/* Runs a warm model's next waiting unbatched request, if a session is
 * free for it. */
static void start_waiting_single(uv_loop_t *loop, gs__model_entry_t *m) {
  while (m->single_head &&
         m->single_running < m->single_head->slot->n_sessions) {
    gs__infer_job_t *job = m->single_head;
    m->single_head = job->next;
    if (!m->single_head)
      m->single_tail = NULL;
    job->next = NULL;
    m->single_running++;
    int qrc = gs__queue_work(loop, &job->work, work_single, after_single);
    if (qrc != 0) {
      char msg[256];
      m->single_running--;
      gs__http_response_error(&job->resp, 500,
                              gs__infer_queue_msg(job, qrc, msg, sizeof msg));
      job->ok = false;
      job->t_done = gs__now_ns();
      job->done(job);
    }
  }
}

static void after_single(uv_work_t *w, int status) {
  gs__infer_job_t *job = w->data;
  gs__model_entry_t *m = job->entry;
  bool limited = job->slot->warm && !job->slot->batching.enabled;
  uv_loop_t *loop = w->loop;
  (void)status;
  job->done(job); /* may free job */
  if (limited) {
    m->single_running--;
    start_waiting_single(loop, m);
  }
}

int gs__infer_submit(uv_loop_t *loop, gs__infer_job_t *job,
                     void (*done)(gs__infer_job_t *job)) {
  job->done = done;
  if (job->pacer)
    return gs__pace_submit(loop, job);
  return gs__infer_start(loop, job);
}

int gs__infer_start(uv_loop_t *loop, gs__infer_job_t *job) {
  if (job->entry->sequence.enabled)
    return gs__seq_submit(loop, job, job->done);
  job->work.data = job;
  if (job->slot->batching.enabled)
    return gs__batch_submit(loop, job);
  if (!job->slot->warm)
    return gs__queue_work(loop, &job->work, work_single, after_single);
  /* A free session: run now (a failure is the caller's to answer). Else
   * wait on the loop; after_single starts it (and answers a failure). */
  gs__model_entry_t *m = job->entry;
  if (!m->single_head && m->single_running < job->slot->n_sessions) {
    int rc = gs__queue_work(loop, &job->work, work_single, after_single);
    m->single_running += rc == 0;
    return rc;
  }
  gs__job_append(&m->single_head, &m->single_tail, job);
  return 0;
}

/* ---- statistics, on the loop --------------------------------------------
 */

static void add(gs__stat_t *s, uint64_t ns) {
  s->count++;
  s->ns += ns;
}

void gs__batch_stats_add(gs__model_stats_t *st, uint64_t rows,
                         uint64_t input_ns, uint64_t infer_ns,
                         uint64_t output_ns) {
  size_t i = 0;
  while (i < st->n_batch && st->batch[i].batch_size < rows)
    i++;
  if (i == st->n_batch || st->batch[i].batch_size != rows) {
    gs__batch_stat_t *grown =
        realloc(st->batch, (st->n_batch + 1) * sizeof *grown);
    if (!grown)
      return; /* statistics only: the answer is not affected */
    st->batch = grown;
    memmove(&grown[i + 1], &grown[i], (st->n_batch - i) * sizeof *grown);
    memset(&grown[i], 0, sizeof *grown);
    grown[i].batch_size = rows;
    st->n_batch++;
  }
  add(&st->batch[i].compute_input, input_ns);
  add(&st->batch[i].compute_infer, infer_ns);
  add(&st->batch[i].compute_output, output_ns);
}

bool gs__test_device_fault(gs_error_t *err) {
  const char *file = gs__test_hooks.device_fail_file;
  if (!file || unlink(file) != 0)
    return false; /* unlink: exactly one run takes it */
  gs_error_set(err, GS_EDRIVER, "test hook: the device failed (%s)", file);
  return true;
}

void gs__infer_job_note_error(gs__infer_job_t *job, const gs_error_t *err) {
  job->device_failed = err->code == GS_EDRIVER;
  if (job->device_failed) {
    snprintf(job->device_error, sizeof job->device_error, "%.250s", err->msg);
    gs__slot_fail(job->slot, job->device_error); /* the ones queued: 503 */
  }
}

void gs__infer_job_finish(gs__infer_job_t *job) {
  gs__model_stats_t *st = &job->entry->stats;
  gs_error_t failed;
  if (job->device_failed)
    gs__repo_device_failed(job->repo, job->entry, job->slot, job->device_error);
  else if (!job->ok && gs__slot_failed(job->slot, &failed))
    /* failed elsewhere, as in the planning after ready: the repository
     * hears of it here if no run told it (it ignores a second report) */
    gs__repo_device_failed(job->repo, job->entry, job->slot,
                           job->slot->device_error);
  uint64_t total = job->t_done - job->t_received;
  if (job->ok) {
    /* A batched request decodes before it queues: that is input work. */
    uint64_t input = job->decode_ns + job->t_input_done - job->t_started;
    add(&st->success, total);
    add(&st->queue, job->t_started - job->t_received - job->decode_ns);
    add(&st->compute_input, input);
    add(&st->compute_infer, job->t_infer_done - job->t_input_done);
    add(&st->compute_output, job->t_done - job->t_infer_done);
    /* Triton counts a batched request as dim 0 inferences. */
    st->inference_count += job->batch;
    if (!job->batched) { /* the batcher counts a batch's execution */
      st->execution_count++;
      gs__batch_stats_add(st, job->batch, input,
                          job->t_infer_done - job->t_input_done,
                          job->t_done - job->t_infer_done);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->last_inference_ms =
        (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  } else {
    add(&st->fail, total);
  }
  if (job->pacer)
    gs__pace_finished(job);
  gs__infer_request_release(&job->ir);
  gs__slot_unref(job->slot);
  job->slot = NULL;
  free(job->req.url);
  free(job->req.body);
  job->req.url = job->req.body = NULL;
}

const char *gs__infer_queue_msg(const gs__infer_job_t *job, int rc, char *buf,
                                size_t size) {
  snprintf(buf, size, "cannot queue the inference of model '%s': %s",
           job->entry ? job->entry->name : "?",
           rc < 0 ? uv_strerror(rc) : "no thread took it");
  return buf;
}
