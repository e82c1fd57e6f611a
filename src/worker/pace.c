/* The worker's rate limit (pace.h): the cell rate arithmetic, and the FIFO
 * of requests waiting for their turn on the loop thread. */
#include "worker/pace.h"

#include <stdio.h>

#include "worker/worker_int.h"

#define NS_PER_S 1000000000u
#define MAX_ROWS (1ull << 32) /* a charge's rows, so that rows * ns fits */

void gs__pace_init(gs__pacer_t *p, unsigned rate) {
  *p = (gs__pacer_t){.expect = 1};
  if (rate) /* rate <= GS_WORKER_MAX_RATE_LIMIT: at least 10 ns a row */
    p->ns_per_row = NS_PER_S / rate;
}

static uint64_t cost_ns(const gs__pacer_t *p, uint64_t rows) {
  return (rows < MAX_ROWS ? rows : MAX_ROWS) * p->ns_per_row;
}

uint64_t gs__pace_admit(gs__pacer_t *p, uint64_t now_ns) {
  if (p->tat_ns > now_ns)
    return 0;
  /* no credit for idle time: the charge starts now */
  p->tat_ns = now_ns + cost_ns(p, p->expect);
  return p->expect;
}

uint64_t gs__pace_charge(gs__pacer_t *p, uint64_t now_ns) {
  p->tat_ns = (p->tat_ns > now_ns ? p->tat_ns : now_ns) + cost_ns(p, p->expect);
  return p->expect;
}

void gs__pace_settle(gs__pacer_t *p, uint64_t charged, uint64_t rows) {
  if (rows > charged)
    p->tat_ns += cost_ns(p, rows - charged);
  else {
    uint64_t back = cost_ns(p, charged - rows);
    p->tat_ns = back < p->tat_ns ? p->tat_ns - back : 0;
  }
  if (rows)
    p->expect = rows < MAX_ROWS ? rows : MAX_ROWS;
}

uint64_t gs__pace_wait_ns(const gs__pacer_t *p, uint64_t now_ns) {
  return p->tat_ns > now_ns ? p->tat_ns - now_ns : 0;
}

/* ---- the waiting requests, on the loop ----------------------------------
 */

/* Answers job unrun (its charge is refunded through gs__pace_finished). */
static void refuse(gs__infer_job_t *job, int status, const char *msg) {
  gs__http_response_error(&job->resp, status, msg);
  job->ok = false;
  job->t_done = gs__now_ns();
  job->done(job);
}

/* Starts a job that waited (charged `charged` rows), unless its client
 * left or its model changed meanwhile; a start that fails is answered. */
static void start(uv_loop_t *loop, gs__infer_job_t *job, uint64_t charged) {
  char msg[256];
  job->paced_rows = charged;
  if (job->gone && job->gone(job)) {
    refuse(job, 499, "the client left while the request waited for its turn");
    return;
  }
  if (job->entry->slot != job->slot) {
    snprintf(msg, sizeof msg,
             "model '%s' was unloaded or reloaded while the request waited "
             "for its turn under the rate limit",
             job->entry->name);
    refuse(job, 503, msg);
    return;
  }
  int rc = gs__infer_start(loop, job);
  if (rc != 0)
    refuse(job, 500, gs__infer_queue_msg(job, rc, msg, sizeof msg));
}

static gs__infer_job_t *pop(gs__pacer_t *p, uint64_t now_ns) {
  gs__infer_job_t *job = p->head;
  p->head = job->next;
  if (!p->head)
    p->tail = NULL;
  job->next = NULL;
  p->waiting--;
  p->held++;
  p->held_ns += now_ns - job->t_received;
  return job;
}

static void on_timer(uv_timer_t *t);

/* Starts the waiting requests whose turn has come; arms the timer for the
 * next one. */
static void release(gs__pacer_t *p) {
  uv_loop_t *loop = p->timer.loop;
  if (p->releasing)
    return; /* a failed start's answer settles inside the loop below */
  p->releasing = true;
  for (;;) {
    uint64_t now = gs__now_ns(), charged;
    if (!p->head || !(charged = gs__pace_admit(p, now)))
      break;
    start(loop, pop(p, now), charged);
  }
  p->releasing = false;
  if (p->head) {
    uint64_t wait_ms = (gs__pace_wait_ns(p, gs__now_ns()) + 999999) / 1000000;
    uv_update_time(loop);
    uv_timer_start(&p->timer, on_timer, wait_ms ? wait_ms : 1, 0);
  } else {
    uv_timer_stop(&p->timer);
  }
}

static void on_timer(uv_timer_t *t) {
  release(t->data);
}

int gs__pace_submit(uv_loop_t *loop, gs__infer_job_t *job) {
  gs__pacer_t *p = job->pacer;
  uint64_t charged = 0;
  if (job->entry->sequence.enabled) { /* never waits: see pace.h */
    job->paced_rows = p->flushing ? 0 : gs__pace_charge(p, gs__now_ns());
    return gs__infer_start(loop, job); /* the caller settles a failure */
  }
  if (p->flushing ||
      (!p->head && (charged = gs__pace_admit(p, gs__now_ns())))) {
    job->paced_rows = charged;
    return gs__infer_start(loop, job);
  }
  if (!p->timer_ready) {
    int rc = uv_timer_init(loop, &p->timer);
    if (rc != 0)
      return rc; /* cannot wait: refused (the caller answers 500) */
    p->timer.data = p;
    p->timer_ready = true;
  }
  gs__job_append(&p->head, &p->tail, job);
  p->waiting++;
  if (!uv_is_active((uv_handle_t *)&p->timer))
    release(p);
  return 0;
}

void gs__pace_finished(gs__infer_job_t *job) {
  gs__pacer_t *p = job->pacer;
  uint64_t rows = job->ok ? (job->batch ? job->batch : 1) : 0;
  gs__pace_settle(p, job->paced_rows, rows);
  job->paced_rows = 0;
  if (p->head && p->timer_ready && !p->flushing &&
      !uv_is_closing((uv_handle_t *)&p->timer))
    release(p); /* the settling may have made the next one due */
}

void gs__pace_flush(gs__pacer_t *p) {
  p->flushing = true;
  if (!p->timer_ready)
    return;
  if (!uv_is_closing((uv_handle_t *)&p->timer))
    uv_timer_stop(&p->timer);
  uv_loop_t *loop = p->timer.loop;
  while (p->head)
    start(loop, pop(p, gs__now_ns()), 0);
}
