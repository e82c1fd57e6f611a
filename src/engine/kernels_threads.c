/* The engine's CPU thread pool (gs__parallel) and the pieces an op is
 * cut into over it (gs__parallel_pieces): kernels_gemm.c's products, conv
 * packing and MaxPool run on it, gs_engine_threads() threads at most. */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <immintrin.h>

#include "engine/kernels_gemm.h"

/* --- threads -------------------------------------------------------------
 * One pool per process. A call runs part 0 itself and hands parts 1.. to
 * the workers, each through a slot of its own; while one call holds the
 * pool another runs all its parts itself, so that concurrent sessions
 * never wait on each other. A worker spins for POOL_SPIN_NS after its last
 * part before it sleeps on the condition variable, and the caller spins
 * as long while it waits for the parts, then sleeps too: a model's ops
 * follow each other within microseconds, and a futex wake-up each way cost
 * about what a small op takes (cnn_small: about 10 ops in 0.1 ms);
 * onnxruntime's pool spins the same way. Sleeping after that leaves the
 * CPU to a worker the scheduler took off it (a busy machine). */

#define POOL_MAX 64
#define POOL_SPIN_NS 50000 /* a worker's spin before it sleeps */

typedef struct {
  _Alignas(64) atomic_ulong generation; /* bumped for each part given */
  atomic_ulong taken;                   /* the generation last claimed */
  atomic_uint sleeping;                 /* 1 while on the condvar */
  gs__task_fn fn;
  void *arg;
  unsigned part, parts;
} pool_slot_t;

static struct {
  pthread_mutex_t use; /* held by the call that has the pool */
  pthread_mutex_t lock;
  pthread_cond_t go, done;
  unsigned workers;
  _Alignas(64) atomic_uint pending; /* parts given and not yet done */
  atomic_uint joining;              /* 1 while the caller sleeps on done */
  pool_slot_t slot[POOL_MAX];       /* slot[i]: worker i, part i */
} pool = {.use = PTHREAD_MUTEX_INITIALIZER,
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .go = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

/* Whether a spin that began at its first call has run POOL_SPIN_NS (the
 * clock read every 64 turns; *until 0 on the first call). */
static bool spin_over(unsigned spin, uint64_t *until) {
  if (spin % 64 != 0)
    return false;
  uint64_t t = now_ns();
  if (*until == 0)
    *until = t + POOL_SPIN_NS;
  return t >= *until;
}

/* Waits until s's generation moves past seen: spinning, then asleep. The
 * caller stores the generation and then reads sleeping, the worker stores
 * sleeping and then reads the generation (both sequentially consistent),
 * so one of them sees the other's store: either the worker sees the part
 * or the caller sees it asleep and wakes it under the lock. */
static unsigned long slot_wait(pool_slot_t *s, unsigned long seen) {
  unsigned long g;
  uint64_t until = 0;
  for (unsigned spin = 1;; spin++) {
    if ((g = atomic_load_explicit(&s->generation, memory_order_acquire)) !=
        seen)
      return g;
    cpu_relax();
    if (spin_over(spin, &until))
      break;
  }
  pthread_mutex_lock(&pool.lock);
  atomic_store(&s->sleeping, 1);
  while ((g = atomic_load(&s->generation)) == seen)
    pthread_cond_wait(&pool.go, &pool.lock);
  atomic_store(&s->sleeping, 0);
  pthread_mutex_unlock(&pool.lock);
  return g;
}

/* Claims generation g of slot s's part, for its worker or for the caller
 * (which takes the parts that no worker has started once its own are
 * done: a worker that the scheduler has not run yet, on a busy machine,
 * then delays nothing). One of the two wins; a worker that woke late sees
 * a generation already taken, or a newer one. */
static bool slot_claim(pool_slot_t *s, unsigned long g) {
  unsigned long want = g - 1;
  return atomic_compare_exchange_strong(&s->taken, &want, g);
}

/* Runs s's part; the last part done wakes a caller asleep in pool_join
 * (which stores joining and then reads pending, as slot_wait's pair). */
static void slot_run(pool_slot_t *s) {
  s->fn(s->arg, s->part, s->parts);
  if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.joining)) {
    pthread_mutex_lock(&pool.lock);
    pthread_cond_signal(&pool.done);
    pthread_mutex_unlock(&pool.lock);
  }
}

static void *worker_main(void *p) {
  pool_slot_t *s = &pool.slot[(uintptr_t)p];
  unsigned long seen = 0; /* a slot is first given after its worker starts */
  for (;;) {
    seen = slot_wait(s, seen);
    if (slot_claim(s, seen))
      slot_run(s);
  }
  return NULL;
}

/* Grows the pool to want workers (parts 1..want); returns how many run. */
static unsigned pool_grow(unsigned want) {
  while (pool.workers < want) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, worker_main,
                            (void *)(uintptr_t)(pool.workers + 1));
    pthread_attr_destroy(&attr);
    if (rc != 0)
      break;
    pool.workers++;
  }
  return pool.workers;
}

