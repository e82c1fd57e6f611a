/* The sequence batcher's parts that sequence_run.c (on the loop: the
 * sequences, the oldest strategy's batches and timers) and
 * sequence_batch.c (on the pool: one batch of sequence requests decoded,
 * run and answered) share. */
#ifndef GPUSLICE_SEQUENCE_INT_H
#define GPUSLICE_SEQUENCE_INT_H

#include "worker/worker_int.h"

typedef struct gs__seq_model_s {
  gs__seq_table_t table;
  gs__seq_config_t cfg;
  gs__model_entry_t *entry;
  uv_timer_t timer;   /* the idle timeout's sweep */
  uv_timer_t delay;   /* oldest: the oldest ready request's queue delay */
  unsigned in_flight; /* oldest: batches running (at most the instances) */
  bool draining;      /* the worker stops: batches start without waiting */
  gs__seq_t **ready;  /* oldest: table.n_slots, scratch for the scheduler */
} gs__seq_model_t;

typedef struct gs__seq_req_s {
  gs__seq_item_t item; /* item.data: this */
  gs__infer_job_t *job;
  gs__seq_model_t *sm;
  gs__seq_t *seq; /* NULL: answered without running (job->resp) */
  uint64_t arrival_ns;
  uv_work_t work; /* an answer without a run */
} gs__seq_req_t;

/* One engine run of a batch, for the statistics (Triton's batch_stats). */
typedef struct gs__seq_exec_s {
  uint64_t rows, input_ns, infer_ns, output_ns;
} gs__seq_exec_t;

/* Requests of n different sequences (each its sequence's next), run on
 * one session: as one engine call where their tensors agree in shape
 * (else a call per group that does). */
typedef struct gs__seq_batch_s {
  uv_work_t work;
  gs__seq_model_t *sm;
  gs__model_entry_t *entry;
  size_t n;
  gs__seq_req_t **reqs;
  size_t n_execs;
  gs__seq_exec_t *execs; /* n at most */
} gs__seq_batch_t;

/* On a thread of the pool: decodes each request (shared-memory inputs
 * resolved), adds the control inputs and the state per row, runs, keeps
 * each row's state output for its sequence and answers each request. */
void gs__seq_batch_work(uv_work_t *w);

/* Whether name is a control input or a state (input, or output when
 * !input) of cfg: not the client's. */
bool gs__seq_is_internal(const gs__seq_config_t *cfg, const char *name,
                         bool input);

#endif
