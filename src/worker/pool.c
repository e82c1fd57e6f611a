/* The worker's busy-poll thread pool (--busy-poll-us): jobs go to threads
 * that spin on the queue for a while after each job before they sleep on a
 * condition variable, and the loop spins with uv_run(UV_RUN_NOWAIT) while
 * jobs are in flight; a core per spinning thread buys the wake-ups back. */
#include "worker/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pool_job_s {
  uv_work_t *w;
  uv_work_cb work;
  uv_after_work_cb after;
  struct pool_job_s *next;
} pool_job_t;

struct gs__pool_s {
  uv_loop_t *loop;
  uv_async_t async; /* the answers are back */
  uint64_t busy_ns;
  pthread_t *threads;
  unsigned n_threads;
  pthread_mutex_t lock; /* guards the rest but the loop thread's */
  pthread_cond_t cond;
  pool_job_t *head, *tail;
  _Atomic unsigned pending; /* jobs in the queue: what spinners watch */
  unsigned n_spinning, n_sleeping;
  uint64_t wakeups; /* returns from the condition variable */
  bool stop;
  _Atomic bool stopping; /* stop, for spinners that do not hold the lock */
  pool_job_t *done_head, *done_tail; /* answers for the loop */
  /* the loop thread's */
  unsigned in_flight;
  uint64_t events;
  bool closing;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Under the lock: the oldest job, or NULL. */
static pool_job_t *pop(gs__pool_t *p) {
  pool_job_t *j = p->head;
  if (j) {
    p->head = j->next;
    if (!p->head)
      p->tail = NULL;
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_relaxed);
  }
  return j;
}

/* Appends j to the list head..tail (under the lock). */
static void push(pool_job_t **head, pool_job_t **tail, pool_job_t *j) {
  j->next = NULL;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

/* Hands j's answer to the loop; this thread counts as spinning from here
 * on (one lock for both), so that the job the answer brings (c=1) does not
 * wake a sleeper while this thread is about to spin for it. */
static void finish(gs__pool_t *p, pool_job_t *j) {
  pthread_mutex_lock(&p->lock);
  push(&p->done_head, &p->done_tail, j);
  p->n_spinning++;
  pthread_mutex_unlock(&p->lock);
  uv_async_send(&p->async);
}

/* Unlocked: spins until a job is queued or the clock passes until. Every
 * few pauses it yields the core, should another thread wait for it (a
 * machine with fewer cores than busy threads: the spin must not starve the
 * thread that would give it work). */
static void spin(gs__pool_t *p, uint64_t until) {
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 ||
        atomic_load_explicit(&p->stopping, memory_order_relaxed))
      return;
    if ((i & 15) == 0) {
      if (now_ns() >= until)
        return;
      sched_yield();
    }
    gs__cpu_relax();
  }
}

static void *pool_thread(void *arg) {
  gs__pool_t *p = arg;
  uint64_t spin_until = 0; /* after a job: spin, not sleep, until then */
  bool counted = false;    /* in n_spinning (from finish on) */
  pthread_mutex_lock(&p->lock);
  for (;;) {
    pool_job_t *j = pop(p);
    if (j) {
      p->n_spinning -= counted;
      pthread_mutex_unlock(&p->lock);
      j->work(j->w);
      finish(p, j);
      counted = true;
      spin_until = now_ns() + p->busy_ns;
      pthread_mutex_lock(&p->lock);
      continue;
    }
    if (p->stop)
      break;
    if (now_ns() < spin_until) {
      pthread_mutex_unlock(&p->lock);
      spin(p, spin_until);
      pthread_mutex_lock(&p->lock);
      continue; /* a job, or the time is up: look under the lock */
    }
    p->n_spinning -= counted;
    counted = false;
    spin_until = 0;
    p->n_sleeping++;
    pthread_cond_wait(&p->cond, &p->lock);
    p->n_sleeping--;
    p->wakeups++;
  }
  p->n_spinning -= counted;
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

static void on_answers(uv_async_t *a) {
  gs__pool_t *p = a->data;
  pthread_mutex_lock(&p->lock);
  pool_job_t *j = p->done_head;
  p->done_head = p->done_tail = NULL;
  pthread_mutex_unlock(&p->lock);
  while (j) {
    pool_job_t *next = j->next;
    uv_work_t *w = j->w;
    uv_after_work_cb after = j->after;
    free(j);
    p->in_flight--;
    p->events++;
    if (after)
      after(w, 0);
    j = next;
  }
}

int gs__pool_create(gs__pool_t **out, uv_loop_t *loop, unsigned threads,
                    unsigned busy_poll_us, gs_error_t *err) {
  unsigned n = threads ? threads : 1;
  *out = NULL;
  gs__pool_t *p = calloc(1, sizeof *p);
  if (!p || !(p->threads = calloc(n, sizeof *p->threads))) {
    free(p);
    return gs_error_set(err, GS_ENOMEM,
                        "busy-poll pool: out of memory for %u threads", n);
  }
  p->loop = loop;
  p->busy_ns = (uint64_t)busy_poll_us * 1000u;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cond, NULL);
  int rc = uv_async_init(loop, &p->async, on_answers);
  if (rc != 0) {
    free(p->threads);
    free(p);
    return gs_error_set(err, GS_ESYSTEM, "busy-poll pool: uv_async_init: %s",
                        uv_strerror(rc));
  }
  p->async.data = p;
  loop->data = p;
  *out = p; /* from here on the caller destroys it, even on failure */
  for (unsigned i = 0; i < n; i++) {
    if ((rc = pthread_create(&p->threads[i], NULL, pool_thread, p)) != 0)
      return gs_error_set(err, GS_ESYSTEM,
                          "busy-poll pool: cannot start thread %u of %u: %s",
                          i + 1, n, strerror(rc));
    p->n_threads++;
  }
  return GS_OK;
}