/* Waits until every part given is done: spinning for POOL_SPIN_NS, then
 * asleep (a worker taken off its CPU must not wait for ours). */
static void pool_join(void) {
  uint64_t until = 0;
  for (unsigned spin = 1;
       atomic_load_explicit(&pool.pending, memory_order_acquire) != 0; spin++) {
    cpu_relax();
    if (spin_over(spin, &until))
      break;
  }
  if (atomic_load(&pool.pending) == 0)
    return;
  pthread_mutex_lock(&pool.lock);
  atomic_store(&pool.joining, 1);
  while (atomic_load(&pool.pending) != 0)
    pthread_cond_wait(&pool.done, &pool.lock);
  atomic_store(&pool.joining, 0);
  pthread_mutex_unlock(&pool.lock);
}

void gs__parallel(gs__task_fn fn, void *arg, unsigned parts) {
  if (parts > POOL_MAX)
    parts = POOL_MAX;
  if (parts <= 1 || pthread_mutex_trylock(&pool.use) != 0) {
    for (unsigned i = 0; i < parts || i == 0; i++)
      fn(arg, i, parts ? parts : 1);
    return;
  }
  unsigned have = pool_grow(parts - 1);
  unsigned given = have < parts - 1 ? have + 1 : parts;
  atomic_store_explicit(&pool.pending, given - 1, memory_order_relaxed);
  bool wake = false;
  for (unsigned i = 1; i < given; i++) {
    pool_slot_t *s = &pool.slot[i];
    s->fn = fn;
    s->arg = arg;
    s->part = i;
    s->parts = parts;
    atomic_fetch_add(&s->generation, 1); /* sequentially consistent */
    wake = wake || atomic_load(&s->sleeping) != 0;
  }
  if (wake) {
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.lock);
  }
  for (unsigned i = given; i < parts; i++) /* parts no worker took */
    fn(arg, i, parts);
  fn(arg, 0, parts);
  for (unsigned i = 1; i < given; i++) {
    pool_slot_t *s = &pool.slot[i];
    if (slot_claim(s,
                   atomic_load_explicit(&s->generation, memory_order_relaxed)))
      slot_run(s);
  }
  pool_join();
  pthread_mutex_unlock(&pool.use);
}

/* Pieces: thread i's run is [i * pieces / parts, (i + 1) * pieces /
 * parts), kept as one word (next << 32 | end) so that its owner taking
 * from the front and a thief taking from the back agree by one
 * compare-and-swap. Owners start on their own runs, so that a product
 * split the same way op after op finds its part of the image in its own
 * core's cache (as a static split did) where no thread falls behind. */
typedef struct {
  gs__task_fn fn;
  void *arg;
  unsigned pieces, parts;
  _Alignas(64) atomic_uint_fast64_t run[POOL_MAX];
} pieces_job_t;

/* Takes the next piece of run r from its front (owner) or back (thief):
 * the piece, or UINT_MAX when the run is empty. */
static unsigned run_take(atomic_uint_fast64_t *run, bool front) {
  uint_fast64_t v = atomic_load_explicit(run, memory_order_relaxed);
  for (;;) {
    unsigned next = (unsigned)(v >> 32), end = (unsigned)v;
    if (next >= end)
      return UINT_MAX;
    uint_fast64_t want = front ? v + ((uint_fast64_t)1 << 32) : v - 1;
    if (atomic_compare_exchange_weak(run, &v, want))
      return front ? next : end - 1;
  }
}

static void pieces_part(void *arg, unsigned part, unsigned parts) {
  pieces_job_t *j = arg;
  (void)parts;
  for (unsigned i; (i = run_take(&j->run[part], true)) != UINT_MAX;)
    j->fn(j->arg, i, j->pieces);
  for (unsigned k = 1; k < j->parts; k++) {
    atomic_uint_fast64_t *victim = &j->run[(part + k) % j->parts];
    for (unsigned i; (i = run_take(victim, false)) != UINT_MAX;)
      j->fn(j->arg, i, j->pieces);
  }
}

void gs__parallel_pieces(gs__task_fn fn, void *arg, unsigned pieces,
                         unsigned threads) {
  unsigned parts = threads < pieces ? threads : pieces;
  if (parts > POOL_MAX)
    parts = POOL_MAX;
  if (parts <= 1) { /* one thread: the whole as one piece */
    fn(arg, 0, 1);
    return;
  }
  pieces_job_t j = {fn, arg, pieces, parts, {0}};
  for (unsigned i = 0; i < parts; i++)
    atomic_init(&j.run[i], (uint_fast64_t)(pieces * (uint64_t)i / parts) << 32 |
                               (pieces * (uint64_t)(i + 1) / parts));
  gs__parallel(pieces_part, &j, parts);
}
