/* A worker's rate limit (--rate-limit): at most R inferences a second
 * start, a request of batch 64 counting 64, so that a noisy instance can be
 * held to a share of the GPU's bandwidth that its neighbours can live
 * beside (issue 13's QoS: the GPU's L2 and memory bandwidth are shared by
 * soft instances; pacing the noisy ones' clients kept a neighbour's p99,
 * docs/BENCHMARKS.md; this is the server's side of that pacing).
 *
 * A generic cell rate algorithm on a theoretical arrival time (tat): a
 * request may start when tat is not in the future; starting charges it
 * the rows it is expected to have (the last finished request's: its rows
 * are only known once decoded), and its end settles the charge to the rows
 * it really had. The rate therefore holds on average: when requests grow,
 * those started before the first larger one ends go at the old price, and
 * the difference is paid back by the waits after. Requests that may not
 * start yet wait in a FIFO on the loop thread, one released each time tat
 * comes round; one whose client left meanwhile is dropped unrun, one whose
 * model was unloaded or reloaded meanwhile is refused. Requests of
 * sequence-batching models never wait (a wait would count against their
 * sequence's idle time); they are charged and settled like the others, so
 * that they slow the rest. Idle time earns no credit. The arithmetic takes
 * the clock as an argument (tested without a loop). */
#ifndef GPUSLICE_WORKER_PACE_H
#define GPUSLICE_WORKER_PACE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct gs__infer_job_s;

typedef struct gs__pacer_s {
  uint64_t ns_per_row; /* 1e9 / rate; 0: no limit */
  uint64_t tat_ns;     /* when the rows charged so far are paid for */
  uint64_t expect;     /* rows charged at a start (the last request's) */
  struct gs__infer_job_s *head, *tail; /* waiting, oldest first */
  size_t waiting;
  uv_timer_t timer; /* fires at tat for the head */
  bool timer_ready;
  bool flushing;  /* the worker stops: nothing waits any more */
  bool releasing; /* in release(): a finish does not release again */
  /* counters for /metrics: requests that waited, and how long in all */
  uint64_t held, held_ns;
} gs__pacer_t;

/* rate inferences a second (0: none). */
void gs__pace_init(gs__pacer_t *p, unsigned rate);
/* May a request start at now? Then charges it p->expect rows and returns
 * that charge; else returns 0 and charges nothing. */
uint64_t gs__pace_admit(gs__pacer_t *p, uint64_t now_ns);
/* Charges a request that starts regardless (a sequence's): as
 * gs__pace_admit's charge, from tat or now, whichever is later. */
uint64_t gs__pace_charge(gs__pacer_t *p, uint64_t now_ns);
/* A request charged `charged` rows ended having run `rows` (0: none ran,
 * it failed before): tat moves by the difference, and rows becomes the
 * next charge. */
void gs__pace_settle(gs__pacer_t *p, uint64_t charged, uint64_t rows);
/* How long, from now, until a request may start (0: now). */
uint64_t gs__pace_wait_ns(const gs__pacer_t *p, uint64_t now_ns);

/* gs__infer_submit's front (job->done and job->pacer set): starts job now
 * if it may, else queues it to start when its turn comes. 0, or the
 * libuv error of a start that failed now (done not called). */
int gs__pace_submit(uv_loop_t *loop, struct gs__infer_job_s *job);
/* A paced job ended (gs__infer_job_finish): settles its charge, and lets
 * the next waiting one go if the settling made it due. */
void gs__pace_finished(struct gs__infer_job_s *job);
/* Starts every waiting request now, and later ones without waiting: the
 * worker drains or stops. */
void gs__pace_flush(gs__pacer_t *p);

#endif