void gs__pool_quiesce(gs__pool_t *p) {
  if (!p)
    return;
  while (p->in_flight > 0)
    uv_run(p->loop, UV_RUN_ONCE);
  p->closing = true;
}

void gs__pool_destroy(gs__pool_t *p) {
  if (!p)
    return;
  atomic_store(&p->stopping, true);
  pthread_mutex_lock(&p->lock);
  p->stop = true;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  for (unsigned i = 0; i < p->n_threads; i++)
    pthread_join(p->threads[i], NULL);
  for (pool_job_t *j = p->head, *next; j; j = next) {
    next = j->next; /* none: gs__pool_quiesce ran */
    free(j);
  }
  if (p->loop->data == p)
    p->loop->data = NULL;
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  free(p->threads);
  free(p);
}

unsigned gs__pool_in_flight(const gs__pool_t *p) {
  return p->in_flight;
}

uint64_t gs__pool_events(const gs__pool_t *p) {
  return p->events;
}

unsigned gs__pool_sleepers(gs__pool_t *p) {
  pthread_mutex_lock(&p->lock);
  unsigned n = p->n_sleeping;
  pthread_mutex_unlock(&p->lock);
  return n;
}

uint64_t gs__pool_wakeups(gs__pool_t *p) {
  pthread_mutex_lock(&p->lock);
  uint64_t n = p->wakeups;
  pthread_mutex_unlock(&p->lock);
  return n;
}

unsigned gs__pool_busy_poll_us(const gs__pool_t *p) {
  return (unsigned)(p->busy_ns / 1000u);
}

static int pool_submit(gs__pool_t *p, uv_work_t *w, uv_work_cb work,
                       uv_after_work_cb after) {
  if (p->closing || uv_is_closing((uv_handle_t *)&p->async))
    return UV_ECANCELED;
  pool_job_t *j = malloc(sizeof *j);
  if (!j)
    return UV_ENOMEM;
  *j = (pool_job_t){.w = w, .work = work, .after = after};
  w->loop = p->loop;
  p->in_flight++;
  p->events++;
  pthread_mutex_lock(&p->lock);
  push(&p->head, &p->tail, j);
  unsigned pending =
      atomic_fetch_add_explicit(&p->pending, 1, memory_order_release) + 1;
  /* Spinners take the first jobs; a sleeper is woken for the rest. */
  if (p->n_sleeping > 0 && pending > p->n_spinning)
    pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

int gs__queue_work(uv_loop_t *loop, uv_work_t *w, uv_work_cb work,
                   uv_after_work_cb after) {
  gs__pool_t *p = loop->data;
  if (p)
    return pool_submit(p, w, work, after);
  return uv_queue_work(loop, w, work, after);
}

void gs__pool_run_loop(uv_loop_t *loop, const bool *stopped) {
  gs__pool_t *p = loop->data;
  if (!p) {
    uv_run(loop, UV_RUN_DEFAULT);
    return;
  }
  uint64_t seen = p->events, last = now_ns();
  while (!*stopped) {
    if (p->in_flight == 0 && now_ns() - last >= p->busy_ns) {
      if (uv_run(loop, UV_RUN_ONCE) == 0)
        break; /* nothing left to run */
      seen = p->events;
      last = now_ns();
      continue;
    }
    if (uv_run(loop, UV_RUN_NOWAIT) == 0)
      break;
    if (p->events != seen) {
      seen = p->events;
      last = now_ns();
    }
    sched_yield(); /* as spin's, for a thread this one would starve */
  }
}
