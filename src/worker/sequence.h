/* Triton's sequence batcher (config.pbtxt's sequence_batching): requests
 * carry a sequence id and START/END flags; each sequence holds one slot
 * while it lives, its requests run in order one at a time, the model gets
 * the control inputs (START, END, READY, CORRID) and the implicit state
 * (the state output of one request is the state input of the next). */
#ifndef GPUSLICE_SEQUENCE_H
#define GPUSLICE_SEQUENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuslice/engine.h"
#include "gpuslice/error.h"

#define GS__SEQ_MAX_CONTROLS 8
#define GS__SEQ_MAX_STATES 4
#define GS__SEQ_MAX_SLOTS 4096
#define GS__SEQ_DEFAULT_IDLE_US 1000000u /* Triton's default: 1 s */

typedef enum {
  GS__SEQ_CTL_START = 0,
  GS__SEQ_CTL_READY,
  GS__SEQ_CTL_END,
  GS__SEQ_CTL_CORRID
} gs__seq_control_kind_t;

/* One control input: the model input named name gets (false, true) for the
 * flags, as dtype (INT32, FP32, BOOL), or the correlation id (CORRID: an
 * integer dtype). */
typedef struct gs__seq_control_s {
  char name[128];
  gs__seq_control_kind_t kind;
  gs_dtype_t dtype;
  double values[2]; /* false, true */
} gs__seq_control_t;

/* Implicit state: input_name gets what output_name gave on the previous
 * request of the sequence, zeros at its START. dims without the batch. */
typedef struct gs__seq_state_s {
  char input[128], output[128];
  gs_dtype_t dtype;
  int rank;
  int64_t dims[GS_TENSOR_MAX_RANK];
} gs__seq_state_t;

typedef struct gs__seq_config_s {
  bool enabled;
  bool oldest; /* strategy oldest (else direct) */
  uint64_t idle_us;
  unsigned max_sequences; /* oldest: max_candidate_sequences; 0: direct's */
  /* oldest: a batch of up to max_batch_size requests, one per sequence,
   * oldest first; run at a preferred size, when full, or when the oldest
   * has waited delay_us. */
  uint64_t delay_us;
  unsigned n_preferred;
  unsigned preferred[16];
  size_t n_controls, n_states;
  gs__seq_control_t controls[GS__SEQ_MAX_CONTROLS];
  gs__seq_state_t states[GS__SEQ_MAX_STATES];
} gs__seq_config_t;

/* config.pbtxt's sequence_batching message (protobuf-c's
 * Inference__Config__ModelSequenceBatching) into cfg; max_batch_size and
 * instance count size direct's slots. Errors name file and the field. */
struct Inference__Config__ModelSequenceBatching;
int gs__seq_config_read(
    gs__seq_config_t *cfg,
    const struct Inference__Config__ModelSequenceBatching *sb, const char *file,
    gs_error_t *err);

/* Each control input and state against the model's tensors (names, data
 * types), at load. */
int gs__seq_config_check(const gs__seq_config_t *cfg, const char *file,
                         const gs_tensor_info_t *inputs, size_t n_inputs,
                         const gs_tensor_info_t *outputs, size_t n_outputs,
                         gs_error_t *err);

/* ---- the slot table (no loop, no model: unit-tested) ---------------------
 */

/* A sequence id: Triton's sequence_id parameter, uint64 or string. */
typedef struct gs__seq_id_s {
  bool is_string;
  uint64_t u;
  char s[128];
} gs__seq_id_t;

/* What a request says of its sequence (its parameters). */
typedef struct gs__seq_params_s {
  gs__seq_id_t id;
  bool has_id, start, end;
} gs__seq_params_t;

typedef struct gs__seq_s gs__seq_t;

/* A request waiting for its turn in a sequence (the caller's). */
typedef struct gs__seq_item_s {
  struct gs__seq_item_s *next;
  bool start, end;
  void *data;
} gs__seq_item_t;

struct gs__seq_s {
  gs__seq_id_t id;
  int slot;         /* index into the table's slots; -1: waits for one */
  bool busy;        /* one of its requests runs */
  bool ended;       /* its END request was taken: freed once it completes */
  uint64_t last_ns; /* its last request's arrival or completion */
  gs__seq_item_t *head, *tail; /* requests waiting, in arrival order */
  void *state; /* implicit state bytes (state_bytes), the caller's */
  size_t state_bytes;
  gs__seq_t *next; /* in the table's list of live sequences */
};

typedef struct gs__seq_table_s {
  unsigned n_slots;
  gs__seq_t **slots; /* n_slots: the sequence holding each, or NULL */
  gs__seq_t *live;   /* every sequence, slotted or waiting for a slot */
  uint64_t idle_ns;
  void (*free_state)(gs__seq_t *seq); /* optional, before a sequence goes */
} gs__seq_table_t;

int gs__seq_table_init(gs__seq_table_t *t, unsigned n_slots, uint64_t idle_us,
                       gs_error_t *err);
/* Frees every sequence (their waiting items are the caller's). */
void gs__seq_table_release(gs__seq_table_t *t);
/* Queues item (a request of id) behind the sequence's others at time now:
 * a START makes the sequence (a slot if one is free, else it waits for
 * one); a request without START for an id that is not live is refused
 * (GS_ENOTFOUND), as is a request after the END of its sequence. *out is
 * the sequence. */
int gs__seq_table_add(gs__seq_table_t *t, const gs__seq_id_t *id,
                      gs__seq_item_t *item, uint64_t now, gs__seq_t **out,
                      const char *model, gs_error_t *err);
/* The next request of seq that may run now (it holds a slot, none of its
 * requests runs), taken off its queue and seq marked busy; NULL if none. */
gs__seq_item_t *gs__seq_table_next(gs__seq_table_t *t, gs__seq_t *seq);
/* The running request of seq completed at now. Returns true when seq was
 * freed (its END done, nothing waiting): its slot goes to the oldest
 * sequence waiting for one, which *woken points at (else NULL). */
bool gs__seq_table_done(gs__seq_table_t *t, gs__seq_t *seq, uint64_t now,
                        gs__seq_t **woken);
/* Frees the sequences idle (nothing running or waiting) for the idle time
 * at now; their slots go to waiting sequences, which woken gets (up to
 * max, the count returned in *n_woken). Returns how many were freed. */
size_t gs__seq_table_expire(gs__seq_table_t *t, uint64_t now, gs__seq_t **woken,
                            size_t max, size_t *n_woken);
/* The live sequence of id, or NULL. */
gs__seq_t *gs__seq_table_find(gs__seq_table_t *t, const gs__seq_id_t *id);
/* "1000" or "'abc'" for messages. */
void gs__seq_id_format(const gs__seq_id_t *id, char *buf, size_t size);

#endif
