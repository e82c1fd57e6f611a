/* The worker's busy-poll thread pool (pool.c): libuv's uv_queue_work, but
 * a thread that finished a job spins on the queue for busy_poll_us before
 * it sleeps, so that the next job of a steady stream starts without a
 * condition-variable wake-up; answers come back to the loop by uv_async. */
#ifndef GPUSLICE_WORKER_POOL_H
#define GPUSLICE_WORKER_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gpuslice/error.h"

typedef struct gs__pool_s gs__pool_t;

/* threads threads for loop's jobs; busy_poll_us > 0. The loop's data
 * points at the pool from here on (gs__queue_work finds it there). */
int gs__pool_create(gs__pool_t **out, uv_loop_t *loop, unsigned threads,
                    unsigned busy_poll_us, gs_error_t *err);
/* Runs the loop until nothing is in flight on the pool (the loop thread,
 * before its handles close: the pool's answers come through one). */
void gs__pool_quiesce(gs__pool_t *p);
/* Stops and joins the threads (nothing in flight: gs__pool_quiesce) and
 * clears the loop's data; the loop must have closed the pool's handle. */
void gs__pool_destroy(gs__pool_t *p);
/* Jobs queued or running, and every job ever queued or answered: the
 * loop's busy poll spins while the first is nonzero or the second moves. */
unsigned gs__pool_in_flight(const gs__pool_t *p);
uint64_t gs__pool_events(const gs__pool_t *p);
unsigned gs__pool_busy_poll_us(const gs__pool_t *p);
/* How often a thread woke from its sleep (for tests: a spinner needs
 * none between jobs that follow each other within busy_poll_us). */
uint64_t gs__pool_wakeups(gs__pool_t *p);
/* Threads asleep on the condition variable now (for tests). */
unsigned gs__pool_sleepers(gs__pool_t *p);

/* uv_queue_work on loop's pool: a gs__pool_t when the loop has one (its
 * data), else libuv's. w->loop is set; after runs on the loop thread with
 * status 0. A libuv error code when the job could not be queued. */
int gs__queue_work(uv_loop_t *loop, uv_work_t *w, uv_work_cb work,
                   uv_after_work_cb after);

/* Runs loop until it is stopped (*stopped set on the loop thread) or has
 * nothing left: with a pool, spinning through uv_run(UV_RUN_NOWAIT) while a
 * job is in flight and for busy_poll_us after the last job queued or
 * answered, sleeping in uv_run(UV_RUN_ONCE) only after that. */
void gs__pool_run_loop(uv_loop_t *loop, const bool *stopped);

/* One pause of a spin (the CPU's hint, where it has one). */
static inline void gs__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
