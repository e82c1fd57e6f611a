/* libFuzzer harness for the state file decoder: whatever decodes must
 * encode, and the encoding must decode back to the same document. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuslice/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_layout(const gs_layout_t *a, const gs_layout_t *b) {
  if (a->mig_enabled != b->mig_enabled || a->n_gi != b->n_gi)
    return false;
  for (unsigned g = 0; g < a->n_gi; g++) {
    const gs_gi_t *x = &a->gi[g], *y = &b->gi[g];
    if (x->id != y->id || x->profile_id != y->profile_id ||
        x->start != y->start || strcmp(x->uuid, y->uuid) != 0 ||
        x->n_ci != y->n_ci)
      return false;
    for (unsigned c = 0; c < x->n_ci; c++)
      if (x->ci[c].id != y->ci[c].id ||
          x->ci[c].profile_id != y->ci[c].profile_id ||
          x->ci[c].start != y->ci[c].start ||
          strcmp(x->ci[c].uuid, y->ci[c].uuid) != 0)
        return false;
  }
  return true;
}

static bool same_doc(const gs_state_doc_t *a, const gs_state_doc_t *b) {
  if (strcmp(a->backend, b->backend) != 0 || a->n_devices != b->n_devices)
    return false;
  for (unsigned i = 0; i < a->n_devices; i++)
    if (a->device[i].index != b->device[i].index ||
        strcmp(a->device[i].model, b->device[i].model) != 0 ||
        a->device[i].memory_slices != b->device[i].memory_slices ||
        !same_layout(&a->device[i].layout, &b->device[i].layout))
      return false;
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static gs_state_doc_t doc, again;
  gs_error_t err;
  if (gs_state_decode(&doc, "fuzz", (const char *)data, size, &err) != GS_OK)
    return 0;
  char *text = NULL;
  if (gs_state_encode(&doc, &text, &err) != GS_OK) {
    fprintf(stderr, "decoded document does not encode: %s\n", err.msg);
    abort();
  }
  if (gs_state_decode(&again, "encoded", text, strlen(text), &err) != GS_OK) {
    fprintf(stderr, "encoded document does not decode: %s\n%s\n", err.msg,
            text);
    abort();
  }
  if (!same_doc(&doc, &again)) {
    fprintf(stderr, "encoded document decodes differently:\n%s\n", text);
    abort();
  }
  free(text);
  return 0;
}
