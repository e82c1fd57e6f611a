/* The CUDA provider's conv choices, shared by every session of the process:
 * a conv of the same shape on as many SMs (another instance's green context
 * loading the same model, a model loaded again) runs the way it was timed
 * to run the first time, without cudnnFind and the candidates' timing. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_session_int.h"

#define CACHE_MAX 4096 /* entries; ResNet-50 at 7 batch sizes needs 371 */

typedef struct {
  gs__cuda_conv_key_t key;
  gs__cuda_conv_choice_t choice;
} entry_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry_t *entries;
static size_t n_entries, cap_entries;

static entry_t *find(const gs__cuda_conv_key_t *key) {
  for (size_t i = 0; i < n_entries; i++)
    if (memcmp(&entries[i].key, key, sizeof *key) == 0)
      return &entries[i];
  return NULL;
}

bool gs__cuda_conv_cache_get(const gs__cuda_conv_key_t *key,
                             gs__cuda_conv_choice_t *out) {
  pthread_mutex_lock(&mu);
  const entry_t *e = find(key);
  if (e)
    *out = e->choice;
  pthread_mutex_unlock(&mu);
  return e != NULL;
}

void gs__cuda_conv_cache_put(const gs__cuda_conv_key_t *key,
                             const gs__cuda_conv_choice_t *choice) {
  pthread_mutex_lock(&mu);
  entry_t *e = find(key);
  if (!e && n_entries == cap_entries && cap_entries < CACHE_MAX) {
    size_t cap = cap_entries ? cap_entries * 2 : 64;
    entry_t *grown = realloc(entries, cap * sizeof *grown);
    if (grown) {
      entries = grown;
      cap_entries = cap;
    }
  }
  if (!e && n_entries < cap_entries)
    e = &entries[n_entries++];
  if (e) { /* a full cache keeps what it has: the next plan times again */
    e->key = *key;
    e->choice = *choice;
  }
  pthread_mutex_unlock(&mu);
}

size_t gs__cuda_conv_cache_size(void) {
  pthread_mutex_lock(&mu);
  size_t n = n_entries;
  pthread_mutex_unlock(&mu);
  return n;
}

void gs__cuda_conv_cache_clear(void) {
  pthread_mutex_lock(&mu);
  free(entries);
  entries = NULL;
  n_entries = cap_entries = 0;
  pthread_mutex_unlock(&mu);
}
